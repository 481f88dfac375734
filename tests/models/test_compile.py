"""torch.compile friendliness: every family traces into one graph (no graph breaks), in eval and in training.

Only Dynamo's tracing runs here (`torch._dynamo.explain`), not Inductor's code generation, so the test takes seconds.
A break would come from Python-side state the tracer cannot follow (the table cache, data-dependent branches,
`.item()`), and would make a compiled model fall back to eager between the pieces.
"""
import pytest
import torch

from swinrmt.registry import create_model

FAMILIES = ["rmt_nano", "gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano", "swin_nano"]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", FAMILIES)
def test_model_traces_without_graph_breaks(name, train):
    torch._dynamo.reset()
    model = create_model(name, num_classes=10, img_size=64).train(train)
    explained = torch._dynamo.explain(model)(torch.randn(2, 3, 64, 64))
    reasons = [str(b.reason).splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_break_count == 0 and explained.graph_count == 1, reasons


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_compiled_inference_matches_eager(name):
    """Inductor's code generation too (minutes): the compiled model computes what the eager one does."""
    torch._dynamo.reset()
    model = create_model(name, num_classes=10, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), atol=1e-4, rtol=1e-4)
