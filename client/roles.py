"""Where a batch job's values go in an API-format workflow: each role is a node found by its title
(``_meta.title``, case-insensitive), else by its place in the graph (so a workflow exported from the editor
without our titles still works).

| role | title in our API workflows | input set |
|---|---|---|
| source | "Source video" (LoadVideo) / "Source image" (LoadImage) | file / image |
| face | "Face image" (LoadImage; added and wired to the sampler's face_image when absent) | image |
| audio | "Audio" (LoadAudio) | audio |
| prompt | "Prompt" (CLIPTextEncode) | text |
| sampler | "InfiniteTalk Sampler" | seed; resolution / width / height |
| output | "Save Video" | filename_prefix |
"""
from __future__ import annotations

SAMPLER = "InfiniteTalkSampler"
MEDIA_INPUT = {"LoadVideo": "file", "LoadImage": "image", "LoadAudio": "audio"}
TITLES = {  # role -> titles accepted, the first is the one our API workflows carry
    "source": ("Source video", "Source image", "Source"),
    "face": ("Face image",),
    "audio": ("Audio", "Speech"),
    "audio_2": ("Audio 2",),
    "prompt": ("Prompt", "Positive prompt", "CLIP Text Encode (Positive Prompt)"),
    "negative": ("Negative prompt", "CLIP Text Encode (Negative Prompt)"),
    "sampler": ("InfiniteTalk Sampler", "Sampler"),
    "output": ("Save Video", "Output"),
}


class RoleError(ValueError):
    pass


def by_title(prompt: dict, title: str) -> list[str]:
    want = title.strip().lower()
    return [i for i, n in prompt.items() if str((n.get("_meta") or {}).get("title", "")).strip().lower() == want]


def _upstream(prompt: dict, node_id: str, input_name: str, classes) -> list[str]:
    """Nodes of ``classes`` that feed ``node_id.input_name`` (directly or through other nodes), nearest first."""
    link = prompt[node_id]["inputs"].get(input_name)
    if not (isinstance(link, list) and len(link) == 2):
        return []
    found, seen, frontier = [], set(), [str(link[0])]
    while frontier:
        nxt = []
        for i in frontier:
            if i in seen or i not in prompt:
                continue
            seen.add(i)
            if prompt[i]["class_type"] in classes:
                found.append(i)
                continue
            nxt += [str(v[0]) for v in prompt[i]["inputs"].values() if isinstance(v, list) and len(v) == 2]
        frontier = nxt
    return found


def _only(ids: list[str]) -> str | None:
    return ids[0] if len(ids) == 1 else None


def _structural(prompt: dict, role: str) -> str | None:
    samplers = [i for i, n in prompt.items() if n["class_type"] == SAMPLER]
    if role == "sampler":
        return _only(samplers)
    if role == "output":
        return _only([i for i, n in prompt.items() if "filename_prefix" in n["inputs"]
                      and n["class_type"].startswith("Save")]) or \
            _only([i for i, n in prompt.items() if "filename_prefix" in n["inputs"]])
    sampler = _only(samplers)
    if sampler is None:
        return None
    if role == "source":  # a video streamed in (source_video) or frames/an image (source)
        return _only(_upstream(prompt, sampler, "source_video", ("LoadVideo",))
                     or _upstream(prompt, sampler, "source", ("LoadVideo", "LoadImage")))
    if role == "face":
        return _only(_upstream(prompt, sampler, "face_image", ("LoadImage",)))
    if role in ("prompt", "negative"):
        return _only(_upstream(prompt, sampler, "positive" if role == "prompt" else "negative", ("CLIPTextEncode",)))
    if role in ("audio", "audio_2"):
        embeds = _upstream(prompt, sampler, "audio_embeds", ("InfiniteTalkAudioEmbeds",))
        if len(embeds) == 1:
            return _only(_upstream(prompt, embeds[0], "audio" if role == "audio" else "audio_2", ("LoadAudio",)))
        return _only([i for i, n in prompt.items() if n["class_type"] == "LoadAudio"]) if role == "audio" else None
    return None


def find(prompt: dict, role: str) -> str | None:
    """The node id playing ``role``: by title first, else by the graph; None when absent or ambiguous."""
    for title in TITLES[role]:
        ids = by_title(prompt, title)
        if len(ids) > 1:
            raise RoleError(f"{len(ids)} nodes are titled {title!r} (ids {', '.join(ids)}): give each a unique title")
        if ids:
            return ids[0]
    return _structural(prompt, role)


def role_titles(prompt: dict) -> dict[str, str]:
    """node id -> the title our API workflows give it (found from the graph; the exporter uses this)."""
    titles = {}
    for role in TITLES:
        node_id = _structural(prompt, role)
        if node_id is None or role in ("sampler", "output"):  # these keep their display names
            continue
        title = TITLES[role][0]
        if role == "source" and prompt[node_id]["class_type"] == "LoadImage":
            title = "Source image"
        titles[node_id] = title
    return titles
