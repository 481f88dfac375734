"""torch.fx tracing and timm's factory arguments (device=, dtype=) on every registered model.

* `torch.fx.symbolic_trace` traces every model in train and eval mode; the traced module computes bit-identical outputs
  and parameter gradients, at the traced size and at another one (the shape logic is recorded as calls, not branches).
* `create_model(name, device=..., dtype=...)` places every parameter and buffer; on "meta" nothing is allocated.
"""
import pytest
import torch
import torch.fx

import swinrmt

ALL = swinrmt.list_models()
NANO = [n for n in ALL if n.endswith("_nano")]
# the registered sizes take seconds each on 2 cores: the slow suite (`pytest -m slow`)
ALL_PARAMS = [n if n in NANO else pytest.param(n, marks=pytest.mark.slow) for n in ALL]


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _train_step(fn, model, x, seed):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same stochastic-depth draws in both
    out = fn(x)
    out.square().mean().backward()
    return out.detach(), _grads(model)


@pytest.mark.parametrize("name", ALL_PARAMS)
def test_symbolic_trace_computes_what_eager_computes(name):
    model = swinrmt.create_model(name, num_classes=5, drop_path_rate=0.2)
    # non-square, no multiple of the window: padding and shift masks on every path
    sizes = [(2, 3, 56, 72), (1, 3, 64, 48)]
    for train in (True, False):
        model.train(train)
        traced = torch.fx.symbolic_trace(model)
        assert isinstance(traced, torch.fx.GraphModule)
        wrapped = {getattr(n.target, "__name__", "") for n in traced.graph.nodes if n.op == "call_function"}
        assert "check_image_batch" in wrapped  # the input check is one call, not a branch
        for i, shape in enumerate(sizes):
            x = torch.randn(shape)
            if train:
                out, grads = _train_step(model, model, x, i)
                t_out, t_grads = _train_step(traced, model, x, i)
                assert grads.keys() == t_grads.keys() == {n for n, _ in model.named_parameters()}
                assert not [n for n in grads if not torch.equal(grads[n], t_grads[n])]
            else:
                with torch.no_grad():
                    out, t_out = model(x), traced(x)
            assert out.shape == (shape[0], 5) and torch.equal(out, t_out), (name, train, shape)


def test_traced_model_keeps_the_input_checks():
    traced = torch.fx.symbolic_trace(swinrmt.create_model("rmt_nano").eval())
    with pytest.raises(ValueError, match="expected 3 input channels"):
        traced(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match="expected a 4-D image batch"):
        traced(torch.randn(3, 64, 64))


@pytest.mark.parametrize("name", ALL)
def test_meta_device_builds_every_model_without_memory(name):
    model = swinrmt.create_model(name, device="meta", dtype=torch.bfloat16)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert all(t.is_meta for t in tensors.values()), [n for n, t in tensors.items() if not t.is_meta][:5]
    assert all(t.dtype == torch.bfloat16 for t in tensors.values() if t.is_floating_point())
    model.eval().reset_classifier(3)
    assert model.head.weight.is_meta and model.head.weight.dtype == torch.bfloat16 and not model.head.training
    out = model(torch.empty(2, 3, 64, 64, device="meta", dtype=torch.bfloat16))
    assert out.is_meta and out.shape == (2, 3) and out.dtype == torch.bfloat16


def test_factory_arguments_place_and_cast_and_load_later():
    torch.manual_seed(0)
    ref = swinrmt.create_model("gated_swinrmt_swat_nano", num_classes=4)
    torch.manual_seed(0)
    f64 = swinrmt.create_model("gated_swinrmt_swat_nano", num_classes=4, device="cpu", dtype=torch.float64)
    for (n, a), (_, b) in zip(ref.state_dict().items(), f64.state_dict().items()):
        assert b.dtype == (torch.float64 if a.is_floating_point() else a.dtype) and torch.equal(a.to(b.dtype), b), n
    # built on meta (no memory), loaded later
    lazy = swinrmt.create_model("gated_swinrmt_swat_nano", num_classes=4, device="meta")
    lazy.load_state_dict(ref.state_dict(), assign=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(lazy.eval()(x), ref.eval()(x))
    assert "device" not in f64.model_overrides and "dtype" not in f64.model_overrides  # placement is not config
    with pytest.raises(TypeError, match="dtype must be a floating point"):
        swinrmt.create_model("swin_nano", dtype=torch.int64)
    with pytest.raises(TypeError):
        swinrmt.create_model("swin_nano", device="meta", not_an_option=1)
