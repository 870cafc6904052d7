"""Recognition on the real 14B key schema (shapes only; no tensor data is created)."""
import pytest

from infinitetalk_lipsync.pipeline.loading import CheckpointError
from infinitetalk_lipsync.pipeline.loading.detect import inspect_audio, inspect_base
from infinitetalk_lipsync.pipeline.loading.load import derive_config
from infinitetalk_lipsync.pipeline.loading.reader import Checkpoint

D, FFN, L = 5120, 13824, 40


def base_schema(i2v=True):
    s = {"patch_embedding.weight": (D, 36 if i2v else 16, 1, 2, 2), "patch_embedding.bias": (D,),
         "text_embedding.0.weight": (D, 4096), "text_embedding.0.bias": (D,), "text_embedding.2.weight": (D, D),
         "text_embedding.2.bias": (D,), "time_embedding.0.weight": (D, 256), "time_embedding.0.bias": (D,),
         "time_embedding.2.weight": (D, D), "time_embedding.2.bias": (D,), "time_projection.1.weight": (6 * D, D),
         "time_projection.1.bias": (6 * D,), "head.head.weight": (64, D), "head.head.bias": (64,),
         "head.modulation": (1, 2, D)}
    if i2v:
        s.update({"img_emb.proj.0.weight": (1280,), "img_emb.proj.0.bias": (1280,), "img_emb.proj.1.weight": (1280, 1280),
                  "img_emb.proj.1.bias": (1280,), "img_emb.proj.3.weight": (D, 1280), "img_emb.proj.3.bias": (D,),
                  "img_emb.proj.4.weight": (D,), "img_emb.proj.4.bias": (D,)})
    for i in range(L):
        p = f"blocks.{i}."
        lin = [f"self_attn.{x}" for x in "qkvo"] + [f"cross_attn.{x}" for x in "qkvo"]
        lin += ["cross_attn.k_img", "cross_attn.v_img"] if i2v else []
        for m in lin:
            s[p + m + ".weight"], s[p + m + ".bias"] = (D, D), (D,)
        norms = ["self_attn.norm_q", "self_attn.norm_k", "cross_attn.norm_q", "cross_attn.norm_k"]
        norms += ["cross_attn.norm_k_img"] if i2v else []
        for m in norms:
            s[p + m + ".weight"] = (D,)
        s.update({p + "norm3.weight": (D,), p + "norm3.bias": (D,), p + "ffn.0.weight": (FFN, D), p + "ffn.0.bias": (FFN,),
                  p + "ffn.2.weight": (D, FFN), p + "ffn.2.bias": (D,), p + "modulation": (1, 6, D)})
    return s


def audio_schema():
    s = {"audio_proj.proj1.weight": (512, 46080), "audio_proj.proj1.bias": (512,),
         "audio_proj.proj1_vf.weight": (512, 73728), "audio_proj.proj1_vf.bias": (512,),
         "audio_proj.proj2.weight": (512, 512), "audio_proj.proj2.bias": (512,),
         "audio_proj.proj3.weight": (24576, 512), "audio_proj.proj3.bias": (24576,),
         "audio_proj.norm.weight": (768,), "audio_proj.norm.bias": (768,)}
    for i in range(L):
        p = f"blocks.{i}."
        s.update({p + "audio_cross_attn.q_linear.weight": (D, D), p + "audio_cross_attn.q_linear.bias": (D,),
                  p + "audio_cross_attn.kv_linear.weight": (2 * D, 768), p + "audio_cross_attn.kv_linear.bias": (2 * D,),
                  p + "audio_cross_attn.proj.weight": (D, D), p + "audio_cross_attn.proj.bias": (D,),
                  p + "norm_x.weight": (D,), p + "norm_x.bias": (D,)})
    return s


def fake(name, schema, dtype="BF16", prefix=""):
    return Checkpoint(name, "safetensors", {prefix + k: (dtype, v, None) for k, v in schema.items()}, {}, None)


def test_14b_schema_recognised_and_config_derived():
    base, audio = base_schema(), audio_schema()
    assert len(base) == 1303 and len(audio) == 330
    b = inspect_base(fake("wan2.1_i2v_720p_14B_bf16.safetensors", base, prefix="model.diffusion_model."))
    a = inspect_audio(fake("Wan2_1-InfiniTetalk-Multi_fp16.safetensors", audio, "F16"))
    assert b.family == "Wan 2.1 I2V 14B" and b.quant.label == "bf16" and a.kind == "multi"
    assert b.variant.startswith("720P (from the file name")
    cfg = derive_config(b.dims, a.dims, None)
    assert cfg == dict(dim=D, ffn_dim=FFN, num_layers=L, in_dim=36, out_dim=16, freq_dim=256, text_dim=4096,
                       patch_size=(1, 2, 2), num_heads=40, intermediate_dim=512, output_dim=768, context_tokens=32)


def test_14b_t2v_rejected():
    with pytest.raises(CheckpointError, match="text-to-video"):
        inspect_base(fake("wan2.1_t2v_14B.safetensors", base_schema(i2v=False)))
