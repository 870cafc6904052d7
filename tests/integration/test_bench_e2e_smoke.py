"""``bench/e2e.py --smoke`` runs against the ComfyUI under test: its core Wan VAE file (comfy/ldm/wan/vae.py) still
loads the way the bench reads it, and the real window loop runs every job it times."""
import re
import subprocess
import sys
from pathlib import Path

E2E = Path(__file__).resolve().parents[2] / "bench" / "e2e.py"


def test_e2e_bench_smoke_run(comfyui):
    done = subprocess.run([sys.executable, str(E2E), "--smoke", "--comfyui", str(comfyui.path)], capture_output=True,
                          text=True, timeout=600, cwd=E2E.parents[1])
    assert done.returncode == 0, f"bench/e2e.py --smoke failed with ComfyUI {comfyui.version}:\n{done.stderr[-3000:]}"
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULTS")]
    assert results, done.stdout[-2000:]
    for job in ("clip", "fast", "fast_written", "crisp", "crisp_magcache"):
        assert f"'{job}'" in results[0], results[0]
    skipped = re.search(r"step cache: (\d+) of 48 model calls skipped", done.stdout)
    assert skipped and int(skipped.group(1)) > 0, done.stdout[-2000:]  # MagCache decides from the published ratios
