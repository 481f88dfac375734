import pytest

from swinrmt.atomic import atomic_write, write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"v": 1})

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write('{"v": 2, "trunc')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text().strip() == '{\n "v": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_write_without_replace_keeps_the_existing_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"a": 1}, replace=False)
    with pytest.raises(FileExistsError):
        write_json(path, {"a": 2}, replace=False)
    assert path.read_text() == '{\n "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
