"""The streamed source on the real ComfyUI's own VideoFromFile: frame for frame what its get_components() gives
(pixel rule learnt from the class), and for rotated phone clips those frames turned upright (0.3.64 and 0.8.0 give
the stored, sideways frames; later releases turn them as the pack does)."""
import json
import subprocess
from pathlib import Path

PACK = Path(__file__).resolve().parents[2]
CHECK = Path(__file__).with_name("video_source_check.py")


def test_streamed_frames_equal_core_get_components(comfyui, tmp_path):
    done = subprocess.run([comfyui.python, str(CHECK), str(PACK), str(tmp_path)], capture_output=True, text=True,
                          cwd=comfyui.path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    plain = result["0"]
    assert plain["kind"] == "file" and plain["equal"], plain
    for rotation in ("90", "180", "270"):
        r = result[rotation]
        assert r["kind"] == "file" and r["rule"] == plain["rule"]
        # the pack is upright; a release whose core is not gives the same pixels a quarter turn off
        assert r["equal"] or r["equal_to_core_turned_upright"], r
        if rotation != "180":
            assert r["streamed_shape"][1:3] == [40, 24], r
    print(f"\nComfyUI {comfyui.version}: pixel rule {plain['rule']}; rotated: " +
          ", ".join(f"{k}: {'as core' if v['equal'] else 'core sideways'}" for k, v in result.items() if k != "0"))
