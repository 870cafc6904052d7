"""A job applied to an API-format workflow: media files, prompt, seed, size, output prefix and
``<title>.<input>`` overrides go to the nodes client/roles.py finds."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from . import roles
from .jobs import IMAGE_EXT, Job, parse_size
from .ui_to_api import is_api_format


class PatchError(ValueError):
    pass


def load_workflow(path: Path) -> dict:
    """An API-format workflow, or a UI-format one (converted later against each server's /object_info)."""
    try:
        workflow = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PatchError(f"workflow not found: {path}") from None
    except ValueError as e:
        raise PatchError(f"workflow {path} is not JSON: {e}") from None
    if not isinstance(workflow, dict) or not (is_api_format(workflow) or "nodes" in workflow):
        raise PatchError(f"workflow {path}: neither API format (ids -> class_type/inputs) nor a UI workflow")
    return workflow


def _node(prompt: dict, role: str, what: str) -> str:
    try:
        node_id = roles.find(prompt, role)
    except roles.RoleError as e:
        raise PatchError(str(e)) from None
    if node_id is None:
        raise PatchError(f"no node for the {what}: title one {roles.TITLES[role][0]!r}")
    return node_id


def _media(prompt: dict, node_id: str, path: Path, what: str, media: list) -> None:
    kind = prompt[node_id]["class_type"]
    key = roles.MEDIA_INPUT.get(kind)
    if key is None:
        raise PatchError(f"the {what} node {prompt[node_id]['_meta'].get('title', node_id)!r} is a {kind}, "
                         f"not LoadVideo / LoadImage / LoadAudio")
    is_image = path.suffix.lower() in IMAGE_EXT
    if kind == "LoadVideo" and is_image:
        raise PatchError(f"{path.name} is an image but this workflow loads a video: use the I2V workflow")
    if kind == "LoadImage" and not is_image:
        raise PatchError(f"{path.name} is not an image but this workflow loads an image: use the V2V workflow")
    prompt[node_id]["inputs"][key] = path.name
    media.append((node_id, key, path))


def apply(workflow: dict, job: Job, prefix: str) -> tuple[dict, list]:
    """(prompt, media): the patched API prompt and [(node id, input, local file)] still to upload (their inputs
    hold the file name until then)."""
    prompt, media = copy.deepcopy(workflow), []
    _media(prompt, _node(prompt, "source", "source video/image"), job.source, "source", media)
    _media(prompt, _node(prompt, "audio", "audio"), job.audio, "audio", media)
    sampler = roles.find(prompt, "sampler")
    if job.face:
        face = roles.find(prompt, "face")
        if face is None:
            if sampler is None or "face_image" in prompt[sampler]["inputs"]:
                raise PatchError("a face image was given but the workflow has no 'Face image' node and no free "
                                 "face_image input on an InfiniteTalk Sampler")
            face = str(max((int(i) for i in prompt if i.isdigit()), default=0) + 1)
            prompt[face] = {"inputs": {}, "class_type": "LoadImage", "_meta": {"title": "Face image"}}
            prompt[sampler]["inputs"]["face_image"] = [face, 0]
        _media(prompt, face, job.face, "face image", media)
    if job.prompt is not None:
        prompt[_node(prompt, "prompt", "prompt")]["inputs"]["text"] = job.prompt
    if job.seed is not None or job.size is not None:
        if sampler is None:
            raise PatchError("seed/size given but no 'InfiniteTalk Sampler' node")
        if job.seed is not None:
            prompt[sampler]["inputs"]["seed"] = job.seed
        if job.size is not None:
            size = parse_size(job.size)
            prompt[sampler]["inputs"].update(size)
            if "width" in size:  # face-only dubbing: the crop is generated at the sampler's size
                for node in prompt.values():
                    if node["class_type"] in ("InfiniteTalkFaceCrop", "InfiniteTalkFacePlan"):
                        node["inputs"].update(width=size["width"], height=size["height"])
    prompt[_node(prompt, "output", "output (SaveVideo)")]["inputs"]["filename_prefix"] = f"{prefix}/{job.id}"
    for (title, name), value in job.overrides.items():
        ids = roles.by_title(prompt, title)
        if len(ids) != 1:
            raise PatchError(f"'{title}.{name}': {'no node' if not ids else f'{len(ids)} nodes'} titled {title!r} "
                             f"(titles: {sorted({n['_meta'].get('title', '') for n in prompt.values()})})")
        prompt[ids[0]]["inputs"][name] = value
    return prompt, media
