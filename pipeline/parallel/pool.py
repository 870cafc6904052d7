"""``ParallelDiT``: the DiT as the sampler sees it, its forwards run by one worker process per device.

The host process (ComfyUI) never joins a collective: it sends each forward's inputs to every
worker and waits for the rows, checking that every worker is alive. So a worker that dies fails
the call with a clear error (and the pool is shut down) instead of hanging ComfyUI; Cancel acts
between forwards. Workers start once and stay up until ``close()`` (or garbage collection).
"""
from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Listener, wait
from pathlib import Path

import torch
import torch.nn as nn

from .layout import check_world

_PACK_ROOT = Path(__file__).resolve().parents[2]
_WORKER_MAIN = Path(__file__).resolve().with_name("worker_main.py")


class WorkerError(RuntimeError):
    """A worker process failed (its message carries the worker's error)."""

    __module__ = "infinitetalk"  # ComfyUI shows "infinitetalk.WorkerError", not the install path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(conn, message):
    # Plain pickle both ways (see worker._send).
    conn.send_bytes(message if isinstance(message, bytes) else pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _recv(conn):
    return pickle.loads(conn.recv_bytes())


def _shutdown(processes, connections):
    for conn in connections:
        try:
            _send(conn, ("stop",))
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    for conn in connections:
        conn.close()


class ParallelDiT(nn.Module):
    """Forward like ``InfiniteTalkDiT`` (same arguments, fp32 [B,16,T,h,w] out), computed by
    ``len(devices)`` workers: guidance rows spread over groups of ranks, each group running
    Ulysses sequence parallelism (``layout``, ``sequence``).

    spec: how each worker builds its model (``worker.build_model``); config: the model's DiTConfig;
    devices: e.g. ["cuda:0", "cuda:1"] (NCCL) or ["cpu", "cpu"] (gloo, tests).
    """

    wants_batched_branches = True  # guidance parallelism needs the branches in one call

    def __init__(self, spec: dict, config, devices: list[str], timeout: float = 600.0, start_timeout: float = 600.0):
        super().__init__()
        why = check_world(len(devices), config.num_heads)
        if why:
            raise ValueError(why)
        self.config, self.devices, self.timeout = config, list(devices), timeout
        self.device = torch.device(devices[0])
        self._call = 0
        self.interrupt = None  # a callable that raises to cancel (the node sets the host's); checked while waiting
        self._processes, self._connections = [], []
        self._start(spec, start_timeout)
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._connections)

    # -- lifecycle ------------------------------------------------------------------------------
    def _start(self, spec, start_timeout):
        key = os.urandom(16)
        listener = Listener(("127.0.0.1", 0), authkey=key)
        address = "%s:%d" % listener.address
        env = dict(os.environ, INFINITETALK_WORKER_KEY=key.hex())
        world = len(self.devices)
        for rank in range(world):
            self._processes.append(subprocess.Popen([sys.executable, str(_WORKER_MAIN), str(_PACK_ROOT), str(rank),
                                                     address], env=env, stdin=subprocess.DEVNULL))
        accepted: list = []
        thread = threading.Thread(target=lambda: [accepted.append(listener.accept()) for _ in range(world)],
                                  daemon=True)
        thread.start()
        deadline = time.monotonic() + start_timeout
        while thread.is_alive() and time.monotonic() < deadline and self._all_alive():
            thread.join(0.2)
        listener.close()
        ranks = {}
        for conn in accepted:  # each worker says its rank first
            if conn.poll(start_timeout):
                ranks[_recv(conn)[1]] = conn
        self._connections.extend(ranks[r] for r in sorted(ranks))
        if len(ranks) < world:
            self.close()
            raise WorkerError(self._death_message("while starting") or
                              f"only {len(accepted)} of {world} DiT workers connected within {start_timeout:.0f} s")
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        setup = dict(world=world, devices=self.devices, backend=backend, spec=spec, timeout=self.timeout,
                     init_method=f"tcp://127.0.0.1:{_free_port()}")
        for conn in self._connections:
            _send(conn, setup)
        ready = self._collect(None, lambda message: message[0] == "ready", start_timeout, "while loading the model")
        self.worker_info = sorted((message[1], message[2]) for message in ready)

    def _all_alive(self) -> bool:
        return all(p.poll() is None for p in self._processes)

    def _death_message(self, when: str) -> str | None:
        for rank, process in enumerate(self._processes):
            if process.poll() is not None:
                return (f"DiT worker {rank} ({self.devices[rank]}) exited with code {process.returncode} {when}; "
                        f"the multi-GPU pool was shut down. Check that device's memory and drivers, or set the "
                        f"loader's gpus to 1.")
        return None

    def close(self):
        """Stop the workers (idempotent)."""
        _shutdown(self._processes, self._connections)
        self._connections.clear()

    # -- forward --------------------------------------------------------------------------------
    def _collect(self, call_id, is_final, timeout, when):
        """Wait for one final message per worker; raise WorkerError on an error or a dead worker."""
        pending = dict(enumerate(self._connections))
        results = []
        deadline = time.monotonic() + timeout
        while pending:
            ready = wait(list(pending.values()), timeout=0.5)
            for conn in ready:
                rank = next(r for r, c in pending.items() if c is conn)
                try:
                    message = _recv(conn)
                except (EOFError, OSError):
                    continue  # the process check below names the dead worker
                if message[0] == "error":
                    self.close()
                    raise WorkerError(f"DiT worker {rank} ({self.devices[rank]}) failed {when}:\n{message[2]}")
                if (call_id is None or message[1] == call_id) and is_final(message):
                    results.append(message)
                    del pending[rank]
            if call_id is not None and self.interrupt is not None:
                self.interrupt()  # the workers finish this forward; its late answers are skipped by call id
            dead = self._death_message(when)
            if dead:
                self.close()
                raise WorkerError(dead)
            if time.monotonic() > deadline:
                self.close()
                raise WorkerError(f"DiT workers did not answer within {timeout:.0f} s {when}; pool shut down")
        return results

    def forward(self, x, t, context, clip_fea, y, audio, speaker_masks=None, audio_scale=1.0):
        if not self._connections:
            raise WorkerError("the multi-GPU DiT pool was shut down; reload the model (InfiniteTalk Model Loader)")
        self._call += 1
        cpu = lambda v: None if v is None else ([a.cpu() for a in v] if isinstance(v, (list, tuple)) else v.cpu())
        inputs = dict(x=cpu(x), t=cpu(torch.as_tensor(t)), context=cpu(context), clip_fea=cpu(clip_fea), y=cpu(y),
                      audio=cpu(audio), speaker_masks=cpu(speaker_masks), audio_scale=float(audio_scale))
        payload = pickle.dumps(("forward", self._call, inputs), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            for conn in self._connections:
                _send(conn, payload)
        except OSError:
            dead = self._death_message("before a forward") or "a DiT worker closed its connection"
            self.close()
            raise WorkerError(dead) from None
        results = self._collect(self._call, lambda m: m[0] in ("result", "done"), self.timeout, "during a forward")
        out = None
        for message in results:
            if message[0] == "result":
                _, _, rows, tensor = message
                if out is None:
                    out = tensor.new_empty((x.shape[0], *tensor.shape[1:]))
                out[rows] = tensor
        return out.to(x.device)


def load_parallel_dit(base_path, infinitetalk_path, devices: list[str], compile: bool = False,
                      **options) -> ParallelDiT:
    """``load_dit`` on every device of ``devices`` (one worker each); options as ``load_dit``'s.

    The host reads only the files' headers; each worker loads (memory-maps) the weights itself.
    ``.load_report`` is rank 0's LoadReport."""
    from ..loading.load import LoadReport, dit_config

    config = dit_config(base_path, infinitetalk_path, options.get("num_heads"))
    spec = {"kind": "load_dit", "base": str(base_path),
            "infinitetalk": None if infinitetalk_path is None else str(infinitetalk_path), "options": options,
            "compile": compile}
    pool = ParallelDiT(spec, config, devices)
    pool.load_report = LoadReport(**pool.worker_info[0][1]["report"])
    return pool
