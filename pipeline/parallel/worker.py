"""One DiT worker: joins the process group, builds its copy of the model, runs forwards on request.

Control messages (inputs, results, errors) travel over a ``multiprocessing.connection`` to the
client (``pool.ParallelDiT``); all tensor traffic between workers is torch.distributed
(NCCL on GPUs, gloo on CPUs). Messages from the client:
``("forward", call_id, inputs)`` and ``("stop",)``; answers: ``("ready", rank, info)``,
``("result", call_id, rows, output)`` from each group's first rank, ``("done", call_id)``
from the others, ``("error", call_id, text)``.
"""
from __future__ import annotations

import dataclasses
import os
import traceback
from datetime import timedelta
import pickle
from multiprocessing.connection import Client

import torch
import torch.distributed as dist

from .layout import divisors, group_rows, guidance_groups

_SHARED = ("context", "clip_fea", "y")  # batch 1 = shared by every row


def build_model(spec: dict, device: torch.device):
    """The worker's DiT from a build spec (plain data, so any process can rebuild it).

    ``{"kind": "load_dit", "base": path, "infinitetalk": path|None, "options": {...}}``: through the
    pack's loader (every format; safetensors are memory-mapped, so workers share the host pages);
    ``{"kind": "state_dict", "config": {...}, "weights": path}``: a DiTConfig and an official-key
    safetensors state dict; ``{"kind": "python", "file": path, "function": name, "kwargs": {...}}``:
    ``function(device, **kwargs)`` of a Python file (bench/ builds random 14B weights this way).
    ``"compile": True`` in any spec compiles the blocks (``InfiniteTalkDiT.compile_blocks``).
    """
    if spec["kind"] == "load_dit":
        from ..loading import load_dit
        model, report = load_dit(spec["base"], spec.get("infinitetalk"), device=device, **spec.get("options", {}))
        model.load_report = report
        return model
    if spec["kind"] == "state_dict":
        from safetensors.torch import load_file
        from ..dit import DiTConfig, InfiniteTalkDiT
        model = InfiniteTalkDiT(DiTConfig.from_dict(spec["config"]), attention=spec.get("attention", "sdpa"))
        model.load_state_dict(load_file(spec["weights"]), strict=True)
        return model.to(device).eval().requires_grad_(False)
    if spec["kind"] == "python":
        import importlib.util
        module_spec = importlib.util.spec_from_file_location("infinitetalk_worker_builder", spec["file"])
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return getattr(module, spec["function"])(device, **spec.get("kwargs", {}))
    raise ValueError(f"unknown model build spec {spec.get('kind')!r}")


def select_rows(inputs: dict, rows: list[int], device) -> dict:
    """The model arguments of batch rows ``rows`` on ``device``."""
    batch = inputs["x"].shape[0]
    index = torch.tensor(rows)
    out = {}
    for key, value in inputs.items():
        if value is None or isinstance(value, float):
            out[key] = value
        elif isinstance(value, (list, tuple)):
            out[key] = [value[r].to(device) for r in rows]
        elif key == "speaker_masks" or (key in _SHARED and value.shape[0] == 1) or (key == "t" and value.numel() == 1):
            out[key] = value.to(device)
        elif value.shape[0] != batch:
            raise ValueError(f"{key}: batch {value.shape[0]}, expected {batch} or 1")
        else:
            out[key] = value.index_select(0, index).to(device)
    return out


def _send(conn, message):
    # Plain pickle: multiprocessing's own pickler would pass tensors as shared-memory handles, which
    # needs a resource-sharing channel between unrelated processes.
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def main(rank: int, address: str) -> int:
    host, port = address.rsplit(":", 1)
    conn = Client((host, int(port)), authkey=bytes.fromhex(os.environ["INFINITETALK_WORKER_KEY"]))
    _send(conn, ("hello", rank))
    try:
        setup = pickle.loads(conn.recv_bytes())  # world, init_method, backend, device list, spec, timeout
        world, devices = setup["world"], setup["devices"]
        device = torch.device(devices[rank])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(setup["backend"], init_method=setup["init_method"], rank=rank, world_size=world,
                                timeout=timedelta(seconds=setup["timeout"]))
        # Every rank creates every subgroup, in the same order (a collective requirement).
        groups = {g: [dist.new_group(list(range(i * (world // g), (i + 1) * (world // g)))) for i in range(g)]
                  for g in divisors(world) if world // g > 1}
        model = build_model(setup["spec"], device)
        if setup["spec"].get("compile"):
            model.compile_blocks(device)
        report = getattr(model, "load_report", None)  # plain data: the host's classes have other module names
        report = None if report is None else dataclasses.asdict(report)
        _send(conn, ("ready", rank, {"device": str(device), "pid": os.getpid(), "report": report}))
    except Exception:
        _send(conn, ("error", None, traceback.format_exc()))
        return 1
    while True:
        message = pickle.loads(conn.recv_bytes())
        if message[0] == "stop":
            break
        _, call_id, inputs = message
        try:
            batch = inputs["x"].shape[0]
            n_groups = guidance_groups(batch, world)
            per_group = world // n_groups
            group = rank // per_group
            rows = group_rows(batch, n_groups)[group]
            model.sequence_group = groups[n_groups][group] if per_group > 1 else None
            with torch.inference_mode():
                out = model(**select_rows(inputs, rows, device))
            if rank % per_group == 0:
                _send(conn, ("result", call_id, rows, out.float().cpu()))
            else:
                _send(conn, ("done", call_id))
        except Exception:
            _send(conn, ("error", call_id, traceback.format_exc()))
    dist.destroy_process_group()
    return 0
