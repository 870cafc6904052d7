"""The mask nodes inside a real ComfyUI: LoadVideo -> face mask -> crop -> (sampler stand-in) -> paste ->
SaveVideo, the compositor, and SAM2 (a real-size SAM2.1 tiny file with random weights) from models/sam2."""
import subprocess

import numpy as np
import pytest
import torch

from infinitetalk_lipsync.pipeline.mask.face_mask import face_masks
from infinitetalk_lipsync.pipeline.mask.regions import dilate

skimage_data = pytest.importorskip("skimage.data")
av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")

BOX = "88,34,136,82"  # the astronaut's face on the half-size (256x256) photo
FEATHER, DILATION = 6, 4


def _frames(count=6):
    image = skimage_data.astronaut()[::2, ::2]
    return np.stack([np.roll(image, 2 * t, axis=1) for t in range(count)])


def _write_video(path, frames):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _saved_images(server, entry, node):
    files = entry["outputs"][node]["images"]
    return np.stack([np.array(Image.open(server.output_dir / f["subfolder"] / f["filename"]).convert("RGB"))
                     for f in files])


def test_video_face_crop_paste_in_comfyui(comfy_server):
    _write_video(comfy_server.input_dir / "astronaut_clip.mp4", _frames())
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "astronaut_clip.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "InfiniteTalkFaceMask",
              "inputs": {"images": ["2", 0], "region": "lower_face", "dilation": DILATION, "smoothing": 1,
                         "detect_every": 5, "box": BOX}},
        "4": {"class_type": "InfiniteTalkFaceCrop",
              "inputs": {"images": ["2", 0], "width": 128, "height": 128, "padding": 0.6, "window": 0,
                         "region": "lower_face", "detect_every": 5, "mask": ["3", 0]}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},  # stands in for the sampler
        "6": {"class_type": "InfiniteTalkFacePaste",
              "inputs": {"images": ["5", 0], "crop_info": ["4", 1], "source_images": ["2", 0], "mask": ["3", 0],
                         "feather": FEATHER, "colour_match": "lab", "erode": 0}},
        "7": {"class_type": "CreateVideo", "inputs": {"images": ["6", 0], "fps": 25.0}},
        "8": {"class_type": "SaveVideo",
              "inputs": {"video": ["7", 0], "filename_prefix": "mask/pasted", "format": "auto", "codec": "auto"}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "mask/pasted"}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "mask/source"}},
        "11": {"class_type": "InfiniteTalkComposite",
               "inputs": {"images": ["5", 0], "source_images": ["4", 0], "mask": ["4", 2], "feather": 3,
                          "colour_match": "none", "erode": 0}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "mask/composite"}},
    }
    entry = comfy_server.run(prompt, timeout=240)
    assert "ellipse" in entry["outputs"]["3"]["text"][0]
    pasted, source = _saved_images(comfy_server, entry, "9"), _saved_images(comfy_server, entry, "10")
    assert pasted.shape == source.shape == (6, 256, 256, 3)
    box = tuple(float(v) for v in BOX.split(","))
    mask, _, _ = face_masks(torch.zeros(6, 256, 256, 3), box=box, region="lower_face", dilation=DILATION, smoothing=1)
    outside = (dilate(mask, FEATHER + 1) == 0).numpy()
    assert np.array_equal(pasted[outside], source[outside])  # bit-identical outside the feathered mask
    assert np.abs(pasted.astype(int) - source.astype(int))[~outside].mean() > 10  # the face was replaced
    videos = [f for f in (comfy_server.output_dir / "mask").iterdir() if f.suffix == ".mp4"]
    with av.open(str(videos[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6
    assert _saved_images(comfy_server, entry, "12").shape == (6, 128, 128, 3)


def test_sam2_face_mask_in_comfyui(comfy_server):
    has_sam2 = subprocess.run([comfy_server.python, "-c", "from transformers import Sam2VideoModel"],
                              capture_output=True).returncode == 0
    if not has_sam2:
        pytest.skip("ComfyUI's python has no transformers>=4.56 (Sam2VideoModel)")
    from safetensors.torch import save_file
    from sam2_tiny import to_meta_keys
    from transformers import Sam2VideoConfig, Sam2VideoModel
    torch.manual_seed(0)
    sd = to_meta_keys(Sam2VideoModel(Sam2VideoConfig()).state_dict())  # real SAM2.1 tiny layout, random
    folder = comfy_server.models_dir / "sam2"
    folder.mkdir(exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(folder / "sam2.1_hiera_tiny-fp16.safetensors"))
    Image.fromarray(_frames(1)[0]).save(comfy_server.input_dir / "astronaut.png")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "2": {"class_type": "InfiniteTalkSAM2Loader",
              "inputs": {"model_name": "sam2.1_hiera_tiny-fp16.safetensors", "precision": "fp32"}},
        "3": {"class_type": "InfiniteTalkFaceMask",
              "inputs": {"images": ["1", 0], "sam2": ["2", 0], "region": "face", "dilation": 0, "smoothing": 1,
                         "detect_every": 5, "box": BOX, "points": "112,60"}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "mask/sam2"}},
    }
    entry = comfy_server.run(prompt, timeout=240)
    assert "SAM2 tiny face mask" in entry["outputs"]["3"]["text"][0]
    mask = _saved_images(comfy_server, entry, "5")
    assert mask.shape == (1, 256, 256, 3) and mask.max() == 255  # SAM2's mask or, if lost, the box ellipse
