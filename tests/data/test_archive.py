"""Archive extraction: safe, atomic, cached; datasets built straight from an archive."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from swinrmt.data import build_dataset
from swinrmt.data.archive import extract_archive
from tests.data.data_helpers import write_image


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _imagefolder_archive(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "toyset"
    for split in ("train", "test"):
        for c in ("a", "b"):
            write_image(src / split / c / "0.png")
    out = tmp_path / "toyset.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src, arcname="toyset")
    return out


def test_extracts_once_into_the_cache_and_builds_a_dataset(tmp_path, isolated_cache, monkeypatch):
    archive = _imagefolder_archive(tmp_path)
    ds = build_dataset(str(archive), "train")
    assert ds.classes == ["a", "b"] and len(ds) == 2 and ds[0][0].mode == "RGB"
    dest = extract_archive(archive)
    assert dest.parent == isolated_cache / "extracted" and dest.name.startswith("toyset-")
    assert (dest / "toyset" / "train" / "a" / "0.png").is_file()
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temp dirs left behind

    def boom(*a, **k):
        raise AssertionError("archive re-opened although it is cached")

    monkeypatch.setattr(tarfile, "open", boom)
    assert extract_archive(archive) == dest
    assert len(build_dataset("imagefolder", "test", root=str(archive))) == 2


@pytest.mark.parametrize(
    "member, reason",
    [
        (_file("../evil"), "escapes"),
        (_file("ok/../../evil"), "escapes"),
        (_file("/abs/evil"), "absolute"),
        (_link("link", "/etc/passwd", tarfile.SYMTYPE), "absolute"),
        (_link("d/link", "../../outside", tarfile.SYMTYPE), "outside"),
        (_link("hard", "../outside", tarfile.LNKTYPE), "outside"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-abs", "symlink-rel", "hardlink"],
)
def test_malicious_members_are_refused_by_name_and_nothing_is_left(tmp_path, isolated_cache, member, reason):
    archive = _tar(tmp_path / "bad.tar.gz", [_file("fine.txt"), member])
    with pytest.raises(ValueError, match=rf"refusing unsafe archive member {member[0].name!r}.*{reason}"):
        extract_archive(archive)
    leftovers = list((isolated_cache / "extracted").iterdir())
    assert leftovers == []
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_chained_symlink_escape_is_refused(tmp_path, isolated_cache):
    # each link looks inside on its own, but a/b/c resolves through a/b (= the root) to the root's parent
    members = [_link("a/b", "..", tarfile.SYMTYPE), _link("a/b/c", "..", tarfile.SYMTYPE), _file("a/b/c/evil")]
    with pytest.raises(ValueError, match="refusing unsafe archive member"):
        extract_archive(_tar(tmp_path / "chain.tar.gz", members))
    assert not (tmp_path / "evil").exists() and not (isolated_cache / "evil").exists()
    assert list((isolated_cache / "extracted").iterdir()) == []


def test_safe_internal_links_are_allowed(tmp_path, isolated_cache):
    members = [_file("d/real.txt", b"hi"), _link("d/alias.txt", "real.txt", tarfile.SYMTYPE)]
    archive = _tar(tmp_path / "ok.tar.gz", members)
    dest = extract_archive(archive)
    assert (dest / "d" / "alias.txt").read_bytes() == b"hi"


def test_interrupted_extraction_leaves_no_half_dataset(tmp_path, isolated_cache, monkeypatch):
    archive = _imagefolder_archive(tmp_path)
    real = tarfile.TarFile.extractall

    def killed(self, path, *a, **k):
        Path(path, "partial").write_text("half")
        raise KeyboardInterrupt  # like a Ctrl-C or kill in the middle of extraction

    monkeypatch.setattr(tarfile.TarFile, "extractall", killed)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive)
    assert list((isolated_cache / "extracted").iterdir()) == []
    monkeypatch.setattr(tarfile.TarFile, "extractall", real)
    assert (extract_archive(archive) / "toyset" / "train").is_dir()  # a later run extracts cleanly


def test_missing_and_corrupt_archives(tmp_path, isolated_cache):
    with pytest.raises(FileNotFoundError, match="nothere.tar.gz"):
        build_dataset(str(tmp_path / "nothere.tar.gz"), "train")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match=r"junk.tar.gz: not a readable tar archive"):
        extract_archive(junk)
