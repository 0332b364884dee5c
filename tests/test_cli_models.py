"""``chromatize models`` and ``chromatize models download`` through their argparse registration."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from eccv16_layout import eccv16_spec, random_official_state_dict
from local_http import LocalServer, Route

from chromatize.cli import models as models_cli
from chromatize.errors import ChromatizeError
from chromatize.registry import MODELS


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture()
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    yield srv
    srv.close()


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chromatize")
    models_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_models_lists_every_model_with_status(
    capsys: pytest.CaptureFixture[str], isolated_cache: Path
) -> None:
    assert run_cli(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "SIZE", "LICENCE", "DESCRIPTION"]
    rows = {line.split()[0]: line.split() for line in lines[1:3]}
    assert rows["eccv16"][1:4] == ["downloadable", "-", "BSD-2-Clause"]
    assert rows["mobile"][1] in ("shipped", "missing")
    assert f"weights cache: {isolated_cache}" in out


def test_download_via_cli_then_listed_as_cached(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], isolated_cache: Path,
) -> None:  # fmt: skip
    path = tmp_path / "w.pth"
    torch.save(random_official_state_dict(seed=5), path)
    data = path.read_bytes()
    server.state.routes["/w.pth"] = Route(data)
    spec = eccv16_spec(server.url("/w.pth"), hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(MODELS, spec.name, spec)

    assert run_cli(["models", "download", spec.name]) == 0
    assert "saved" in capsys.readouterr().out
    assert (isolated_cache / spec.filename).read_bytes() == data

    assert run_cli(["models", "download", spec.name]) == 0
    assert "already downloaded" in capsys.readouterr().out
    assert len(server.state.log) == 1

    assert run_cli(["models", "download", spec.name, "--force"]) == 0
    assert "saved" in capsys.readouterr().out
    assert len(server.state.log) == 2

    run_cli(["models"])
    row = next(line.split() for line in capsys.readouterr().out.splitlines()
               if line.startswith(spec.name))  # fmt: skip
    assert row[1] == "cached" and row[2:4] == [f"{len(data) / 1e6:.1f}", "MB"]


def test_download_errors_are_chromatize_errors(server: LocalServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spec = eccv16_spec(server.url("/missing.pth"), "9b330a0b")
    monkeypatch.setitem(MODELS, spec.name, spec)
    with pytest.raises(ChromatizeError, match="HTTP 404"):
        run_cli(["models", "download", spec.name])


def test_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["models", "download", "nope"])
    assert info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
