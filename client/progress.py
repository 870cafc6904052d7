"""What the batch shows while it runs: one line per running job (server, node, window and step, a bar, ETA)
under an overall bar (done / failed / running, ETA). On a terminal the block is redrawn in place; otherwise
(logs, CI) only state changes and every 25% of a job are printed."""
from __future__ import annotations

import sys
import threading
import time


def _bar(fraction: float, width: int = 20) -> str:
    n = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * n + "-" * (width - n) + "]"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class _Running:
    def __init__(self, server: str, steps: int | None):
        self.server, self.steps = server, steps
        self.started = time.monotonic()
        self.node, self.value, self.maximum, self.sampling_since = "", 0, 0, None
        self.sampler, self.reported = False, -1


class Progress:
    def __init__(self, total: int, stream=None, live_servers=lambda: 1):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total, self.live_servers = total, live_servers
        self.done = self.failed = self.skipped = 0
        self.durations: list[float] = []
        self.running: dict[str, _Running] = {}
        self.started = time.monotonic()
        self._lines = 0
        self._last_draw = 0.0
        self._lock = threading.Lock()

    # ---- events
    def log(self, text: str) -> None:
        with self._lock:
            self._clear()
            print(text, file=self.stream, flush=True)
            self._draw(force=True)

    def start(self, job: str, server: str, steps: int | None) -> None:
        with self._lock:
            self.running[job] = _Running(server, steps)
            self._draw(force=True)

    def node(self, job: str, title: str, is_sampler: bool) -> None:
        with self._lock:
            if job in self.running:
                r = self.running[job]
                r.node, r.sampler, r.value, r.maximum = title, is_sampler, 0, 0
                if is_sampler and r.sampling_since is None:
                    r.sampling_since = time.monotonic()
                self._draw()

    def step(self, job: str, value: int, maximum: int) -> None:
        with self._lock:
            r = self.running.get(job)
            if r is None:
                return
            r.value, r.maximum = value, maximum
            if not self.tty and r.sampler and maximum:
                quarter = int(4 * value / maximum)
                if quarter > r.reported:
                    r.reported = quarter
                    print(self._job_line(job, r), file=self.stream, flush=True)
            self._draw()

    def end(self, job: str, outcome: str, text: str = "") -> None:
        """``outcome``: done / failed / skipped / requeued / cancelled."""
        with self._lock:
            r = self.running.pop(job, None)
            if outcome == "done":
                self.done += 1
                if r:
                    self.durations.append(time.monotonic() - r.started)
            elif outcome == "failed":
                self.failed += 1
            elif outcome == "skipped":
                self.skipped += 1
            self._clear()
            print(f"{outcome:>9}  {job}" + (f"  {text}" if text else ""), file=self.stream, flush=True)
            self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            self._draw(force=True)
            self._lines = 0

    # ---- numbers
    @staticmethod
    def _fraction(r: _Running) -> float:
        return r.value / r.maximum if r.sampler and r.maximum else 0.0

    @staticmethod
    def _job_eta(r: _Running) -> float | None:
        if not (r.sampler and r.maximum and r.value and r.sampling_since):
            return None
        return (time.monotonic() - r.sampling_since) * (r.maximum - r.value) / r.value

    def overall(self) -> tuple[float, float | None]:
        """(fraction of the batch finished, seconds left estimate)."""
        finished = self.done + self.failed + self.skipped
        work = finished + sum(self._fraction(r) for r in self.running.values())
        fraction = work / self.total if self.total else 1.0
        if self.durations:
            per_job = sum(self.durations) / len(self.durations)
        else:
            guesses = [time.monotonic() - r.started + e for r in self.running.values()
                       if (e := self._job_eta(r)) is not None]
            per_job = sum(guesses) / len(guesses) if guesses else None
        left = self.total - work
        eta = None if per_job is None else left * per_job / max(1, self.live_servers())
        return fraction, eta

    # ---- drawing
    def _job_line(self, job: str, r: _Running) -> str:
        where = r.node or "queued"
        if r.maximum:
            if r.sampler and r.steps and r.maximum % r.steps == 0:
                windows = r.maximum // r.steps
                window = min(windows, max(0, r.value - 1) // r.steps + 1)  # value = steps completed
                step = r.value - (window - 1) * r.steps
                where += f": window {window}/{windows} step {step}/{r.steps}"
            else:
                where += f": {r.value}/{r.maximum}"
        bar = _bar(r.value / r.maximum if r.maximum else 0.0)
        return f"  {job} @ {r.server}  {bar} {where}  ETA {_clock(self._job_eta(r))}"

    def _overall_line(self) -> str:
        fraction, eta = self.overall()
        return (f"batch {_bar(fraction)} {100 * fraction:5.1f}%  done {self.done}, failed {self.failed}, "
                f"skipped {self.skipped}, running {len(self.running)} of {self.total}  ETA {_clock(eta)}")

    def _clear(self) -> None:
        if self.tty and self._lines:
            self.stream.write(f"\x1b[{self._lines}F\x1b[J")
            self._lines = 0

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        self._clear()
        lines = [self._overall_line()] + [self._job_line(j, r) for j, r in self.running.items()]
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._lines = len(lines)
