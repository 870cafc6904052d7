"""Face boxes: OpenCV Haar on real photos shipped in wheels, user masks/boxes, tracking, errors."""
import sys

import pytest
import torch

from infinitetalk_lipsync.pipeline.mask import face_box
from infinitetalk_lipsync.pipeline.mask.face_box import (NoFaceFoundError, OpenCVMissingError, box_iou,
                                                         boxes_from_mask, parse_box, parse_points, track_faces)

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("cv2")

# The astronaut's face (brows to mouth, ear to ear) marked by hand on skimage's 512x512 photo.
ASTRONAUT_FACE = torch.tensor([[176.0, 66.0, 272.0, 164.0]])


def _image(name):
    x = torch.from_numpy(getattr(skimage_data, name)()).float() / 255
    return x[..., None].expand(-1, -1, 3) if x.dim() == 2 else x


def test_astronaut_face_found():
    boxes = face_box.detect_faces(_image("astronaut"))
    assert boxes.shape == (1, 4)
    assert float(box_iou(boxes, ASTRONAUT_FACE)) >= 0.7


def test_tracking_follows_a_moving_face_smoothly():
    image = _image("astronaut")
    shifts = list(range(0, 40, 4))  # the face moves 4 px right per frame
    frames = torch.stack([torch.roll(image, s, dims=1) for s in shifts])
    boxes = track_faces(frames, detect_every=3, smooth=3)
    truth = ASTRONAUT_FACE + torch.tensor([[1.0, 0, 1.0, 0]]) * torch.tensor(shifts, dtype=torch.float32)[:, None]
    ious = torch.diag(box_iou(boxes, truth))
    assert bool((ious >= 0.7).all()), ious
    steps = (boxes[1:, 0] - boxes[:-1, 0]).abs()
    assert float(steps.max()) < 12  # no jumps


def test_real_video_face(tmp_path):
    from golden import media
    av = pytest.importorskip("av")
    path = media("ref_video.mp4")
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(30), container.decode(video=0))]
    video = torch.from_numpy(__import__("numpy").stack(frames)).float() / 255
    boxes = track_faces(video, detect_every=10)
    w = boxes[:, 2] - boxes[:, 0]
    # A frontal talking head filling about half the 458-pixel frame, centred.
    assert bool(((w > 150) & (w < 300)).all())
    centre = (boxes[:, 0] + boxes[:, 2]) / 2
    assert bool(((centre > 150) & (centre < 300)).all())


def test_no_face_is_a_clear_error():
    frames = _image("coffee")[None].repeat(2, 1, 1, 1)
    with pytest.raises(NoFaceFoundError, match="No face was found.*MASK"):
        track_faces(frames)


def test_missing_opencv_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(OpenCVMissingError, match=r'pip install "opencv-python-headless<5"'):
        face_box.detect_faces(torch.zeros(32, 32, 3))


def test_boxes_from_mask_scaled_and_filled():
    mask = torch.zeros(3, 50, 100)
    mask[0, 10:20, 30:60] = 1
    mask[2, 20:30, 40:70] = 1  # frame 1 empty -> nearest frame's box
    boxes = boxes_from_mask(mask, 4, 100, 200)  # video twice the mask's size, one frame more
    assert boxes[0].tolist() == [60.0, 20.0, 120.0, 40.0]
    assert boxes[1].tolist() == boxes[0].tolist()
    assert boxes[3].tolist() == boxes[2].tolist() == [80.0, 40.0, 140.0, 60.0]
    with pytest.raises(NoFaceFoundError, match="mask is empty"):
        boxes_from_mask(torch.zeros(1, 8, 8), 2, 8, 8)


def test_parse_box_and_points():
    assert parse_box("") is None
    assert parse_box("1, 2, 30, 40") == (1.0, 2.0, 30.0, 40.0)
    with pytest.raises(ValueError, match="x0,y0,x1,y1"):
        parse_box("10,10,5,20")
    assert parse_points("5,6; -7,8") == [(5.0, 6.0, 1), (7.0, 8.0, 0)]
    with pytest.raises(ValueError, match="'x,y'"):
        parse_points("5")
