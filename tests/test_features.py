"""features_only: four NCHW stage maps with feature_info, on a non-square input, for every family."""
import pytest
import torch

import swinrmt

FAMILIES = ["gated_swinrmt_swat_nano", "gated_swinrmt_retention_nano", "rmt_nano", "swin_nano"]


@pytest.mark.parametrize("name", FAMILIES)
def test_features_only_non_square(name):
    torch.manual_seed(0)
    feats = swinrmt.create_model(name, features_only=True, img_size=64, depths=(1, 1, 1, 1)).eval()
    info = feats.feature_info
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs = feats(x)
    assert len(outs) == 4 == len(info)
    assert info.reduction() == [2, 4, 8, 16]
    for o, c, r in zip(outs, info.channels(), info.reduction()):
        assert o.shape == (2, c, 64 // r, 96 // r)  # NCHW, non-square preserved
        assert torch.isfinite(o).all()


def test_out_indices_and_backbone_agreement():
    torch.manual_seed(0)
    model = swinrmt.create_model("gated_swinrmt_swat_nano", img_size=64, depths=(1, 1, 1, 1)).eval()
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.allclose(final, model.forward_features(x))
    feats = swinrmt.create_model("gated_swinrmt_swat_nano", img_size=64, depths=(1, 1, 1, 1), features_only=True,
                                 out_indices=(1, -1))
    feats.model.load_state_dict(model.state_dict(), strict=False)  # the extractor has no head
    feats.eval()
    with torch.no_grad():
        outs = feats(x)
    assert feats.feature_info.channels() == [64, 256]
    assert [tuple(o.shape) for o in outs] == [(1, 64, 12, 20), (1, 256, 3, 5)]
    assert torch.allclose(outs[1], inter[3])
    assert not any(n.startswith("model.head") for n, _ in feats.named_parameters())  # the classifier is gone


def test_prune_intermediate_layers_and_global_pool():
    model = swinrmt.create_model("rmt_nano", img_size=64, depths=(1, 1, 1, 1)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        model.reset_classifier(0, "")
        spatial = model(x)
    assert spatial.shape == (1, model.head_hidden_size, 4, 4) and pooled.shape == (1, model.head_hidden_size)
    assert torch.allclose(spatial.mean((2, 3)), pooled, atol=1e-6)
    assert model.prune_intermediate_layers((0, 1)) == [0, 1]
    assert len(model.stages) == 2
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(3, "max")
