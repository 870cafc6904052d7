"""Fan a batch out over ComfyUI servers: one thread per server, one job in flight per server. Each job is
patched and checked against every server's /object_info first; a job no server can run is reported and never
queued. A server that stops answering has its job put back for the others; Ctrl-C cancels the jobs in flight on
their servers and records them as cancelled."""
from __future__ import annotations

import collections
import copy
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import roles, validate
from .jobs import Job
from .manifest import Manifest, fingerprint
from .patch import PatchError, apply
from .server import JobFailed, ServerDown, output_files
from .ui_to_api import ConversionError, is_api_format, ui_to_api


@dataclass
class Result:
    job: Job
    state: str = "pending"  # done / failed / skipped / cancelled
    server: str = ""
    seconds: float | None = None
    outputs: list = field(default_factory=list)
    error: str = ""


@dataclass
class _Plan:
    job: Job
    fingerprint: str
    prompts: dict  # server name -> (prompt, media)
    attempts: list = field(default_factory=list)


class Batch:
    def __init__(self, servers: list, workflow: dict, jobs: list[Job], out_dir: Path, manifest: Manifest,
                 progress, prefix: str = "batch"):
        self.servers, self.workflow, self.jobs = servers, workflow, jobs
        self.out_dir, self.manifest, self.progress, self.prefix = Path(out_dir), manifest, progress, prefix
        self.results = {job.id: Result(job) for job in jobs}
        self.live: list = []
        self.stop = threading.Event()
        self._pending: collections.deque[_Plan] = collections.deque()
        self._inflight: dict[str, tuple] = {}  # job id -> (server, prompt id)
        self._uploads: dict[tuple, str] = {}
        self._cond = threading.Condition()
        self._active = 0  # worker threads still running

    # ---- before anything is queued
    def _server_workflows(self) -> dict:
        """server name -> its API-format workflow (a UI workflow is converted with that server's definitions)."""
        infos, workflows = {}, {}
        for server in self.servers:
            try:
                infos[server.name] = server.object_info()
            except ServerDown as e:
                self.progress.log(f"server {server.name} is not reachable ({e}); continuing without it")
                continue
            if is_api_format(self.workflow):
                workflows[server.name] = self.workflow
            else:
                try:
                    workflows[server.name] = ui_to_api(self.workflow, infos[server.name])
                except ConversionError as e:
                    self.progress.log(f"server {server.name}: cannot convert the UI workflow: {e}")
                    continue
            self.live.append(server)
        self._object_info = infos
        return workflows

    def plan(self) -> None:
        workflows = self._server_workflows()
        for job in self.jobs:
            result = self.results[job.id]
            fp = fingerprint(job.describe(), self.workflow, [job.source, job.audio, job.face])
            if (done := self.manifest.finished(job.id, fp)) is not None:
                result.state, result.outputs, result.server = "skipped", done.get("outputs", []), done.get("server", "")
                self.progress.end(job.id, "skipped", "done earlier: " + ", ".join(result.outputs))
                continue
            if not self.live:
                self._fail(job, "no server reachable", invalid=True)
                continue
            if missing := job.missing_files():
                self._fail(job, "not queued: " + "; ".join(missing), invalid=True)
                continue
            prompts, reasons = {}, {}  # problems text -> servers that report it
            for server in self.live:
                try:
                    prompt, media = apply(workflows[server.name], job, self.prefix)
                except PatchError as e:
                    reasons = {str(e): []}
                    break
                found = validate.problems(prompt, self._object_info[server.name],
                                          skip={(node, key) for node, key, _ in media})
                if found:
                    reasons.setdefault("; ".join(found), []).append(server.name)
                else:
                    prompts[server.name] = (prompt, media)
            if not prompts:
                text = " | ".join(f"{', '.join(names)}: {why}" if names and len(self.live) > 1 else why
                                  for why, names in reasons.items())
                self._fail(job, "not queued: " + text, invalid=True)
                continue
            for why, names in reasons.items():
                self.progress.log(f"{job.id}: not on {', '.join(names)} ({why})")
            self._pending.append(_Plan(job, fp, prompts))

    def _fail(self, job: Job, error: str, invalid: bool = False, **fields) -> None:
        result = self.results[job.id]
        result.state, result.error = "failed", error
        self.manifest.record(job.id, "invalid" if invalid else "failed", error=error, **fields)
        self.progress.end(job.id, "failed", error)

    # ---- running
    def run(self) -> dict:
        """Run every planned job; returns {job id: Result}. KeyboardInterrupt cancels what is in flight."""
        threads = [threading.Thread(target=self._worker, args=(s,), name=f"batch-{s.name}", daemon=True)
                   for s in self.live]
        self._active = len(threads)
        for t in threads:
            t.start()
        try:
            self._wait_workers(None)
        except KeyboardInterrupt:
            self.progress.log("interrupted: cancelling the jobs in flight (Ctrl-C again to quit at once)")
            self.stop.set()
            with self._cond:
                self._cond.notify_all()
                inflight = list(self._inflight.values())
            for server, prompt_id in inflight:
                if prompt_id:
                    server.cancel(prompt_id)
            self._wait_workers(15)
        with self._cond:
            for plan in self._pending:  # left over: Ctrl-C, or every server able to run it died
                if self.stop.is_set():
                    self.results[plan.job.id].state = "cancelled"
                else:
                    why = "; ".join(plan.attempts) or "the servers that could run it stopped answering"
                    self._fail(plan.job, f"no server left to run it ({why})")
            self._pending.clear()
        self.progress.close()
        return self.results

    def _wait_workers(self, timeout: float | None) -> None:
        # Counted here rather than Thread.join: a join interrupted by Ctrl-C can report a live thread as finished.
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._active and (deadline is None or time.monotonic() < deadline):
                self._cond.wait(0.2)

    def _take(self, server):
        with self._cond:
            while not self.stop.is_set():
                for plan in self._pending:
                    if server.name in plan.prompts:
                        self._pending.remove(plan)
                        self._inflight[plan.job.id] = (server, None)
                        return plan
                if not self._inflight:
                    return None
                self._cond.wait(0.5)  # a job in flight elsewhere may come back if its server dies
            return None

    def _worker(self, server) -> None:
        client_id = uuid.uuid4().hex
        try:
            while (plan := self._take(server)) is not None:
                try:
                    self._run(server, client_id, plan)
                except ServerDown as e:
                    self._server_died(server, plan, str(e))
                    return
                except Exception as e:  # noqa: BLE001 (a client bug or an odd answer: this job fails, the batch goes on)
                    self._fail(plan.job, f"{type(e).__name__}: {e}", server=server.name)
                finally:
                    with self._cond:
                        self._inflight.pop(plan.job.id, None)
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _server_died(self, server, plan: _Plan, error: str) -> None:
        job = plan.job
        with self._cond:
            self.live = [s for s in self.live if s is not server]
            for other in self._pending:
                other.prompts.pop(server.name, None)
            plan.prompts.pop(server.name, None)
            plan.attempts.append(f"{server.name} died: {error}")
            if self.stop.is_set():
                self.results[job.id].state = "cancelled"
                return
            if any(s.name in plan.prompts for s in self.live):
                self._pending.appendleft(plan)
                self.manifest.record(job.id, "requeued", server=server.name, error=error)
                self.progress.end(job.id, "requeued", f"{server.name} stopped answering; moved to another server")
                self.progress.log(f"server {server.name} is gone; its other jobs go to the remaining servers")
                return
        self._fail(job, "; ".join(plan.attempts), server=server.name)

    def _run(self, server, client_id: str, plan: _Plan) -> None:
        job, result = plan.job, self.results[plan.job.id]
        prompt, media = copy.deepcopy(plan.prompts[server.name][0]), plan.prompts[server.name][1]
        sampler = roles.find(prompt, "sampler")
        steps = None
        if sampler is not None and isinstance(prompt[sampler]["inputs"].get("steps"), int):
            inputs = prompt[sampler]["inputs"]
            denoise = inputs.get("denoise", 1.0)
            steps = max(1, round(inputs["steps"] * denoise)) if isinstance(denoise, (int, float)) else inputs["steps"]
        started = time.monotonic()
        self.progress.start(job.id, server.name, steps)
        try:
            for node_id, key, path in media:
                cache = (server.name, str(path))
                if cache not in self._uploads:
                    self._uploads[cache] = server.upload(path)
                prompt[node_id]["inputs"][key] = self._uploads[cache]
            ws = server.connect(client_id)
            try:
                prompt_id = server.queue(prompt, client_id)
                with self._cond:
                    self._inflight[job.id] = (server, prompt_id)
                self.manifest.record(job.id, "queued", server=server.name, prompt_id=prompt_id,
                                     fingerprint=plan.fingerprint, request=job.describe())

                def on_event(kind, data):
                    if kind == "executing" and data.get("node") is not None:
                        node = prompt.get(str(data["node"]), {})
                        self.progress.node(job.id, (node.get("_meta") or {}).get("title") or node.get("class_type", "?"),
                                           str(data["node"]) == sampler)
                    elif kind == "progress":
                        self.progress.step(job.id, int(data.get("value", 0)), int(data.get("max", 0)))

                entry = server.follow(ws, client_id, prompt_id, on_event, self.stop.is_set)
            finally:
                ws.close()
            if self.stop.is_set():
                server.cancel(prompt_id)
                result.state, result.server = "cancelled", server.name
                self.manifest.record(job.id, "cancelled", server=server.name, prompt_id=prompt_id)
                self.progress.end(job.id, "cancelled")
                return
            files = output_files(entry)
            if not files:
                raise JobFailed("finished without saving any file to the output folder (no SaveVideo?)")
            outputs = self._download(server, job, files)
        except JobFailed as e:
            result.server, result.seconds = server.name, time.monotonic() - started
            self._fail(job, str(e), server=server.name)
            return
        result.state, result.server, result.outputs = "done", server.name, outputs
        result.seconds = time.monotonic() - started
        self.manifest.record(job.id, "done", server=server.name, prompt_id=prompt_id, outputs=outputs,
                             seconds=round(result.seconds, 2), fingerprint=plan.fingerprint)
        self.progress.end(job.id, "done", f"{server.name}, {result.seconds:.1f} s -> {', '.join(outputs)}")

    def _download(self, server, job: Job, files: list) -> list[str]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        outputs, used = [], set()
        for ref in files:
            ext = os.path.splitext(ref["filename"])[1]
            name, k = f"{job.id}{ext}", 2
            while name in used:
                name, k = f"{job.id}-{k}{ext}", k + 1
            used.add(name)
            dest = self.out_dir / name
            server.download(ref, dest)
            outputs.append(os.path.relpath(dest, self.manifest.path.parent))
        return outputs
