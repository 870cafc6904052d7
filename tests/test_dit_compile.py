"""torch.compile of the blocks (the loader's torch_compile option) gives the eager velocity."""
import torch

import golden
from dit_helpers import case_for, case_inputs, tiny_model
from infinitetalk_lipsync.pipeline.loading import block_swap


def test_compiled_blocks_match_eager():
    model, inputs = tiny_model(), case_inputs(case_for("two"))
    with torch.no_grad():
        ref = model(**inputs)
        assert model.compile_blocks(torch.device("cpu"))
        out = model(**inputs)
    golden.assert_close(out, ref, what="compiled vs eager")


def test_compiled_blocks_with_block_swap_match_eager():
    """The swap's hooks stay outside the compiled forward: the swapped weights are graph inputs."""
    model, inputs = tiny_model(), case_inputs(case_for("two"))
    with torch.no_grad():
        ref = model(**inputs)
        swap = block_swap.install(model, len(model.blocks) - 1, "cpu")
        assert model.compile_blocks(torch.device("cpu"))
        for _ in range(2):  # the second call starts from the swap's wrap-around prefetch state
            out = model(**inputs)
            golden.assert_close(out, ref, what="compiled + block swap vs eager")
        assert not swap.ready
