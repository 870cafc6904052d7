"""The block FFN: official state-dict keys, and the GEMM+GELU custom op (its GPU path fuses the GELU into
the GEMM epilogue; here its reference semantics and that torch.compile keeps it one node)."""
import importlib

import torch
import torch.nn.functional as F

layers = importlib.import_module("infinitetalk_lipsync.pipeline.dit.layers")


def test_feedforward_keeps_the_official_keys_and_values():
    torch.manual_seed(0)
    ffn = layers.FeedForward(16, 40)
    assert sorted(ffn.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    x = torch.randn(2, 5, 16)
    ref = F.linear(F.gelu(F.linear(x, ffn[0].weight, ffn[0].bias), approximate="tanh"), ffn[2].weight, ffn[2].bias)
    assert torch.equal(ffn(x), ref)


def test_linear_gelu_op_is_tanh_gelu_of_the_linear_and_compiles_as_one_node():
    torch.manual_seed(1)
    x, w, b = torch.randn(7, 16), torch.randn(24, 16), torch.randn(24)
    ref = F.gelu(F.linear(x, w, b), approximate="tanh")
    torch.testing.assert_close(layers._linear_gelu(x, w, b), ref, rtol=1e-5, atol=1e-5)
    graphs = []

    def backend(gm, inputs):
        graphs.append(gm)
        return gm.forward
    out = torch.compile(lambda *a: layers._linear_gelu(*a) * 2, backend=backend)(x, w, b)
    torch.testing.assert_close(out, 2 * ref, rtol=1e-5, atol=1e-5)
    targets = [str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"]
    assert any("linear_gelu" in t for t in targets), targets
