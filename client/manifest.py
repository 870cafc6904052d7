"""The batch's memory: a JSONL file, one line per job state change (the last line of a job wins). Lines are
appended, flushed and fsynced one at a time, so an interrupted run leaves every earlier line intact; a torn
last line is ignored when read back. Re-running skips jobs whose last state is ``done`` for the same inputs
(fingerprint) with their output files still present."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

STATES = ("invalid", "queued", "done", "failed", "requeued", "cancelled")


def fingerprint(job_description: dict, workflow: dict, files: list) -> str:
    """What decides a job's output: its values, the workflow, and the input files (size, mtime)."""
    stats = [[str(p), p.stat().st_size, int(p.stat().st_mtime)] if p.is_file() else [str(p), None, None]
             for p in files if p]
    blob = json.dumps([job_description, workflow, stats], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Manifest:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.latest: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line torn by a kill; its job re-runs
                if isinstance(record, dict) and "job" in record:
                    self.latest[record["job"]] = record

    def record(self, job_id: str, state: str, **fields) -> dict:
        assert state in STATES, state
        record = {"job": job_id, "state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self.latest[job_id] = record
        return record

    def finished(self, job_id: str, fingerprint_: str) -> dict | None:
        """The ``done`` record of this job for these inputs, if its outputs are all still there."""
        record = self.latest.get(job_id)
        if not record or record["state"] != "done" or record.get("fingerprint") != fingerprint_:
            return None
        outputs = [self.path.parent / o for o in record.get("outputs", [])]
        return record if outputs and all(o.is_file() for o in outputs) else None
