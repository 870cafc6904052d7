"""Every bench script still runs: its ``--smoke`` mode (tiny shapes on the CPU, the same code path as on the GPU)
exits cleanly and prints its figures. The GPU numbers themselves come from running the scripts on a GPU; this only
keeps the scripts from rotting between those runs. (``e2e.py`` reads ComfyUI's VAE: tests/integration.)"""
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

# script -> a piece of the line that carries its figures
SCRIPTS = {
    "dit_forward.py": "s/forward",
    "sampler_window.py": "speed-up of batching",
    "loading.py": "total wall time",
    "audio_embed.py": "threads",
    "face_mask.py": "frames/s",
    "vocal_separation.py": "per minute of audio",
    "parallel_forward.py": "s/forward",
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_smoke_run(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], capture_output=True, text=True,
                          timeout=600, cwd=BENCH.parent)
    assert done.returncode == 0, f"bench/{script} --smoke failed:\n{done.stderr[-3000:]}"
    assert SCRIPTS[script] in done.stdout, f"bench/{script} --smoke printed no figures:\n{done.stdout[-2000:]}"


def test_every_bench_script_with_a_smoke_mode_is_run_here():
    with_smoke = {p.name for p in BENCH.glob("*.py") if "--smoke" in p.read_text()}
    assert with_smoke - {"e2e.py"} == set(SCRIPTS)
