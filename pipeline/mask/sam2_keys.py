"""SAM2 checkpoints as users have them (Meta ``.pt``, Kijai ``.safetensors``) -> the parameter names
and configuration of ``transformers.Sam2VideoModel``.

Meta's and Kijai's files hold the same flat state dict (Kijai's is Meta's saved as safetensors).
``to_transformers_keys`` renames it; ``hf_config_kwargs`` reads the model size from the tensor
shapes. Nothing here imports transformers.
"""
from __future__ import annotations

import re

import torch

# Tensor names that identify a checkpoint layout.
META_MARKER = "image_encoder.trunk.patch_embed.proj.weight"
HF_MARKER = "vision_encoder.backbone.patch_embed.projection.weight"

# Renames applied to every key, in order (regex, replacement). Meta's names on the left.
_RENAMES = [
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^obj_ptr_proj\.", "object_pointer_proj."),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"\.norm(\d?)\.", r".layer_norm\1."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"\.out_proj\.", ".o_proj."),
    (r"^memory_encoder\.o_proj\.", "memory_encoder.projection."),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.fuser\.", "memory_encoder.memory_fuser."),
    (r"\.dwconv\.", ".depthwise_conv."),
    (r"\.pwconv(\d)\.", r".pointwise_conv\1."),
    (r"\.gamma$", ".scale"),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
     "prompt_encoder.shared_embedding.positional_embedding"),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
]
_RENAMES = [(re.compile(a), b) for a, b in _RENAMES]

# Meta's MLPs are ModuleLists ``<mlp>.layers.i``; transformers names the first and last layer
# proj_in / proj_out and keeps the middle ones as layers.(i-1).
_MLP = re.compile(r"^(.*(?:\.mlp|_head|hypernetworks_mlps\.\d+|object_pointer_proj))\.layers\.(\d+)\.(.+)$")
# The memory encoder's mask downsampler is a Sequential of (conv, norm, act) triples + a final conv.
_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.+)$")
_POINT_EMBED = re.compile(r"^prompt_encoder\.point_embeddings\.(\d+)\.weight$")


def to_transformers_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta/Kijai SAM2 state dict -> ``Sam2VideoModel`` state dict (tensors shared, not copied).

    A checkpoint already in transformers' layout is returned unchanged."""
    if HF_MARKER in state_dict:
        return dict(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        for pattern, repl in _RENAMES:
            key = pattern.sub(repl, key)
        renamed[key] = value
    mlp_sizes: dict[str, int] = {}
    for key in renamed:
        m = _MLP.match(key)
        if m:
            mlp_sizes[m.group(1)] = max(mlp_sizes.get(m.group(1), 0), int(m.group(2)) + 1)
    last_downsample = max((int(m.group(1)) for m in map(_DOWNSAMPLER.match, renamed) if m), default=-1)
    out, points = {}, {}
    for key, value in renamed.items():
        m = _MLP.match(key)
        if m:
            prefix, i, rest = m.group(1), int(m.group(2)), m.group(3)
            name = "proj_in" if i == 0 else "proj_out" if i == mlp_sizes[prefix] - 1 else f"layers.{i - 1}"
            key = f"{prefix}.{name}.{rest}"
        m = _DOWNSAMPLER.match(key)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            name = "final_conv" if i == last_downsample else f"layers.{i // 3}.{'conv' if i % 3 == 0 else 'layer_norm'}"
            key = f"memory_encoder.mask_downsampler.{name}.{rest}"
        m = _POINT_EMBED.match(key)
        if m:
            points[int(m.group(1))] = value
            continue
        out[key] = value
    if points:
        out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in sorted(points)], dim=0)
    shared = out.get("prompt_encoder.shared_embedding.positional_embedding")
    if shared is not None:  # transformers keeps a second reference to the same random-feature matrix
        out["shared_image_embedding.positional_embedding"] = shared
    return out


# Hiera trunk hyper-parameters that the shapes do not reveal (heads, windows, global-attention
# blocks), per (trunk width, blocks per stage). Values from Meta's sam2.1_hiera_{t,s,b+,l}.yaml.
# "pos_embed" (the background position-embedding grid) is read from the file when loading; it is
# listed only to build a random-weight model of a size (benchmarks). An entry may also carry
# "image_size", "vision" and "model" overrides (the tests' miniature model uses them).
KNOWN_TRUNKS = {
    (96, (1, 2, 7, 2)): dict(name="tiny", num_attention_heads_per_stage=[1, 2, 4, 8], pos_embed=[7, 7],
                             global_attention_blocks=[5, 7, 9], window_size_per_stage=[8, 4, 14, 7]),
    (96, (1, 2, 11, 2)): dict(name="small", num_attention_heads_per_stage=[1, 2, 4, 8], pos_embed=[7, 7],
                              global_attention_blocks=[7, 10, 13], window_size_per_stage=[8, 4, 14, 7]),
    (112, (2, 3, 16, 3)): dict(name="base_plus", num_attention_heads_per_stage=[2, 4, 8, 16], pos_embed=[14, 14],
                               global_attention_blocks=[12, 16, 20], window_size_per_stage=[8, 4, 14, 7]),
    (144, (2, 6, 36, 4)): dict(name="large", num_attention_heads_per_stage=[2, 4, 8, 16], pos_embed=[7, 7],
                               global_attention_blocks=[23, 33, 43], window_size_per_stage=[8, 4, 16, 8]),
}


def size_layout(name: str) -> dict[str, torch.Tensor]:
    """A stand-in transformers-layout dict (meta tensors of the right shapes for ``hf_config_kwargs``)
    of the known size ``name``, to build that architecture without a checkpoint."""
    for (width, per_stage), spec in KNOWN_TRUNKS.items():
        if spec["name"] == name:
            break
    else:
        raise ValueError(f"unknown SAM2 size '{name}'; known: {', '.join(v['name'] for v in KNOWN_TRUNKS.values())}.")
    meta = torch.device("meta")
    sd = {HF_MARKER: torch.empty(width, 3, 7, 7, device=meta),
          "vision_encoder.backbone.pos_embed": torch.empty(1, width, *spec.get("pos_embed", [7, 7]), device=meta),
          "occlusion_spatial_embedding_parameter": torch.empty(1, 64, device=meta),
          "temporal_positional_encoding_projection_layer.weight": torch.empty(64, 256, device=meta)}
    block, dim = 0, width
    for stage, count in enumerate(per_stage):
        dim = width * 2 ** stage
        for i in range(count):
            sd[f"vision_encoder.backbone.blocks.{block}.attn.qkv.weight"] = torch.empty(3 * dim, dim, device=meta)
            if stage and i == 0:
                sd[f"vision_encoder.backbone.blocks.{block}.proj.weight"] = torch.empty(dim, dim // 2, device=meta)
            block += 1
    return sd


def trunk_layout(sd: dict[str, torch.Tensor]) -> tuple[int, tuple[int, ...], list[int]]:
    """(width, blocks per stage, embed dim per stage) of the Hiera trunk in a transformers-layout dict.

    A stage starts at block 0 and at every block that projects to a wider dim (has ``proj``)."""
    prefix = "vision_encoder.backbone.blocks."
    count = 1 + max(int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix))
    starts = [0] + [i for i in range(1, count) if f"{prefix}{i}.proj.weight" in sd]
    per_stage = tuple(b - a for a, b in zip(starts, starts[1:] + [count]))
    dims = [int(sd[f"{prefix}{s}.attn.qkv.weight"].shape[0]) // 3 for s in starts]
    return int(sd[HF_MARKER].shape[0]), per_stage, dims


def hf_config_kwargs(sd: dict[str, torch.Tensor]) -> dict:
    """Keyword arguments for ``Sam2VideoConfig`` that build the model this state dict belongs to.

    sd: transformers-layout state dict. Returns {"name", "vision", "backbone", "model"} where
    "backbone" -> Sam2HieraDetConfig kwargs, "vision" -> Sam2VisionConfig kwargs (without backbone),
    "model" -> Sam2VideoConfig kwargs. Raises ValueError for a trunk that is none of the 4 sizes."""
    width, per_stage, dims = trunk_layout(sd)
    known = KNOWN_TRUNKS.get((width, per_stage))
    if known is None:
        sizes = ", ".join(f"{v['name']} (width {w}, blocks {list(b)})" for (w, b), v in KNOWN_TRUNKS.items())
        raise ValueError(f"SAM2 trunk of width {width} with blocks per stage {list(per_stage)} is not a known "
                         f"SAM2 size ({sizes}). Use one of Meta's sam2.1_hiera_*.pt or Kijai's "
                         f"sam2.1_hiera_*.safetensors files.")
    extra = {k: v for k, v in known.items() if k not in ("name", "pos_embed", "image_size", "vision", "model")}
    pos = sd["vision_encoder.backbone.pos_embed"].shape
    backbone = dict(hidden_size=width, embed_dim_per_stage=dims, blocks_per_stage=list(per_stage),
                    window_positional_embedding_background_size=[int(pos[2]), int(pos[3])], **extra)
    vision = dict(backbone_channel_list=dims[::-1], **known.get("vision", {}))
    model = dict(
        enable_occlusion_spatial_embedding="occlusion_spatial_embedding_parameter" in sd,
        enable_temporal_pos_encoding_for_object_pointers="temporal_positional_encoding_projection_layer.weight" in sd,
        **known.get("model", {}))
    if "image_size" in known:
        backbone["image_size"] = [known["image_size"]] * 2
    return dict(name=known["name"], backbone=backbone, vision=vision, model=model)
