"""chromatize.atomic.replacing: the final name holds either the old file or the complete new one."""

from __future__ import annotations

import pytest

from chromatize.atomic import replacing


def test_replaces_only_after_the_block_succeeds(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with replacing(target, ".json.tmp") as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # not yet
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failing_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"precious")
    with pytest.raises(RuntimeError, match="half written"):
        with replacing(target) as tmp:
            tmp.write_bytes(b"par")
            raise RuntimeError("half written")
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]


def test_creates_a_file_that_did_not_exist(tmp_path):
    target = tmp_path / "new.pt"
    with replacing(target) as tmp:
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"


def test_the_final_file_gets_the_permissions_of_a_plain_open(tmp_path):
    import os
    import stat

    plain = tmp_path / "plain.json"
    plain.write_text("x")
    target = tmp_path / "report.json"
    with replacing(target) as tmp:
        tmp.write_text("y")
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # private while incomplete
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert os.access(target, os.R_OK)
