"""Each family must memorise 32 training images: the cheapest catch-all for silent wiring bugs."""
import pytest
import torch

import swinrmt


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gated_swinrmt_swat_nano", "gated_swinrmt_retention_nano", "rmt_nano",
                                  "swin_nano"])
def test_overfits_32_images(name):
    torch.manual_seed(0)
    x = torch.randn(32, 3, 32, 32)
    y = torch.arange(32) % 10
    model = swinrmt.create_model(name, num_classes=10, img_size=32, drop_path_rate=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    for step in range(300):
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            model.eval()
            with torch.no_grad():
                acc = (model(x).argmax(-1) == y).float().mean().item()
            if acc == 1.0:
                break
    assert acc == 1.0, f"{name}: train accuracy {acc:.2f} after {step + 1} steps (loss {loss.item():.3f})"
