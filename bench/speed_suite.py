"""The speed paths of ``bench/dit_forward.py --suite``: every attention back-end, torch.compile, fp8
weights with fp8 matmul, block swap; time per forward and relative L2 error against the eager bf16
forward on the same inputs, plus one self-attention call per back-end.

Each measurement is wrapped: a path that fails prints its error and the suite goes on. The model's
Linears are converted to fp8 in place after the bf16 rows (the bf16 weights are freed), so the
order of the rows matters and is fixed here.
"""
from __future__ import annotations

import statistics
import time
import traceback

import torch

from dit_forward import forward_flops, make_inputs, sync, time_forward
import importlib

from pipeline.dit import attention_kernels

attn = importlib.import_module("pipeline.dit.attention")  # the package exports the function under this name
from pipeline.loading import block_swap

ROOFLINE_TFLOPS = 790.0


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())


class Rows:
    def __init__(self, device):
        self.device = device
        self.rows = []

    def add(self, res, label, seconds, err=None, extra=""):
        peak = ""
        if self.device.type == "cuda":
            peak = f"{torch.cuda.max_memory_allocated(self.device) / 2**30:.1f} GiB"
        self.rows.append((res, label, seconds, err, peak, extra))
        e = "" if err is None else f", rel. L2 error {err:.2e}"
        print(f"ROW [{res}] {label}: {seconds:.3f} s/forward{e}, peak {peak or '-'} {extra}", flush=True)

    def table(self):
        print("\n| resolution | path | s / forward | rel. L2 error vs reference | peak alloc | note |")
        print("|---|---|---|---|---|---|")
        for res, label, seconds, err, peak, extra in self.rows:
            e = "reference" if err is None else f"{err:.1e}"
            print(f"| {res} | {label} | {seconds:.3f} | {e} | {peak} | {extra} |")


def _reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed(model, inputs, device, runs):
    """(median seconds of ``runs`` forwards after a warm-up, warm-up seconds, the warm-up's output fp32)."""
    _reset(device)
    times, warm, out = time_forward(model, inputs, device, runs)
    return statistics.median(times), warm, out.float()


def attention_calls(device, dtype, tokens, heads, head_dim, runs=10):
    """One self-attention call per back-end at the video shape: ms and error on 1024 queries vs fp32."""
    gen = torch.Generator(device=device).manual_seed(3)
    q, k, v = (torch.randn(1, tokens, heads, head_dim, device=device, generator=gen, dtype=torch.float32)
               for _ in range(3))
    # A non-zero mean per channel (as RoPE'd, normed projections have) is what the fp8 smoothing handles.
    k = (k + 0.5 * torch.randn(1, 1, heads, head_dim, device=device, generator=gen)).to(dtype)
    v = (v + 1.0 * torch.randn(1, 1, heads, head_dim, device=device, generator=gen)).to(dtype)
    q = (2 * q).to(dtype)
    n = min(1024, tokens)
    scores = torch.einsum("bqhd,bkhd->bhqk", q[:, :n].float(), k.float()) / head_dim ** 0.5
    ref = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.float())
    del scores

    def naive_fp8(q_, k_, v_):
        fa3 = attention_kernels.fa3_module()
        f8 = torch.float8_e4m3fn
        return attention_kernels._unwrap(fa3.flash_attn_func(q_.to(f8), k_.to(f8), v_.to(f8))).to(dtype)

    paths = [(b, (lambda b=b: (lambda q_, k_, v_: attn.attention(q_, k_, v_, b)))()) for b in
             ("sdpa", "flash_attn", "fa3_fp8", "int8")]
    paths.append(("fa3 fp8, naive cast", naive_fp8))
    flops = 4 * tokens * tokens * head_dim * heads
    print(f"\nself-attention call, B=1, {tokens} tokens, {heads} heads x {head_dim}, {dtype}:")
    for name, fn in paths:
        try:
            if name not in ("sdpa", "fa3 fp8, naive cast") and attn._impl(name) is None:
                print(f"  {name}: not available ({attn._IMPLS.get(name + ':why')})")
                continue
            with torch.inference_mode():
                out = fn(q, k, v)
                fn(q, k, v)  # warm-up (the fp8 prep compiles on its first call)
                sync(device)
                start = time.perf_counter()
                for _ in range(runs):
                    fn(q, k, v)
                sync(device)
            ms = (time.perf_counter() - start) / runs * 1e3
            err = rel_err(out[:, :n], ref)
            print(f"  ATTN {name}: {ms:.2f} ms ({flops / ms / 1e9:.0f} TFLOP/s), rel. L2 error {err:.2e} "
                  f"vs fp32", flush=True)
        except Exception as exc:
            print(f"  {name}: FAILED {type(exc).__name__}: {str(exc)[:300]}")


def run_suite(model, cfg, sizes, frames, args, device, dtype):
    rows = Rows(device)
    runs = args.runs
    if device.type == "cuda":
        tokens = 21 * 30 * 52
        attention_calls(device, dtype, tokens, cfg.num_heads, cfg.head_dim)

    def step(label, fn):
        try:
            fn()
        except Exception as exc:
            print(f"FAILED {label}: {type(exc).__name__}: {str(exc)[:400]}")
            traceback.print_exc(limit=3)

    refs = {}
    for res, (width, height) in sizes.items():
        inputs, tokens, t_lat = make_inputs(cfg, width, height, frames, 1, device, dtype)
        roof = forward_flops(cfg, tokens, t_lat, 1) / ROOFLINE_TFLOPS / 1e12
        refs[res + ":inputs"], refs[res + ":roof"] = inputs, roof
        r = runs if res != "720p" else 1

        def eager(backend, reference=False, res=res, inputs=inputs, r=r, roof=roof):
            model.set_attention_backend(backend)
            sec, _, out = timed(model, inputs, device, r)
            if reference:
                refs[res] = out
            rows.add(res, f"eager, attention {model.attention_backend}", sec,
                     None if reference else rel_err(out, refs[res]), f"{roof / sec:.2f} of roofline")

        step(f"{res} sdpa", lambda: eager("sdpa", reference=True))
        for backend in ("flash_attn", "fa3_fp8", "int8") if res != "720p" else ("flash_attn", "fa3_fp8"):
            step(f"{res} {backend}", lambda b=backend: eager(b))

    def compiled_row(res, backend, label, note="", ref=None):
        model.set_attention_backend(backend)
        inputs, roof = refs[res + ":inputs"], refs[res + ":roof"]
        sec, warm, out = timed(model, inputs, device, runs if res != "720p" else 1)
        rows.add(res, label + f", attention {model.attention_backend}", sec, rel_err(out, ref if ref is not None
                 else refs[res]), f"{roof / sec:.2f} of roofline; warm-up incl. compile {warm:.0f} s {note}")

    step("compile", lambda: model.compile_blocks(device))
    for res in sizes:
        step(f"{res} compiled", lambda res=res: compiled_row(res, "flash_attn", "torch.compile"))
    uncompile(model)

    # fp8 weights (per-tensor e4m3 from the bf16 values): errors against the eager up-cast forward of
    # the same fp8 weights (the bf16 reference differs by the weight quantisation, printed on its row).
    from loading import block_linears, convert_fp8

    res = next(iter(sizes))
    inputs = refs[res + ":inputs"]
    fp8_ref = {}

    def to_fp8():
        convert_fp8(model, dtype, scaled_mm=False)
        _reset(device)
        if device.type == "cuda":
            print(f"weights after fp8 conversion: {torch.cuda.memory_allocated(device) / 2**30:.1f} GiB", flush=True)

    def set_mm(on):
        for _, _, lin in block_linears(model):
            lin.scaled_mm = on

    def fp8_eager(label, backend, mm, reference=False):
        set_mm(mm)
        model.set_attention_backend(backend)
        sec, warm, out = timed(model, inputs, device, runs)
        if reference:
            fp8_ref["out"] = out
        rows.add(res, label + f", attention {model.attention_backend}", sec,
                 rel_err(out, refs[res] if reference else fp8_ref["out"]),
                 "error vs bf16 weights (= weight quantisation)" if reference else "error vs fp8 up-cast")

    step("fp8 convert", to_fp8)
    step("fp8 ref", lambda: fp8_eager("fp8 weights up-cast, eager", "sdpa", False, True))
    step("fp8 mm fa3", lambda: fp8_eager("fp8 weights + fp8 matmul, eager", "flash_attn", True))
    step("fp8 mm fa3fp8", lambda: fp8_eager("fp8 weights + fp8 matmul, eager", "fa3_fp8", True))
    step("compile fp8", lambda: model.compile_blocks(device))
    step("fp8 compiled", lambda: compiled_row(res, "fa3_fp8", "fp8 weights + fp8 matmul, torch.compile",
                                             "error vs fp8 up-cast", fp8_ref.get("out")))
    n_swap = min(args.swap, len(model.blocks) // 2)
    if n_swap:
        def swapped():
            swap = block_swap.install(model, n_swap, device)
            try:
                compiled_row(res, "fa3_fp8", f"fp8 matmul, torch.compile, blocks_to_swap {n_swap}",
                             "error vs fp8 up-cast", fp8_ref.get("out"))
            finally:
                swap.remove()
        step("swap", swapped)
    rows.table()


def block_errors(cfg, device, size=(832, 480), frames=81):
    """One block at the real width and the 480p token count: each path in bf16 against the same block
    in fp32 (fp32 SDPA). Random weights make a 40-block forward chaotic (two exact bf16 attention
    kernels already differ by ~1e-2 there); one block shows what each path itself costs in accuracy."""
    import copy

    from dit_forward import build_model
    from loading import block_linears, convert_fp8
    from pipeline.dit.blocks import BlockInputs
    from pipeline.dit.rope import video_rope_table

    small = type(cfg)(**{**cfg.__dict__, "num_layers": 1})
    model = build_model(small, device, torch.bfloat16, "sdpa")
    block = model.blocks[0]
    ref_block = copy.deepcopy(block).float()
    grid = ((frames - 1) // 4 + 1, size[1] // 16, size[0] // 16)
    n = grid[0] * grid[1] * grid[2]
    gen = torch.Generator(device=device).manual_seed(2)
    x = torch.randn(1, n, cfg.dim, device=device, generator=gen)
    e0 = 0.1 * torch.randn(1, 6, cfg.dim, device=device, generator=gen)
    context = torch.randn(1, cfg.clip_tokens + cfg.text_len, cfg.dim, device=device, generator=gen)
    audio = torch.randn(1, grid[0], cfg.context_tokens, cfg.output_dim, device=device, generator=gen)
    rope = video_rope_table(grid, cfg.rope_pairs, device)

    def run(blk, dtype, backend):
        inputs = BlockInputs(rope=rope, context=context.to(dtype), audio=audio.to(dtype), speaker_masks=None,
                             lrope_rows=None, grid=grid, image_tokens=cfg.clip_tokens, backend=backend,
                             cross_backend=attn.exact_backend(backend))
        with torch.inference_mode():
            return blk(x.to(dtype), e0, inputs).float()

    ref = run(ref_block, torch.float32, "sdpa")
    del ref_block
    print(f"\none block, {n} tokens, bf16 paths vs the fp32 block (fp32 SDPA):")
    for backend in ("sdpa", "flash_attn", "fa3_fp8", "int8"):
        if backend != "sdpa" and attn._impl(backend) is None:
            continue
        print(f"  BLOCK attention {backend}: rel. L2 error {rel_err(run(block, torch.bfloat16, backend), ref):.2e}")
    base = run(block, torch.bfloat16, "sdpa")
    convert_fp8(model, torch.bfloat16, scaled_mm=False)
    upcast = run(block, torch.bfloat16, "sdpa")
    print(f"  BLOCK fp8 weights up-cast (sdpa): {rel_err(upcast, ref):.2e} vs fp32 bf16-weights block "
          f"(weight quantisation; {rel_err(upcast, base):.2e} vs the bf16 block)")
    for _, _, lin in block_linears(model):
        lin.scaled_mm = True
    for backend in ("flash_attn", "fa3_fp8"):
        out = run(block, torch.bfloat16, backend)
        print(f"  BLOCK fp8 weights + fp8 matmul, attention {backend}: {rel_err(out, upcast):.2e} vs the fp8 "
              f"up-cast block", flush=True)
    del model, block


def uncompile(model):
    for block in model.blocks:
        block.__dict__.pop("forward", None)
