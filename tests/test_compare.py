"""The compare machinery on a tiny real setup: seeding, statistics, resumption, report."""
import json
import math
import shutil

import pytest

from swinrmt import compare as C
from swinrmt import create_model
from swinrmt.train.loop import train

TINY = ["epochs=1", "batch_size=32", "data.limit_train=64", "data.limit_test=40", "img_size=16",
        "log_every_steps=1", "data.verify=false"]


def test_mean_std_and_paired_ci_on_known_values():
    assert C.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    d = C.paired_difference([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert d["mean"] == 2.0 and d["n"] == 3
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2}
    assert d["lo"] == pytest.approx(2.0 - half) and d["hi"] == pytest.approx(2.0 + half)
    one = C.paired_difference([5.0], [4.0])
    assert one["mean"] == 1.0 and math.isnan(one["lo"])
    with pytest.raises(ValueError, match="equal lengths"):
        C.paired_difference([1.0], [1.0, 2.0])


def test_grid_is_a_cartesian_product_with_typed_values():
    g = C.parse_grid(["norm=headnorm,rowsum", "lce=true,false", "window_size=2"])
    assert len(g) == 4 and {"norm": "rowsum", "lce": False, "window_size": 2} in g
    assert C.parse_grid([]) == [{}]
    with pytest.raises(ValueError, match="option=value1,value2"):
        C.parse_grid(["norm"])
    assert C.run_label("m", {"b": 1, "a": "x"}) == "m[a=x,b=1]"


def _counting_train(calls, stop_after=None):
    def fn(recipe, run_dir, **kw):
        if stop_after is not None and len(calls) >= stop_after:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(str(run_dir))
        return train(recipe, run_dir, **{**kw, "progress": False})
    return fn


def test_same_seed_same_run(tmp_path):
    a = C.compare(["rmt_nano"], "quick", tmp_path / "a", seeds=[3], recipe_overrides=TINY, progress=False)
    b = C.compare(["rmt_nano"], "quick", tmp_path / "b", seeds=[3], recipe_overrides=TINY, progress=False)
    assert a["summary"][0]["top1_mean"] == b["summary"][0]["top1_mean"]
    la = (tmp_path / "a/runs/rmt_nano/seed-3/metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b/runs/rmt_nano/seed-3/metrics.jsonl").read_text().splitlines()
    losses = lambda lines: [json.loads(x)["loss"] for x in lines if json.loads(x).get("kind") == "step"]  # noqa
    assert losses(la) and losses(la) == losses(lb)


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "pool"])
def test_a_run_killed_before_its_first_checkpoint_trains_again_from_the_start(tmp_path, workers):
    # Killed between writing config.yaml and its first checkpoint, a run has nothing to resume from; the compare must
    # not stop on "cannot resume" but retrain it, over the trainer's own files only, to the uninterrupted result.
    ref = C.compare(["rmt_nano"], "quick", tmp_path / "ref", seeds=[0, 1], recipe_overrides=TINY, progress=False)
    out = tmp_path / "cmp"
    run = out / "runs" / "rmt_nano" / "seed-0"
    shutil.copytree(tmp_path / "ref" / "runs" / "rmt_nano" / "seed-0", run)
    for f in list(run.rglob("*")):  # what a kill before the first save leaves: the config and a partial log
        if f.is_file() and f.name != "config.yaml":
            f.unlink()
    (run / "metrics.jsonl").write_text('{"kind": "step", "step": 1, "loss": 9.9}\n')
    (run / "notes.txt").write_text("mine")
    rep = C.compare(["rmt_nano"], "quick", out, seeds=[0, 1], recipe_overrides=TINY, progress=False,
                    workers=workers, threads=workers)
    assert rep["summary"][0]["top1_mean"] == ref["summary"][0]["top1_mean"]
    top1 = lambda d: json.loads((d / "runs/rmt_nano/seed-0" / C.RESULT).read_text())["test_top1"]  # noqa: E731
    assert top1(out) == top1(tmp_path / "ref")
    assert '"loss": 9.9' not in (run / "metrics.jsonl").read_text()
    assert (run / "notes.txt").read_text() == "mine", "only the trainer's own files may be replaced"
    if workers > 1:
        assert "restarting (it stopped before its first checkpoint)" in (out / "logs/rmt_nano-seed-0.log").read_text()


def test_a_run_with_a_checkpoint_is_never_restarted(tmp_path):
    out = tmp_path / "cmp"
    run = out / "runs" / "rmt_nano" / "seed-0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "checkpoints" / "best.safetensors").write_bytes(b"kept")  # a best without a last: resume, and fail loudly
    with pytest.raises(FileNotFoundError, match="cannot resume: no checkpoint"):
        C.compare(["rmt_nano"], "quick", out, seeds=[0], recipe_overrides=TINY, progress=False)
    assert (run / "checkpoints" / "best.safetensors").read_bytes() == b"kept"


def test_interrupted_compare_resumes_without_retraining(tmp_path):
    out = tmp_path / "cmp"
    models = ["rmt_nano", "gated_swinrmt_swat_nano"]
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        C.compare(models, "quick", out, seeds=[0, 1], recipe_overrides=TINY, progress=False,
                  train_fn=_counting_train(calls, stop_after=3))
    assert len(calls) == 3
    done = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed-*/result.json")}
    assert len(done) == 3
    calls2: list[str] = []
    rep = C.compare(models, "quick", out, seeds=[0, 1], recipe_overrides=TINY, progress=False,
                    train_fn=_counting_train(calls2))
    assert len(calls2) == 1, "only the missing run may train"
    assert all(p.stat().st_mtime_ns == t for p, t in done.items()), "finished runs must not be touched"
    assert {s["label"] for s in rep["summary"]} == set(models)
    swat = next(s for s in rep["summary"] if s["label"] == "gated_swinrmt_swat_nano")
    assert swat["diff_vs_baseline"]["n"] == 2 and swat["params"] > 0 and swat["flops"] > 0
    for f in ("report.md", "runs.csv", "runs.json", "curves.png", "final.png"):
        assert (out / f).stat().st_size > 0
    assert "| `gated_swinrmt_swat_nano` |" in (out / "report.md").read_text()
    # a third run has nothing left to do
    calls3: list[str] = []
    C.compare(models, "quick", out, seeds=[0, 1], recipe_overrides=TINY, progress=False,
              train_fn=_counting_train(calls3))
    assert calls3 == []


def test_a_report_dir_holds_one_protocol(tmp_path):
    C.compare(["rmt_nano"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY, progress=False)
    with pytest.raises(ValueError, match=r"different recipe \(differs in: optim.lr\)"):
        C.compare(["rmt_nano"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY + ["optim.lr=0.1"],
                  progress=False)


def test_unknown_model_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'rmt_nanoo'"):
        C.compare(["rmt_nanoo"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY)
    assert not (tmp_path / "runs").exists()


def test_ablation_grid_trains_one_run_per_grid_point(tmp_path):
    rep = C.compare(["gated_swinrmt_swat_nano"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY,
                    grid=C.parse_grid(["norm=headnorm,rowsum"]), progress=False)
    labels = [s["label"] for s in rep["summary"]]
    assert sorted(labels) == ["gated_swinrmt_swat_nano[norm=headnorm]", "gated_swinrmt_swat_nano[norm=rowsum]"]
    cfg = (tmp_path / "runs/gated_swinrmt_swat_nano__norm-rowsum/seed-0/config.yaml").read_text()
    assert "norm: rowsum" in cfg


def test_model_spec_parses_overrides_and_is_the_inverse_of_the_label():
    assert C.parse_model_spec("rmt_nano") == ("rmt_nano", {})
    name, own = C.parse_model_spec("rmt_nano[mlp_ratios=3.5,embed_dims=[40,80,160,320],lce=true]")
    assert name == "rmt_nano" and own == {"mlp_ratios": 3.5, "embed_dims": [40, 80, 160, 320], "lce": True}
    label = C.run_label("gated_swinrmt_swat_nano", {"norm": "rowsum", "alibi": "signed"})
    assert C.parse_model_spec(label) == ("gated_swinrmt_swat_nano", {"norm": "rowsum", "alibi": "signed"})
    for bad in ("rmt_nano[", "rmt_nano[mlp_ratios]", "[a=1]", "rmt_nano[a=[1,2]", "rmt_nano[a=1,]"):
        with pytest.raises(ValueError, match="model spec"):
            C.parse_model_spec(bad)


def test_model_variants_and_grid_compose_and_bad_options_fail_before_training(tmp_path):
    specs = C.plan_runs(["rmt_nano", "rmt_nano[mlp_ratios=3.5]"], [0, 1], C.parse_grid(["drop_path_rate=0.0"]))
    assert [s.label for s in specs[:2]] == ["rmt_nano[drop_path_rate=0.0]",
                                            "rmt_nano[drop_path_rate=0.0,mlp_ratios=3.5]"]
    assert [s.seed for s in specs] == [0, 0, 1, 1]
    with pytest.raises(TypeError, match="no_such_option"):
        C.compare(["rmt_nano", "rmt_nano[no_such_option=1]"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY)
    assert not (tmp_path / "runs").exists()


def test_parameter_matched_variant_trains_with_its_overrides_and_reports_in_asked_order(tmp_path):
    calls: list[str] = []
    rep = C.compare(["rmt_nano[mlp_ratios=3.5]", "gated_swinrmt_swat_nano"], "quick", tmp_path, seeds=[0],
                    recipe_overrides=TINY, progress=False, train_fn=_counting_train(calls))
    labels = [s["label"] for s in rep["summary"]]
    assert labels == ["rmt_nano[mlp_ratios=3.5]", "gated_swinrmt_swat_nano"]  # not alphabetical
    assert rep["baseline"] == "rmt_nano[mlp_ratios=3.5]"
    plain = sum(p.numel() for p in create_model("rmt_nano", num_classes=10).parameters())
    assert rep["summary"][0]["params"] > plain  # the widened baseline really is wider
    assert "mlp_ratios: 3.5" in (tmp_path / "runs/rmt_nano__mlp_ratios-3.5/seed-0/config.yaml").read_text()
    report = (tmp_path / "report.md").read_text()
    assert report.index("`rmt_nano[mlp_ratios=3.5]`") < report.index("`gated_swinrmt_swat_nano`")


def test_a_second_report_against_another_baseline_trains_nothing(tmp_path):
    calls: list[str] = []
    models = ["rmt_nano", "gated_swinrmt_swat_nano"]
    C.compare(models, "quick", tmp_path, seeds=[0], recipe_overrides=TINY, progress=False,
              train_fn=_counting_train(calls))
    first = (tmp_path / "report.md").read_text()
    rep = C.compare(models, "quick", tmp_path, seeds=[0], recipe_overrides=TINY, progress=False,
                    train_fn=_counting_train(calls), baseline="gated_swinrmt_swat_nano", report="report-vs-swat.md")
    assert len(calls) == 2 and rep["baseline"] == "gated_swinrmt_swat_nano"
    assert (tmp_path / "report.md").read_text() == first
    assert "Δ vs `gated_swinrmt_swat_nano`" in (tmp_path / "report-vs-swat.md").read_text()
    with pytest.raises(ValueError, match="not one of the compared models"):
        C.compare(models, "quick", tmp_path, seeds=[0], recipe_overrides=TINY, baseline="rmt_tiny")
    with pytest.raises(ValueError, match="not among the finished runs"):
        C.write_report(tmp_path, baseline="rmt_tiny")

def test_train_time_adds_up_the_epochs_across_resumes(tmp_path):
    """A resumed run's wall_s spans its last process only; the report's train time sums the checkpointed epoch
    times, so a run interrupted and resumed is not reported as faster than it was."""
    C.compare(["rmt_nano"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY + ["epochs=2"], progress=False)
    run = tmp_path / "runs/rmt_nano/seed-0"
    epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    times = [e["epoch_time_s"] for e in epochs if e.get("kind") == "epoch"]
    res = json.loads((run / "result.json").read_text())
    res["wall_s"] = 1e-3  # as after a resume into the last few steps
    (run / "result.json").write_text(json.dumps(res))
    C.write_report(tmp_path)
    row = json.loads((tmp_path / "runs.json").read_text())[0]
    assert len(times) == 2 and row["train_s"] == pytest.approx(sum(times)) and row["wall_s"] == 1e-3
    assert f"| {sum(times) / 60:.1f} min | 1 |" in (tmp_path / "report.md").read_text()
