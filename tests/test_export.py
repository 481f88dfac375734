"""Export to ONNX (checked with onnxruntime at two batch sizes) and torch.export; CLI errors are one line."""
import pytest
import torch

import swinrmt
from swinrmt.cli import main
from swinrmt.export import export_onnx, export_torch

SMALL = dict(img_size=64, depths=(2, 1, 1, 1))  # stage 0 has a shifted block: the cyclic roll is exported


def _model(name):
    torch.manual_seed(0)
    return swinrmt.create_model(name, num_classes=10, **SMALL).eval()


@pytest.mark.parametrize("name", ["gated_swinrmt_swat_nano",  # roll (cyclic shift), rms_norm, sigmoid passes
                                  pytest.param("swin_nano", marks=pytest.mark.slow),
                                  pytest.param("gated_swinrmt_retention_nano", marks=pytest.mark.slow),
                                  pytest.param("rmt_nano", marks=pytest.mark.slow)])
def test_onnx_matches_pytorch_with_dynamic_batch(tmp_path, name):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    import onnxruntime as ort

    model = _model(name)
    report = export_onnx(model, tmp_path / "m.onnx", input_size=(64, 80))  # checks batch 1 and 3 itself
    assert report["max_abs_diff"] < 1e-4
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[0] == "batch"  # dynamic batch dimension
    x = torch.randn(5, 3, 64, 80) * 3
    with torch.no_grad():
        ref = model(x)
    out = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
    assert out.shape == (5, 10)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_torch_export_round_trip(tmp_path):
    model = _model("swin_nano")  # shifted windows: torch.roll goes through torch.export
    report = export_torch(model, tmp_path / "m.pt2", input_size=(64, 64))
    assert report["max_abs_diff"] <= 1e-5
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gated_swinrmt_swat_nano", "gated_swinrmt_retention_nano", "rmt_nano"])
def test_torch_export_other_families(tmp_path, name):
    assert export_torch(_model(name), tmp_path / "m.pt2", input_size=(64, 64))["max_abs_diff"] <= 1e-5


def test_cli_export_onnx_and_errors(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    out = tmp_path / "rmt.onnx"
    assert main(["export", "--model", "rmt_nano", "--set", "depths=[1,1,1,1]", "--img-size", "32",
                 "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and "matches PyTorch" in capsys.readouterr().out
    for argv, needle in [
        (["export", "--model", "rmt_nano", "--format", "tflite"], "unknown format 'tflite'"),
        (["export", "--checkpoint", str(tmp_path / "missing"), "--format", "onnx"], "missing"),
        (["export", "--model", "no_such_model"], "unknown model 'no_such_model'"),
        (["export", "--model", "rmt_nano", "--format", "onnx", "--out", str(out)], "already exists"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("swinrmt export: error:") and needle in err and "\n" not in err
