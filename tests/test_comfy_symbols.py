"""The scan behind the ComfyUI compatibility test (tests/comfy_symbols.py) finds what the pack really uses."""
import textwrap

import comfy_symbols as cs


def test_scan_finds_host_calls_with_their_shape():
    uses = {(u.symbol, u.call) for u in cs.used_symbols()}
    assert ("comfy.model_management:throw_exception_if_processing_interrupted", (0, ())) in uses
    assert ("comfy.utils:ProgressBar", (1, ("node_id",))) in uses
    assert ("server:PromptServer.instance.send_progress_text", (2, ())) in uses
    assert all(":" in u.symbol and u.where for u in cs.used_symbols())


def test_scan_covers_every_import_style(tmp_path):
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "x.py").write_text(textwrap.dedent("""
        import comfy.utils
        import comfy.model_management as mm
        from comfy_api.latest import io as v3
        def f():
            from server import PromptServer
            comfy.utils.common_upscale(a, 1, 2, "bilinear", crop="center")
            mm.load_models_gpu([p], memory_required=3)
            v3.Combo.Input("x")
            PromptServer.instance.send_sync("e", {})
    """))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("import comfy.sd\ncomfy.sd.VAE()\n")  # tests are not the pack
    found = {(u.symbol, u.call) for u in cs.used_symbols(tmp_path)} - {(u.symbol, u.call) for u in cs.DUCK_TYPED}
    assert ("comfy.utils:common_upscale", (4, ("crop",))) in found
    assert ("comfy.model_management:load_models_gpu", (1, ("memory_required",))) in found
    assert ("comfy_api.latest:io.Combo.Input", (1, ())) in found
    assert ("server:PromptServer.instance.send_sync", (2, ())) in found
    assert not any(s.startswith("comfy.sd:") for s, _ in found)
