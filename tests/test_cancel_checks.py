"""Cancel is noticed by every long loop even though ComfyUI 0.38 throttles ProgressBar hook calls (its hook is what
used to check the interrupt on each progress update): host.Progress checks explicitly on every update, and the loops
without a progress bar call host.throw_if_interrupted themselves."""
import pytest
import torch

from infinitetalk_lipsync.nodes import host, mask


class Interrupted(Exception):
    pass


class _Host:
    """ComfyUI's model_management / utils as far as host.py uses them, with a throttled (silent) ProgressBar."""

    def __init__(self, cancel_after):
        self.checks, self.cancel_after = 0, cancel_after

    def throw_exception_if_processing_interrupted(self):
        self.checks += 1
        if self.checks > self.cancel_after:
            raise Interrupted

    class ProgressBar:  # 0.38: update_absolute calls the hook at most every 100 ms / 0.5 %; here never
        def __init__(self, total, node_id=None):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            pass


@pytest.fixture
def comfy_host(monkeypatch):
    def install(cancel_after):
        fake = _Host(cancel_after)
        monkeypatch.setattr(host, "IN_COMFY", True)
        monkeypatch.setattr(host, "_mm", fake)
        monkeypatch.setattr(host, "_cutils", fake)
        return fake
    return install


def test_progress_update_checks_cancel_without_the_hook(comfy_host):
    fake = comfy_host(cancel_after=3)
    bar = host.Progress(100)
    for _ in range(3):
        bar.update()
    with pytest.raises(Interrupted):
        bar.update()
    assert fake.checks == 4


def test_face_paste_stops_within_a_frame_of_cancel(comfy_host):
    """A per-frame loop reporting progress (Face Paste) stops at the first update after Cancel."""
    frames, size = 12, 32
    source = torch.rand(frames, size, size, 3)
    crops, info, _ = mask.InfiniteTalkFaceCrop().run(source, 16, 16, 0.2, 0, "face", 5, box="8,8,24,24")
    fake = comfy_host(cancel_after=2)
    with pytest.raises(Interrupted):
        mask.InfiniteTalkFacePaste().run(crops, info, source, 2, "none", 0, unique_id="7")
    assert fake.checks == 3


def test_face_crop_loop_checks_cancel(comfy_host):
    """Face Crop has no progress bar: its chunk loop checks Cancel itself."""
    frames, size = 40, 32
    fake = comfy_host(cancel_after=1)
    with pytest.raises(Interrupted):
        mask.InfiniteTalkFaceCrop().run(torch.rand(frames, size, size, 3), 16, 16, 0.2, 0, "face", 5, box="8,8,24,24")
    assert fake.checks == 2
