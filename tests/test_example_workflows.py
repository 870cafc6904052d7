"""The example workflows (example_workflows/*.json, shown in ComfyUI's Templates browser under this pack) are
valid UI-format graphs for our nodes: every node of ours exists, widget values line up with the inputs and are
in range, links agree with both ends and with our RETURN_TYPES / INPUT_TYPES. Core nodes are checked against
a running ComfyUI in tests/integration/test_example_workflows_comfyui.py."""
from pathlib import Path

import pytest

import workflow_check as wc
from infinitetalk_lipsync import NODE_CLASS_MAPPINGS

FOLDER = Path(__file__).resolve().parents[1] / "example_workflows"
# The file name is the title the Templates browser shows (frontend: title = name), so it is written for people.
NAMES = ["InfiniteTalk V2V dubbing", "InfiniteTalk I2V talking portrait", "InfiniteTalk face-only dubbing"]
# base DiT, InfiniteTalk file, wav2vec2, umT5, CLIP vision, VAE, lightx2v LoRA; + the vocal model where a workflow
# separates the speech from its soundtrack.
MODEL_FILES = 7
SPECS = wc.specs_from_mappings(NODE_CLASS_MAPPINGS)


def _nodes(workflow, class_type):
    return [n for n in workflow["nodes"] if n["type"] == class_type]


def _values(workflow, node):
    return dict((name, v) for name, v in zip(wc.widget_slots(SPECS[node["type"]]), node["widgets_values"]) if name)


def _source_of(workflow, node, input_name):
    link_id = next(i["link"] for i in node["inputs"] if i["name"] == input_name)
    link = next(l for l in workflow["links"] if l[0] == link_id)
    return next(n for n in workflow["nodes"] if n["id"] == link[1]), link[2]


@pytest.mark.parametrize("name", NAMES)
def test_workflow_is_consistent_with_our_nodes(name):
    workflow = wc.load(FOLDER / f"{name}.json")
    assert workflow["version"] == 0.4 and workflow["nodes"] and workflow["links"]
    ours = {n["type"] for n in workflow["nodes"] if n["type"].startswith("InfiniteTalk")}
    assert ours and ours <= set(NODE_CLASS_MAPPINGS), ours - set(NODE_CLASS_MAPPINGS)
    assert wc.check(workflow, SPECS) == []


def test_names_are_the_workflows_in_the_folder():
    assert sorted(p.stem for p in FOLDER.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_missing_models_dialog_lists_every_model_file(name):
    """Each model widget carries its properties.models entry (name = the widget's file, a folder its node reads, a
    Hugging Face .safetensors url of that file), so the frontend's Missing Models dialog offers every download."""
    workflow = wc.load(FOLDER / f"{name}.json")
    assert wc.model_problems(workflow, SPECS) == []  # our nodes here; core loaders against a server (integration)
    listed = wc.listed_models(workflow, SPECS)
    separating = any(n["type"] == "InfiniteTalkVocalSeparation" for n in workflow["nodes"])
    assert len(listed) == MODEL_FILES + separating, [m["name"] for m in listed]
    for model in listed:
        assert model["url"].startswith(wc.DOWNLOAD_SOURCES) and model["name"].endswith(wc.DOWNLOAD_SUFFIXES), model
        assert model["url"].split("?")[0].endswith("/" + model["name"]), model
    folders = {folder for folders in wc.MODEL_INPUTS.values() for folder in folders}
    assert {m["directory"] for m in listed} <= folders


@pytest.mark.parametrize("name", NAMES)
def test_templates_browser_thumbnail(name):
    """The Templates browser shows <name>.jpg from example_workflows/ as the card image (frontend: mediaSubtype
    'jpg' for custom-node templates): a real JPEG of a card's proportions."""
    Image = pytest.importorskip("PIL.Image")
    path = FOLDER / f"{name}.jpg"
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "JPEG" and 256 <= image.width <= 1024 and 0.5 <= image.height / image.width <= 1.0
        assert path.stat().st_size < 200_000


@pytest.mark.parametrize("name", NAMES)
def test_sampler_settings_fit_the_lightx2v_lora(name):
    """The workflows use the lightx2v step-distill LoRA, so the sampler runs its settings (4 steps, cfg 1 = two model
    calls per step, audio cfg 2), and the video saved is the sampler's own (exact audio length)."""
    workflow = wc.load(FOLDER / f"{name}.json")
    (lora,) = _nodes(workflow, "InfiniteTalkLoRA")
    assert "lightx2v" in lora["widgets_values"][0]
    (loader,) = _nodes(workflow, "InfiniteTalkModelLoader")
    assert _source_of(workflow, loader, "lora")[0] is lora
    (sampler,) = _nodes(workflow, "InfiniteTalkSampler")
    settings = _values(workflow, sampler)
    assert (settings["steps"], settings["cfg"], settings["audio_cfg"], settings["denoise"]) == (4, 1.0, 2.0, 1.0)
    assert settings["seed"] == 42 and sampler["widgets_values"][settings_index(sampler, "seed") + 1] == "fixed"
    (save,) = _nodes(workflow, "SaveVideo")
    # the sampler's own mp4, written window by window with the trimmed original sound (face-only: pasted first)
    assert _source_of(workflow, save, "video") == (sampler, 3)
    assert not _nodes(workflow, "CreateVideo")
    (embeds,) = _nodes(workflow, "InfiniteTalkAudioEmbeds")
    assert _values(workflow, embeds)["fps"] == 25.0


def settings_index(node, name):
    return wc.widget_slots(SPECS[node["type"]]).index(name)


def test_face_only_path_streams_the_video_through_the_face_plan():
    """LoadVideo (VIDEO) -> Face Plan (video) -> sampler (source_video + face_plan) -> SaveVideo: no frames of the
    whole video in memory (no GetVideoComponents), the sampler generates the crop size and pastes."""
    workflow = wc.load(FOLDER / "InfiniteTalk face-only dubbing.json")
    (plan,), (sampler,), (load,) = (_nodes(workflow, t) for t in (
        "InfiniteTalkFacePlan", "InfiniteTalkSampler", "LoadVideo"))
    assert not any(_nodes(workflow, t) for t in ("GetVideoComponents", "InfiniteTalkFaceCrop",
                                                  "InfiniteTalkFacePaste", "InfiniteTalkFaceMask"))
    assert _source_of(workflow, plan, "video") == (load, 0)
    assert _source_of(workflow, sampler, "source_video") == (load, 0)
    assert _source_of(workflow, sampler, "face_plan") == (plan, 0)
    crop_size = _values(workflow, plan)
    settings = _values(workflow, sampler)
    assert settings["resolution"] == "custom width/height"
    assert (settings["width"], settings["height"]) == (crop_size["width"], crop_size["height"])
    assert (crop_size["region"], crop_size["feather"], crop_size["colour_match"]) == ("lower_face", 12, "lab")


def test_checker_reports_broken_workflows():
    """The checker itself: a wrong widget count, an out-of-range value and a mistyped link are reported."""
    workflow = wc.load(FOLDER / "InfiniteTalk V2V dubbing.json")
    (sampler,) = _nodes(workflow, "InfiniteTalkSampler")
    sampler["widgets_values"][settings_index(sampler, "steps")] = 0
    sampler["widgets_values"][settings_index(sampler, "window")] = 80
    (embeds,) = _nodes(workflow, "InfiniteTalkAudioEmbeds")
    embeds["widgets_values"].append(1.0)
    link = next(l for l in workflow["links"] if l[3] == sampler["id"] and l[5] == "VAE")
    link[5] = "IMAGE"
    problems = "\n".join(wc.check(workflow, SPECS))
    assert "steps: 0 < min 1" in problems
    assert "window: 80 is not min 5 + a multiple of step 4" in problems
    assert "5 widgets_values, expected 4" in problems
    assert "types differ: link IMAGE" in problems


@pytest.mark.parametrize("name", NAMES)
def test_layout_has_no_overlapping_nodes(name):
    """Readable in the editor: no node covers another (title bars included)."""
    title = 30
    boxes = [(n["id"], n["pos"][0], n["pos"][1] - title, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in wc.load(FOLDER / f"{name}.json")["nodes"]]
    overlaps = [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
                if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]
    assert overlaps == []


@pytest.mark.parametrize("name", NAMES)
def test_every_node_sits_inside_one_group(name):
    """Groups frame the columns: each node (title bar included; the note aside) lies inside exactly one group. The
    sizes saved are the editor's own (it grows a node to fit its widgets), so a group drawn around them holds."""
    workflow = wc.load(FOLDER / f"{name}.json")
    groups = [(g["title"], *g["bounding"]) for g in workflow["groups"]]
    for node in workflow["nodes"]:
        if node["type"] == "MarkdownNote":
            continue
        (x, y), (w, h) = node["pos"], node["size"]
        inside = [t for t, gx, gy, gw, gh in groups if gx <= x and x + w <= gx + gw and gy <= y - 30 and y + h <= gy + gh]
        assert len(inside) == 1, (node["id"], node["type"], inside)


# ComfyUI 0.38.1's LoadVideo / GetVideoComponents / CreateVideo / SaveVideo as /object_info describes them: their
# schemas (comfy_extras/nodes_video.py of 0.38.1) rebuilt on 0.8.0's V3 io and exported from a running server.
SPECS_038 = {**SPECS, **wc.load(Path(__file__).parent / "data" / "comfyui_0.38.1_video_nodes.json")}


@pytest.mark.parametrize("name", NAMES)
def test_workflow_loads_with_comfyui_038_video_nodes(name):
    """Saved with 0.3.64/0.8.0's video nodes, the workflows fill 0.38.1's: SaveVideo's values become format / codec
    of its nested combo (the encoding keeps its default), CreateVideo's and LoadVideo's new optional widgets keep
    theirs (frontend 1.53.6 in a browser does the same), GetVideoComponents keeps its first three outputs."""
    workflow = wc.load(FOLDER / f"{name}.json")
    assert wc.check(workflow, SPECS_038, grown_outputs=True) == []
    (save,) = _nodes(workflow, "SaveVideo")
    slots = dict(zip(wc.widget_slots(SPECS_038["SaveVideo"], save["widgets_values"]),
                     save["widgets_values"]))
    assert (slots["format"], slots["format.codec"]) == ("mp4", "h264")


def test_old_load_video_upload_value_would_become_038s_edit():
    """Why LoadVideo is saved with the file name only: the upload button's value that older frontends saved after it
    ("image") lands, by position, in 0.38's new `edit` widget, whose LoadVideo.execute reads it as a dict and fails."""
    workflow = wc.load(FOLDER / "InfiniteTalk V2V dubbing.json")
    (load,) = _nodes(workflow, "LoadVideo")
    load["widgets_values"] = [load["widgets_values"][0], "image"]
    assert wc.check(workflow, SPECS) == []  # fine for 0.3.64 / 0.8.0 (an upload value)
    assert wc.check(workflow, SPECS_038, grown_outputs=True) == [
        "node 11 (LoadVideo): edit: 'image' is not a VIDEO_EDIT value (a dict of trim / crop)"]


def test_v2v_lips_follow_the_separated_voice_and_the_video_keeps_the_full_mix():
    """Vocal separation feeds the embeddings; the loaded audio itself is the soundtrack the sampler puts in the video."""
    workflow = wc.load(FOLDER / "InfiniteTalk V2V dubbing.json")
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {l[0]: l for l in workflow["links"]}
    embeds = next(n for n in workflow["nodes"] if n["type"] == "InfiniteTalkAudioEmbeds")
    source = {i["name"]: nodes[links[i["link"]][1]] for i in embeds["inputs"] if i.get("link") is not None}
    assert source["audio"]["type"] == "InfiniteTalkVocalSeparation"
    assert source["soundtrack"]["type"] == "LoadAudio"
    separation_input = links[source["audio"]["inputs"][0]["link"]]
    assert nodes[separation_input[1]]["id"] == source["soundtrack"]["id"]


def test_v2v_streams_the_video_in_and_out():
    """Long dubs stay flat in memory: the sampler reads Load Video's VIDEO itself (no IMAGE of the whole video)."""
    workflow = wc.load(FOLDER / "InfiniteTalk V2V dubbing.json")
    (sampler,), (load,) = _nodes(workflow, "InfiniteTalkSampler"), _nodes(workflow, "LoadVideo")
    assert _source_of(workflow, sampler, "source_video") == (load, 0)
    assert not _nodes(workflow, "GetVideoComponents")
