"""Visualisation: recomputed attention reproduces each mixer; figures and gate sparsity are produced."""
import pytest
import torch

import swinrmt
from swinrmt.cli import main
from swinrmt.layers.mixers import AxialMixer, MaSA2d, WindowMSA
from swinrmt.viz import (all_gate_scores, axial_pass_weights, effective_attention, gate_sparsity, get_block,
                         visualise)


def _reconstruct(mixer, x):
    """Mixer output rebuilt from the recomputed (effective) attention, applied to V by plain matmul."""
    b, h, w, c = x.shape
    heads, d = mixer.num_heads, mixer.head_dim
    v = mixer.qkv(x)[..., 2 * c:] if isinstance(mixer, WindowMSA) else (
        mixer.v(x) if isinstance(mixer, MaSA2d) else mixer.value(x))
    y = (effective_attention(mixer, x) @ v.reshape(b, h * w, heads, d).transpose(1, 2))
    y = y.transpose(1, 2).reshape(b, h, w, c)
    if isinstance(mixer, AxialMixer):
        y = mixer.post(y)
        y = mixer.gate_output(y + (mixer.lce(v) if mixer.lce is not None else 0), x)
    elif mixer.__class__ is MaSA2d and mixer.lce is not None:
        y = y + mixer.lce(v)
    return mixer.proj(y)


@pytest.mark.parametrize("name,blocks", [("gated_swinrmt_swat_nano", ["0.0", "0.1"]),
                                         ("gated_swinrmt_retention_nano", ["0.1"]),
                                         ("rmt_nano", ["0.1", "2.0"]), ("swin_nano", ["0.1"])])
def test_effective_attention_reproduces_mixer(name, blocks):
    model = swinrmt.create_model(name, img_size=64, depths=(2, 2, 1, 1)).eval()
    for blk in blocks:
        mixer = get_block(model, blk).mixer
        x = torch.randn(2, 11, 13, mixer.dim)  # non-square, not a window multiple: padding + shift
        with torch.no_grad():
            torch.testing.assert_close(_reconstruct(mixer, x), mixer(x), rtol=1e-4, atol=1e-5)


def test_axial_weights_are_local_and_normalised():
    mixer = get_block(swinrmt.create_model("gated_swinrmt_retention_nano", img_size=64), "0.1").mixer
    x = torch.randn(1, 9, 10, mixer.dim)
    aw, ah = axial_pass_weights(mixer, x)
    assert aw.shape == (1, 2, 9, 10, 10) and ah.shape == (1, 2, 10, 9, 9)
    torch.testing.assert_close(aw.sum(-1), torch.ones_like(aw.sum(-1)))  # softmax rows (shift regions included)
    assert ((aw > 0).sum(-1) <= mixer.window_size).all()  # a query sees at most its window


def test_gate_scores_and_sparsity():
    model = swinrmt.create_model("gated_swinrmt_retention_nano", img_size=64, depths=(1, 1, 1, 1), gate="headwise")
    scores = all_gate_scores(model, torch.randn(1, 3, 64, 64))
    assert list(scores) == ["0.0", "1.0", "2.0", "3.0"]
    assert scores["0.0"].shape == (1, 32, 32, 2, 1) and ((scores["0.0"] > 0) & (scores["0.0"] < 1)).all()
    torch.testing.assert_close(gate_sparsity(torch.tensor([0.05, 0.5, 0.01, 0.2]).view(1, 1, 1, 2, 2)),
                               torch.tensor([0.5, 0.5]))


def test_visualise_writes_pngs(tmp_path):
    model = swinrmt.create_model("gated_swinrmt_retention_nano", img_size=64, depths=(2, 1, 1, 1))
    report = visualise(model, tmp_path, block="0.1", query=(3, 5))
    assert sorted(p.split("/")[-1] for p in report["files"]) == ["attention.png", "decay.png", "gates.png"]
    for f in report["files"]:
        assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(report["gate_sparsity"]["0.1"]) == 2


def test_cli_viz_and_errors(tmp_path, capsys):
    img = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(img)
    assert main(["viz", "--model", "swin_nano", "--image", str(img), "--what", "attention", "--out",
                 str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "attention.png").is_file()
    for argv, needle in [
        (["viz", "--model", "rmt_nano", "--what", "gates"], "no G1 output gate"),
        (["viz", "--model", "rmt_nano", "--block", "9.9"], "no block '9.9'"),
        (["viz", "--model", "rmt_nano", "--image", str(tmp_path / "nope.png")], "image not found"),
        (["viz", "--checkpoint", str(tmp_path / "missing")], "missing"),
    ]:
        assert main(argv + ["--out", str(tmp_path / "e")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("swinrmt viz: error:") and needle in err and "\n" not in err, err
