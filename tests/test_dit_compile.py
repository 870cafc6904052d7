"""torch.compile of the blocks (the loader's torch_compile option) gives the eager velocity."""
import pytest
import torch

import golden
from dit_helpers import case_for, case_inputs, tiny_model
from infinitetalk_lipsync.nodes import loader as loader_node


def test_compiled_blocks_match_eager():
    model, inputs = tiny_model(), case_inputs(case_for("two"))
    with torch.no_grad():
        ref = model(**inputs)
        assert model.compile_blocks(torch.device("cpu"))
        out = model(**inputs)
    golden.assert_close(out, ref, what="compiled vs eager")


def test_compile_with_block_swap_is_refused_clearly():
    with pytest.raises(ValueError, match="blocks_to_swap"):
        loader_node.InfiniteTalkModelLoader().load("base.safetensors", "it.safetensors", "bf16",
                                                   "upcast (safe, any GPU)", "sdpa", 10, torch_compile=True)
