import json

from swinrmt.cli import main


def test_models_command_lists_params_and_flops(capsys):
    assert main(["models", "rmt_tiny", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["model"] == "rmt_tiny" and abs(row["params"] / 14.33e6 - 1) < 0.03
    # RMT-T is quoted at 2.5 GMACs at 224 px; ours (same macro) must be in that neighbourhood
    assert 2.3e9 < row["macs"] < 2.8e9
    assert row["flops"] == 2 * row["macs"]


def test_models_command_table_and_bad_pattern(capsys):
    assert main(["models", "*_nano"]) == 0
    out = capsys.readouterr().out
    assert "gated_swinrmt_swat_nano" in out and "rmt_tiny" not in out
    assert main(["models", "nothing_like_this*"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no registered model matches" in err[0]
