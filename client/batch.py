"""Dub many (video or image, audio) pairs on one or more ComfyUI servers.

  python -m client.batch --server http://gpu1:8188 --server http://gpu2:8188 \\
      --workflow example_workflows/api/infinitetalk_v2v_dubbing.json --jobs jobs.csv --out out/

Jobs come from a CSV / JSONL file (--jobs) or from two folders crossed (--videos DIR --audio DIR). Each job's
files are uploaded, the workflow is patched by node title and checked against the server's /object_info, then
queued; progress is followed over the websocket and the outputs are downloaded to --out as <job id>.mp4. One job
runs per server at a time; a server that dies hands its job to another. <out>/manifest.jsonl records every
job, so running the same command again skips finished jobs. Exit status: 0 all done or skipped, 1 some failed,
2 bad arguments or input, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .jobs import JobsError, cross_folders, read_jobs
from .manifest import Manifest
from .patch import PatchError, load_workflow
from .progress import Progress
from .scheduler import Batch
from .server import Server


def _override(text: str):
    title_input, sep, value = text.partition("=")
    title, dot, name = title_input.rpartition(".")
    if not sep or not dot or not title.strip() or not name.strip():
        raise argparse.ArgumentTypeError(f"--set {text!r}: use 'Node title.input=value'")
    try:
        value = json.loads(value)
    except ValueError:
        pass
    return (title.strip(), name.strip()), value


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m client.batch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--server", action="append", required=True, metavar="URL",
                   help="a ComfyUI server (repeat for several; one job runs on each at a time)")
    p.add_argument("--workflow", required=True, type=Path,
                   help="API-format workflow (example_workflows/api/*.json) or a UI workflow")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--jobs", type=Path, help="CSV or JSONL: source, audio, [face, prompt, seed, size, id, "
                                               "'<node title>.<input>']")
    src.add_argument("--videos", type=Path, help="folder of videos or images, crossed with --audio")
    p.add_argument("--audio", type=Path, help="folder of audio files (with --videos)")
    p.add_argument("--out", required=True, type=Path, help="folder for the outputs and the manifest")
    p.add_argument("--manifest", type=Path, help="job log to resume from (default: <out>/manifest.jsonl)")
    p.add_argument("--prompt", help="prompt for jobs that give none")
    p.add_argument("--seed", type=int, help="seed for jobs that give none")
    p.add_argument("--size", help="size for jobs that give none: WIDTHxHEIGHT or 480p / 720p")
    p.add_argument("--set", action="append", type=_override, default=[], metavar="'TITLE.INPUT=VALUE'",
                   help="set an input of the node with that title in every job (repeatable)")
    p.add_argument("--prefix", default="batch", help="output subfolder on the servers (default: batch)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for one HTTP request (default 60)")
    args = p.parse_args(argv)
    if args.videos and not args.audio:
        p.error("--videos needs --audio (a folder of audio files)")
    return args


def summary(results: dict) -> str:
    rows = [("job", "state", "server", "time", "output / error")]
    for r in results.values():
        rows.append((r.job.id, r.state, r.server or "-", f"{r.seconds:.1f}s" if r.seconds is not None else "-",
                     ", ".join(r.outputs) if r.state in ("done", "skipped") else r.error))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    counts = {s: sum(r.state == s for r in results.values()) for s in ("done", "failed", "skipped", "cancelled")}
    lines.append(", ".join(f"{k} {v}" for k, v in counts.items() if v or k != "cancelled"))
    return "\n".join(lines)


def main(argv=None, stream=None) -> int:
    args = parse_args(argv)
    stream = stream or sys.stderr
    defaults = {"prompt": args.prompt, "seed": args.seed, "size": args.size}
    try:
        jobs = read_jobs(args.jobs, defaults) if args.jobs else cross_folders(args.videos, args.audio, defaults)
        workflow = load_workflow(args.workflow)
    except (JobsError, PatchError) as e:
        print(f"error: {e}", file=stream)
        return 2
    for job in jobs:
        job.overrides = {**dict(args.set), **job.overrides}
    manifest = Manifest(args.manifest or args.out / "manifest.jsonl")
    servers = [Server(url, timeout=args.timeout) for url in dict.fromkeys(args.server)]
    batch = None
    progress = Progress(len(jobs), stream, live_servers=lambda: len(batch.live) if batch else len(servers))
    batch = Batch(servers, workflow, jobs, args.out, manifest, progress, prefix=args.prefix)
    try:
        batch.plan()
        results = batch.run()
    except KeyboardInterrupt:  # during planning; run() handles its own
        print("\ninterrupted", file=stream)
        return 130
    print("\n" + summary(results), file=stream, flush=True)
    if batch.stop.is_set():
        return 130
    return 1 if any(r.state != "done" and r.state != "skipped" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
