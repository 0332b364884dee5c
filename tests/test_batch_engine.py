"""The ONNX Runtime engine against torch, with the real shipped ``mobile`` model and real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chromatize import engine
from chromatize.pipeline import Colorizer

pytest.importorskip("onnxruntime")


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(tmp_path))
    engine.clear_engines()
    yield tmp_path / "onnx"
    engine.clear_engines()


@pytest.mark.parametrize("name", ["coffee", "astronaut", "chelsea"])
def test_onnx_colours_match_torch_within_one_unit(cache: Path, name: str) -> None:
    from chromatize.samples import sample_grayscale

    gray = sample_grayscale(name)
    fast = Colorizer("mobile", device="cpu", engine="onnx")
    reference = Colorizer("mobile", device="cpu", engine="torch")
    assert (fast.engine, reference.engine) == ("onnx", "torch") and reference.runner is None
    a = fast.colorize(gray).astype(np.int16)
    b = reference.colorize(gray).astype(np.int16)
    assert np.abs(a - b).max() <= 1
    assert (a != b).mean() < 1e-3  # nearly all pixels are identical
    # batched calls (several images in one ONNX Runtime call) agree as well
    batch = fast.colorize_batch([gray, gray[:, ::-1].copy()], batch_size=2)
    assert np.abs(batch[0].astype(np.int16) - b).max() <= 1


def test_auto_uses_onnx_on_cpu_and_caches_the_export(cache: Path) -> None:
    assert Colorizer("mobile", device="cpu").engine == "onnx"
    graphs = sorted(cache.glob("mobile-*.onnx"))
    assert len(graphs) == 1
    sidecar = json.loads(graphs[0].with_suffix(".json").read_text())
    assert sidecar["format"] == engine.EXPORT_FORMAT
    assert not list(cache.glob(".*"))  # no temporary files left


def test_a_damaged_cache_file_is_rebuilt_not_trusted(cache: Path) -> None:
    Colorizer("mobile", device="cpu", engine="onnx")
    (graph,) = cache.glob("mobile-*.onnx")
    good = graph.read_bytes()
    graph.write_bytes(good[: len(good) // 2])  # a half-copied cache
    engine.clear_engines()
    colorizer = Colorizer("mobile", device="cpu", engine="onnx")
    assert colorizer.engine == "onnx"
    assert graph.read_bytes() == good  # exported again and checked against torch


def test_sessions_never_spin() -> None:
    options = engine.session_options(2)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


def test_an_unregistered_module_and_other_devices_use_torch(cache: Path) -> None:
    module = Colorizer("mobile", device="cpu", engine="torch").model
    assert Colorizer(module).engine == "torch"
    import torch

    with pytest.raises(engine.EngineUnavailableError, match="runs on the CPU"):
        engine.select_engine("onnx", module, torch.device("cuda"), "mobile", registered=True)


FALLBACK = """
import sys, warnings
sys.modules["onnxruntime"] = None  # as if it were not installed
from chromatize.pipeline import Colorizer
from chromatize.failures import describe_failure
from chromatize.engine import EngineUnavailableError
with warnings.catch_warnings():
    warnings.simplefilter("error")
    print(Colorizer("mobile", device="cpu").engine)
try:
    Colorizer("mobile", device="cpu", engine="onnx")
except EngineUnavailableError as exc:
    print(describe_failure(exc, "cli").message)
"""


def test_without_onnxruntime_auto_falls_back_to_torch_and_onnx_says_why(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "CHROMATIZE_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True,
                            env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "torch"
    assert "--engine onnx needs ONNX Runtime" in lines[1]
    assert "pip install 'chromatize[onnx]'" in lines[1]
