"""The batch client (python -m client.batch) against real ComfyUI servers started here: two of the first ComfyUI
the harness finds (COMFYUI_PATH, several separated by os.pathsep, or ~/ComfyUI + ~/ComfyUI-*) and one of each
other (e.g. two 0.8.0 + one 0.3.64). The workflow is the shipped API export example_workflows/api/infinitetalk_v2v_dubbing.json with
its heavy loaders swapped for the tiny stand-ins (the sampler test's stub nodes, the golden tiny DiT), titles
kept, so the client patches it by title exactly as a user's run would.

- a batch of jobs split over the servers gives one mp4 per job, as many frames as its audio lasts (25 fps);
- running the same command again skips every job and queues nothing;
- a job naming a missing model is reported without being queued;
- a server killed mid-batch: its job is re-queued and every job completes on the others.
"""
import json
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

import golden
from comfyui_harness import ENABLE_HINT, find_comfyuis, stub_comfy_server

av = pytest.importorskip("av")
ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = next((ROOT / "example_workflows" / "api").glob("*v2v*.json"))
WORKFLOW_I2V = next((ROOT / "example_workflows" / "api").glob("*i2v*.json"))
AUDIO_SECONDS = [0.4, 0.56, 0.72, 0.88]  # 10, 14, 18, 22 frames at 25 fps (one or two 17-frame windows)


def _write_video(path: Path, shade: int, frames: int = 8, size: int = 32) -> None:
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), shade, np.uint8)
            img[8:24, 8:24, 1] = (40 * i) % 256
            c.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(stream.encode())


def _write_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    t = np.arange(int(round(seconds * rate))) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((0.3 * 32767 * np.sin(2 * np.pi * 220 * t)).astype(np.int16).tobytes())


def _tiny(prompt: dict, text_dim: int) -> dict:
    """The example's heavy loaders -> tiny stand-ins, keeping every node title and link."""
    out = {}
    for node_id, node in prompt.items():
        kind, inputs, meta = node["class_type"], dict(node["inputs"]), node["_meta"]
        if kind in ("CLIPLoader", "InfiniteTalkAudioEncoderLoader"):
            continue
        if kind == "CLIPTextEncode":
            node = {"class_type": "ITTestConditioning", "inputs": {"seed": int(node_id), "dim": text_dim}}
        elif kind == "CLIPVisionLoader":
            node = {"class_type": "ITTestTinyClipVision", "inputs": {}}
        elif kind == "VAELoader":
            node = {"class_type": "ITTestRandomWanVAE", "inputs": {}}
        elif kind == "InfiniteTalkAudioEmbeds":
            node = {"class_type": "ITTestAudioEmbeds", "inputs": {"audio": inputs["audio"], "seconds": 60.0}}
        else:
            if kind == "InfiniteTalkModelLoader":
                inputs.update(model="it_batch_base.safetensors", infinitetalk_model="it_batch_infinitetalk.safetensors",
                              base_precision="fp32")
            elif kind == "InfiniteTalkLoRA":
                inputs["lora"] = "it_batch_lora.safetensors"
            elif kind == "InfiniteTalkSampler":
                inputs.update(steps=1, resolution="custom width/height", width=16, height=16, window=17,
                              motion_frames=5)
            node = {"class_type": kind, "inputs": inputs}
        out[node_id] = {**node, "_meta": meta}
    passthrough = {i: n["inputs"]["audio"] for i, n in prompt.items() if n["class_type"] == "InfiniteTalkVocalSeparation"}
    for node_id in passthrough:  # the tiny run skips vocal separation: its input goes where its output went
        del out[node_id]
    for node in out.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and value[0] in passthrough:
                node["inputs"][name] = passthrough[value[0]]
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Started servers with the stub nodes and tiny model files; always stopped."""
    installs = find_comfyuis()
    if not installs:
        pytest.skip(ENABLE_HINT)
    comfyuis = [installs[0]] * 2 + installs[1:]  # two servers of the first ComfyUI, one of each other
    import loading_files as lf
    base_sd, audio_sd = lf.split(lf.reference())
    servers = []
    for i, comfyui in enumerate(comfyuis):
        base = tmp_path_factory.mktemp(f"batch_server{i}")
        for folder in ("diffusion_models", "loras"):
            (base / "models" / folder).mkdir(parents=True)
        lf.write_st(base_sd, base / "models/diffusion_models/it_batch_base.safetensors", prefix="model.diffusion_model.")
        lf.write_st(audio_sd, base / "models/diffusion_models/it_batch_infinitetalk.safetensors")
        lf.lora_file(base_sd, base / "models/loras/it_batch_lora.safetensors")
        servers.append(stub_comfy_server(comfyui, base))
    errors = []

    def start(server):
        try:
            server.start()
        except Exception as e:  # noqa: BLE001 (reported below, with the server's log)
            errors.append(e)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory, fleet):
    """The tiny workflow, media and a jobs file of len(AUDIO_SECONDS) jobs."""
    folder = tmp_path_factory.mktemp("batch_work")
    prompt = json.loads(WORKFLOW.read_text())
    workflow = folder / "tiny_v2v.json"
    workflow.write_text(json.dumps(_tiny(prompt, golden.case("a_dit_tiny")["config"]["text_dim"])))
    media = folder / "media"
    media.mkdir()
    rows = ["id,source,audio,seed,prompt"]
    for i, seconds in enumerate(AUDIO_SECONDS):
        _write_video(media / f"clip{i % 2}.mp4", 60 + 80 * (i % 2))
        _write_wav(media / f"speech{i}.wav", seconds)
        rows.append(f"job{i},media/clip{i % 2}.mp4,media/speech{i}.wav,{i},a person talking {i}")
    jobs = folder / "jobs.csv"
    jobs.write_text("\n".join(rows) + "\n")
    i2v = json.loads(WORKFLOW_I2V.read_text())
    (folder / "tiny_i2v.json").write_text(json.dumps(_tiny(i2v, golden.case("a_dit_tiny")["config"]["text_dim"])))
    return folder, workflow, jobs


def _client(servers, workflow, jobs, out, timeout=600):
    command = [sys.executable, "-m", "client.batch", "--workflow", str(workflow), "--jobs", str(jobs),
               "--out", str(out)]
    for server in servers:
        command += ["--server", server.url]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr + done.stdout


def _frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _history_size(server) -> int:
    return len(server.get("/history"))


def test_batch_over_servers_gives_one_mp4_per_job_of_the_audio_length(fleet, work):
    folder, workflow, jobs = work
    code, log = _client(fleet, workflow, jobs, folder / "out")
    assert code == 0, log
    records = _manifest(folder / "out")
    done = {r["job"]: r for r in records if r["state"] == "done"}
    assert sorted(done) == [f"job{i}" for i in range(len(AUDIO_SECONDS))], log
    for i, seconds in enumerate(AUDIO_SECONDS):
        video = folder / "out" / f"job{i}.mp4"
        assert done[f"job{i}"]["outputs"] == [f"job{i}.mp4"]
        assert _frames(video) == round(seconds * 25), (video, log)
    used = {r["server"] for r in done.values()}
    assert len(used) >= 2, f"all jobs ran on {used}:\n{log}"
    assert f"done {len(AUDIO_SECONDS)}" in log


def test_second_run_skips_everything(fleet, work):
    folder, workflow, jobs = work
    before = [_history_size(s) for s in fleet]
    code, log = _client(fleet, workflow, jobs, folder / "out")
    assert code == 0, log
    assert f"skipped {len(AUDIO_SECONDS)}" in log and "done 0" in log, log
    assert [_history_size(s) for s in fleet] == before  # nothing queued


def test_job_naming_a_missing_model_is_reported_not_queued(fleet, work):
    folder, workflow, _ = work
    jobs = folder / "bad.jsonl"
    jobs.write_text(json.dumps({"id": "bad", "source": "media/clip0.mp4", "audio": "media/speech0.wav",
                                "InfiniteTalk Model Loader.model": "no_such_model.safetensors"}) + "\n")
    before = [_history_size(s) for s in fleet]
    code, log = _client(fleet, workflow, jobs, folder / "out_bad")
    assert code == 1, log
    assert "bad" in log and "no_such_model.safetensors" in log and "not queued" in log, log
    assert [r["state"] for r in _manifest(folder / "out_bad")] == ["invalid"]
    assert [_history_size(s) for s in fleet] == before


def test_i2v_job_with_a_face_image(fleet, work):
    """An image source and a face close-up: the client wires a 'Face image' LoadImage into the sampler."""
    from PIL import Image
    folder, _, _ = work
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(folder / "media" / "portrait.png")
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(folder / "media" / "face.png")
    jobs = folder / "i2v.jsonl"
    jobs.write_text(json.dumps({"id": "portrait", "image": "media/portrait.png", "audio": "media/speech0.wav",
                                "face": "media/face.png", "size": "16x16"}) + "\n")
    code, log = _client(fleet[:1], folder / "tiny_i2v.json", jobs, folder / "out_i2v")
    assert code == 0, log
    (record,) = [r for r in _manifest(folder / "out_i2v") if r["state"] == "done"]
    assert _frames(folder / "out_i2v" / "portrait.mp4") == round(AUDIO_SECONDS[0] * 25)
    prompt = fleet[0].get(f"/history/{record['prompt_id']}")[record["prompt_id"]]["prompt"][2]
    face = next(n for n in prompt.values() if n.get("_meta", {}).get("title") == "Face image")
    assert face["class_type"] == "LoadImage" and face["inputs"]["image"].startswith("face-")


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "example_workflows").glob("*.json")))
def test_api_exports_equal_the_conversion_with_the_servers_definitions(fleet, name):
    """The exports are made offline (our INPUT_TYPES + a copy of core's definitions); a live server's
    /object_info gives the same nodes, inputs and links."""
    sys.path.insert(0, str(ROOT))
    from client.ui_to_api import ui_to_api
    from client.export_api import api_path
    ui = json.loads((ROOT / "example_workflows" / f"{name}.json").read_text())
    stored = json.loads(api_path(ROOT / "example_workflows" / f"{name}.json").read_text())
    for server in fleet[:1] + fleet[2:]:  # one per ComfyUI version
        live = ui_to_api(ui, server.object_info())
        assert {k: (v["class_type"], v["inputs"]) for k, v in live.items()} == \
            {k: (v["class_type"], v["inputs"]) for k, v in stored.items()}


def test_killing_a_server_mid_batch_moves_its_job_to_another(fleet, work):
    folder, workflow, all_jobs = work
    jobs = folder / "two.csv"  # one job per server: the victim's job must finish elsewhere
    jobs.write_text("\n".join(all_jobs.read_text().splitlines()[:3]) + "\n")
    victim, others = fleet[0], fleet[1:]
    killed = threading.Event()

    def kill_when_busy():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed.is_set():
            try:
                if victim.get("/queue")["queue_running"]:
                    victim.stop()
                    killed.set()
                    return
            except OSError:
                return
            time.sleep(0.05)

    victim.get("/history")  # alive before
    watcher = threading.Thread(target=kill_when_busy, daemon=True)
    watcher.start()
    code, log = _client(fleet, workflow, jobs, folder / "out_kill")
    watcher.join(5)
    assert killed.is_set(), log
    assert code == 0, log
    records = _manifest(folder / "out_kill")
    victim_name = victim.url.split("://")[1]
    assert any(r["state"] == "requeued" and r["server"] == victim_name for r in records), log
    done = {r["job"]: r for r in records if r["state"] == "done"}
    assert sorted(done) == ["job0", "job1"], log
    assert all(r["server"] != victim_name for r in done.values()), log
    for i, seconds in enumerate(AUDIO_SECONDS[:2]):
        assert _frames(folder / "out_kill" / f"job{i}.mp4") == round(seconds * 25)
    assert {r["server"] for r in done.values()} <= {s.url.split("://")[1] for s in others}

