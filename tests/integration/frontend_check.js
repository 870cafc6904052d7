// Drives the ComfyUI frontend a server serves, in headless Chromium (playwright-core), and prints one JSON object:
//   shown_text: the InfiniteTalk Frame Count report show_text.js puts on the node after a run (widget + DOM),
//   saved / sent: that node's widgets_values and API inputs (the report must be in neither),
//   missing_models: per example workflow, the entries of the Missing Models dialog,
//   notices: console lines naming our extension or a "[ComfyUI Notice]" about an internal import.
// usage: node frontend_check.js URL PACK_FOLDER AUDIO_FILE CHROMIUM
const { chromium } = require('playwright-core');
(async () => {
  const [url, pack, audio, executablePath] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const notices = [];
    page.on('console', (m) => { const t = m.text(); if (/\[ComfyUI Notice\]|infinitetalk|show_text/i.test(t)) notices.push(t); });
    await page.goto(url);
    await page.waitForFunction(() => window.comfyAPI?.app?.app?.graph
      && window.LiteGraph?.registered_node_types?.InfiniteTalkFrameCount, null, { timeout: 240000 });
    const out = { version: await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ || null) };
    const prompt = {
      1: { class_type: 'LoadAudio', inputs: { audio } },
      2: { class_type: 'InfiniteTalkFrameCount', inputs: { audio: ['1', 0], duration: 1.0, fps: 25.0, window: 81,
                                                        motion_frames: 9, policy: 'cover audio' } },
    };
    await page.evaluate(async (p) => { const app = window.comfyAPI.app.app; await app.loadApiJson(p, 'frame_count');
      await app.queuePrompt(0, 1); }, prompt);
    await page.waitForFunction(() => window.comfyAPI.app.app.graph.nodes.find((n) => n.type === 'InfiniteTalkFrameCount')
      ?.widgets?.find((w) => w.name === 'shown_text')?.value, null, { timeout: 240000 });
    Object.assign(out, await page.evaluate(async () => {
      const app = window.comfyAPI.app.app;
      const node = app.graph.nodes.find((n) => n.type === 'InfiniteTalkFrameCount');
      const box = document.querySelector('textarea.infinitetalk-shown-text');
      const rect = box?.getBoundingClientRect();
      return { shown_text: node.widgets.find((w) => w.name === 'shown_text').value,
               dom_text: box?.value ?? null, dom_visible: !!rect && rect.width > 0 && rect.height > 0,
               saved: node.serialize().widgets_values, sent: (await app.graphToPrompt()).output[String(node.id)].inputs };
    }));
    out.missing_models = {};
    const names = (await page.evaluate(async () => window.comfyAPI.api.api.getWorkflowTemplates()))[pack] || [];
    for (const name of names) {
      await page.keyboard.press('Escape');
      const wf = await page.evaluate(async ([pack, name]) =>
        (await fetch(`/api/workflow_templates/${pack}/${encodeURIComponent(name)}.json`)).json(), [pack, name]);
      await page.evaluate(async ([wf, name]) => window.comfyAPI.app.app.loadGraphData(wf, true, true, name), [wf, name]);
      await page.waitForSelector('.comfy-missing-models li', { timeout: 60000 }).catch(() => null);
      await page.waitForTimeout(500);
      out.missing_models[name] = await page.evaluate(() => Array.from(document.querySelectorAll('.comfy-missing-models li'))
        .map((li) => li.innerText.replace(/\s+/g, ' ').replace(/ Download.*$/, '').trim()));
      for (let i = 0; i < 2; i++) await page.keyboard.press('Escape');
      await page.waitForTimeout(500);
    }
    out.notices = notices;
    console.log(JSON.stringify(out));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
