"""A tiny random SAM2 for CPU tests, saved in Meta's key layout (as Meta's .pt and Kijai's
.safetensors hold it), plus the real SAM2.1 key/shape lists (tests/data, dumped from Meta's code)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

SHAPES = Path(__file__).resolve().parent / "data" / "sam2.1_state_dict_shapes.json"
TINY_SIZE = 128
# Trunk width 16, stages (1,1,2,1); everything else shrunk to 128 channels (memory 64, fixed by
# transformers), at a 128-pixel input so a frame takes milliseconds on a CPU.
TINY_TRUNK = {
    (16, (1, 1, 2, 1)): dict(
        name="test-tiny", num_attention_heads_per_stage=[1, 1, 1, 1], global_attention_blocks=[3], pos_embed=[4, 4],
        window_size_per_stage=[8, 4, 4, 4], image_size=TINY_SIZE,
        vision=dict(fpn_hidden_size=128, backbone_feature_sizes=[[TINY_SIZE // s] * 2 for s in (4, 8, 16)]),
        model=dict(image_size=TINY_SIZE, memory_attention_rope_feat_sizes=[TINY_SIZE // 16] * 2, memory_attention_hidden_size=128,
                   memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=128,
                   memory_encoder_hidden_size=128, mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128,
                   memory_fuser_intermediate_dim=128, memory_fuser_num_layers=1,
                   prompt_encoder_config=dict(hidden_size=128, image_size=TINY_SIZE),
                   mask_decoder_config=dict(hidden_size=128, mlp_dim=128, iou_head_hidden_dim=128))),
}


def real_shapes() -> dict[str, dict[str, list[int]]]:
    return json.loads(SHAPES.read_text())


def tiny_hf_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of the tiny model in transformers' layout."""
    from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig
    spec = next(iter(TINY_TRUNK.values()))
    backbone = Sam2HieraDetConfig(hidden_size=16, embed_dim_per_stage=[16, 32, 64, 128], blocks_per_stage=[1, 1, 2, 1],
                                  num_attention_heads_per_stage=spec["num_attention_heads_per_stage"],
                                  global_attention_blocks=spec["global_attention_blocks"],
                                  window_size_per_stage=spec["window_size_per_stage"],
                                  image_size=[TINY_SIZE] * 2, window_positional_embedding_background_size=[4, 4])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16], **spec["vision"])
    torch.manual_seed(seed)
    model = Sam2VideoModel(Sam2VideoConfig(vision_config=vision, **spec["model"]))
    sd = model.state_dict()
    # Random but not degenerate: the zero-initialised embeddings get values too.
    return {k: (v + 0.02 * torch.randn_like(v)) if v.is_floating_point() else v for k, v in sd.items()}


_INVERSE = [  # transformers -> Meta, applied in order (the test checks it against the real key lists)
    (r"^vision_encoder\.backbone\.", "image_encoder.trunk."),
    (r"^vision_encoder\.neck\.convs\.(\d+)\.", r"image_encoder.neck.convs.\1.conv."),
    (r"^prompt_encoder\.", "sam_prompt_encoder."), (r"^mask_decoder\.", "sam_mask_decoder."),
    (r"^memory_temporal_positional_encoding$", "maskmem_tpos_enc"), (r"^no_memory_embedding$", "no_mem_embed"),
    (r"^no_memory_positional_encoding$", "no_mem_pos_enc"), (r"^no_object_pointer$", "no_obj_ptr"),
    (r"^occlusion_spatial_embedding_parameter$", "no_obj_embed_spatial"),
    (r"^object_pointer_proj\.", "obj_ptr_proj."),
    (r"^temporal_positional_encoding_projection_layer\.", "obj_ptr_tpos_proj."),
    (r"\.patch_embed\.projection\.", ".patch_embed.proj."), (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"\.upscale_conv1\.", ".output_upscaling.0."), (r"\.upscale_layer_norm\.", ".output_upscaling.1."),
    (r"\.upscale_conv2\.", ".output_upscaling.3."), (r"\.mask_embed\.conv1\.", ".mask_downscaling.0."),
    (r"\.mask_embed\.layer_norm1\.", ".mask_downscaling.1."), (r"\.mask_embed\.conv2\.", ".mask_downscaling.3."),
    (r"\.mask_embed\.layer_norm2\.", ".mask_downscaling.4."), (r"\.mask_embed\.conv3\.", ".mask_downscaling.6."),
    (r"^memory_encoder\.projection\.", "memory_encoder.out_proj."),
    (r"^memory_encoder\.feature_projection\.", "memory_encoder.pix_feat_proj."),
    (r"^memory_encoder\.memory_fuser\.", "memory_encoder.fuser."), (r"\.depthwise_conv\.", ".dwconv."),
    (r"\.pointwise_conv(\d)\.", r".pwconv\1."), (r"\.scale$", ".gamma"), (r"\.o_proj\.", ".out_proj."),
    (r"\.layer_norm(\d?)\.", r".norm\1."),
    (r"^sam_prompt_encoder\.shared_embedding\.positional_embedding$",
     "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
]


def to_meta_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers layout -> Meta layout (the inverse of the pack's conversion, written independently)."""
    out = {}
    mlp = re.compile(r"^(.*(?:\.mlp|_head|hypernetworks_mlps\.\d+|obj_ptr_proj))\.(proj_in|proj_out|layers\.(\d+))\.(.+)$")
    sizes: dict[str, int] = {}
    for key in sd:
        k = key
        for a, b in _INVERSE:
            k = re.sub(a, b, k)
        m = mlp.match(k)
        if m and m.group(3) is not None:
            sizes[m.group(1)] = max(sizes.get(m.group(1), 2), int(m.group(3)) + 3)
    downsample = max(int(m.group(1)) for m in map(re.compile(r".*mask_downsampler\.layers\.(\d+)\.").match, sd) if m)
    for key, value in sd.items():
        if key == "shared_image_embedding.positional_embedding":
            continue
        if key == "prompt_encoder.point_embed.weight":
            for i in range(value.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = value[i:i + 1].clone()
            continue
        k = key
        for a, b in _INVERSE:
            k = re.sub(a, b, k)
        m = mlp.match(k)
        if m:
            n = sizes.get(m.group(1), 2)
            i = 0 if m.group(2) == "proj_in" else n - 1 if m.group(2) == "proj_out" else int(m.group(3)) + 1
            k = f"{m.group(1)}.layers.{i}.{m.group(4)}"
        m = re.match(r"^memory_encoder\.mask_downsampler\.(layers\.(\d+)\.(conv|norm)|final_conv)\.(.+)$", k)
        if m:
            i = 3 * (downsample + 1) if m.group(1) == "final_conv" else 3 * int(m.group(2)) + (m.group(3) == "norm")
            k = f"memory_encoder.mask_downsampler.encoder.{i}.{m.group(4)}"
        out[k] = value
    return out
