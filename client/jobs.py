"""Batch jobs: rows of a CSV / JSONL file, or two folders crossed (every video or image × every audio file).

Columns (CSV header or JSON keys): ``source`` (video or image; also ``video`` / ``image``), ``audio``, and optional
``face`` (``face_image``), ``prompt``, ``seed``, ``size`` (``WxH`` or ``480p`` / ``720p``), ``id``. Any other
column named ``<node title>.<input>`` sets that input of that node (e.g. ``InfiniteTalk Sampler.steps``).
Relative paths are relative to the jobs file. Empty cells take the command line's defaults.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_EXT = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif"}
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
AUDIO_EXT = {".wav", ".mp3", ".flac", ".m4a", ".ogg", ".aac", ".opus"}
ALIASES = {"video": "source", "image": "source", "face_image": "face", "name": "id"}
FIELDS = {"id", "source", "audio", "face", "prompt", "seed", "size"}
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_BUCKET = re.compile(r"^\s*(\d+)p(\s+bucket)?\s*$", re.IGNORECASE)


class JobsError(ValueError):
    pass


@dataclass
class Job:
    id: str
    source: Path
    audio: Path
    face: Path | None = None
    prompt: str | None = None
    seed: int | None = None
    size: str | None = None
    overrides: dict = field(default_factory=dict)  # (title, input) -> value
    where: str = ""  # "jobs.csv line 3", for messages

    def describe(self) -> dict:
        """What the job asks for (file paths resolved), for the manifest and its fingerprint."""
        return {"source": str(self.source), "audio": str(self.audio), "face": str(self.face) if self.face else None,
                "prompt": self.prompt, "seed": self.seed, "size": self.size,
                "overrides": {f"{t}.{i}": v for (t, i), v in sorted(self.overrides.items())}}

    def missing_files(self) -> list[str]:
        return [f"{name} file not found: {path}" for name, path in
                (("source", self.source), ("audio", self.audio), ("face", self.face)) if path and not path.is_file()]


def parse_size(size: str) -> dict:
    """``WxH`` -> custom width/height; ``480p`` / ``720p`` -> that bucket (sampler inputs)."""
    if m := _SIZE.match(size):
        return {"resolution": "custom width/height", "width": int(m[1]), "height": int(m[2])}
    if m := _BUCKET.match(size):
        return {"resolution": f"{m[1]}p bucket"}
    raise JobsError(f"size {size!r}: use WIDTHxHEIGHT (multiples of 16, e.g. 832x480) or 480p / 720p")


def _parse_value(text: str):
    """A CSV cell for a node input: JSON when it parses (numbers, true/false), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _job(row: dict, base: Path, defaults: dict, where: str, from_csv: bool) -> Job:
    values, overrides = {}, {}
    for key, value in row.items():
        if key is None:
            raise JobsError(f"{where}: more cells than header columns")
        key = key.strip()
        key = ALIASES.get(key.lower(), key.lower()) if key.lower() in FIELDS | set(ALIASES) else key
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if key in FIELDS:
            values[key] = value.strip() if isinstance(value, str) else value
        elif "." in key:
            title, _, name = key.rpartition(".")
            overrides[(title.strip(), name.strip())] = _parse_value(value) if from_csv else value
        else:
            raise JobsError(f"{where}: unknown column {key!r} (use source, audio, face, prompt, seed, size, id, "
                            f"or '<node title>.<input>')")
    values = {**{k: v for k, v in defaults.items() if v is not None}, **values}
    for required in ("source", "audio"):
        if not values.get(required):
            raise JobsError(f"{where}: no {required}")
    seed = values.get("seed")
    if seed is not None:
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise JobsError(f"{where}: seed {seed!r} is not an integer") from None
    size = values.get("size")
    if size is not None:
        try:
            parse_size(str(size))
        except JobsError as e:
            raise JobsError(f"{where}: {e}") from None
    resolve = lambda p: (base / Path(str(p)).expanduser()).resolve() if p else None  # noqa: E731
    source, audio = resolve(values["source"]), resolve(values["audio"])
    return Job(id=str(values.get("id") or f"{source.stem}__{audio.stem}"), source=source, audio=audio,
               face=resolve(values.get("face")), prompt=values.get("prompt"), seed=seed,
               size=str(size) if size is not None else None, overrides=overrides, where=where)


def _unique_ids(jobs: list[Job]) -> list[Job]:
    seen = {}
    for job in jobs:
        n = seen.get(job.id, 0) + 1
        seen[job.id] = n
        if n > 1:
            job.id = f"{job.id}-{n}"
    if len({j.id for j in jobs}) != len(jobs):
        raise JobsError("job ids are not unique after numbering repeats: set an 'id' column")
    bad = [j.id for j in jobs if not re.fullmatch(r"[\w.\-]+", j.id)]
    if bad:
        raise JobsError(f"job ids may hold only letters, digits, '_', '-', '.': {bad[:5]}")
    return jobs


def read_jobs(path: Path, defaults: dict | None = None) -> list[Job]:
    """Jobs of a .csv or .jsonl file (``defaults``: prompt / seed / size for empty cells)."""
    path, defaults = Path(path), defaults or {}
    if not path.is_file():
        raise JobsError(f"jobs file not found: {path}")
    base = path.resolve().parent
    jobs = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise JobsError(f"{path.name} line {n}: not JSON ({e})") from None
            if not isinstance(row, dict):
                raise JobsError(f"{path.name} line {n}: expected a JSON object")
            jobs.append(_job(row, base, defaults, f"{path.name} line {n}", from_csv=False))
    elif path.suffix.lower() in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if not reader.fieldnames:
                raise JobsError(f"{path.name}: empty (expected a header row: source,audio,...)")
            for row in reader:
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue
                jobs.append(_job(row, base, defaults, f"{path.name} line {reader.line_num}", from_csv=True))
    else:
        raise JobsError(f"{path.name}: jobs must be a .csv, .tsv or .jsonl file")
    if not jobs:
        raise JobsError(f"{path.name}: no jobs")
    return _unique_ids(jobs)


def cross_folders(sources: Path, audios: Path, defaults: dict | None = None) -> list[Job]:
    """Every video or image in ``sources`` × every audio file in ``audios`` (sorted by name)."""
    for folder in (sources, audios):
        if not Path(folder).is_dir():
            raise JobsError(f"not a folder: {folder}")
    media = sorted(p for p in Path(sources).iterdir() if p.suffix.lower() in VIDEO_EXT | IMAGE_EXT)
    speech = sorted(p for p in Path(audios).iterdir() if p.suffix.lower() in AUDIO_EXT)
    if not media or not speech:
        raise JobsError(f"no {'videos or images' if not media else 'audio files'} in "
                        f"{sources if not media else audios}")
    jobs = [_job({"source": str(s.resolve()), "audio": str(a.resolve())}, Path.cwd(), defaults or {},
                 f"{s.name} × {a.name}", from_csv=False) for s in media for a in speech]
    return _unique_ids(jobs)
