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


# ------------------------------------------------------------------ a busy machine
# OpenMP (torch's libgomp) reads OMP_WAIT_POLICY once, when it is loaded; OMP_DISPLAY_ENV=VERBOSE
# makes it print what it settled on, GOMP_SPINCOUNT included (0 = threads sleep at once).

INFO_REQUEST = '{"protocol": 1, "op": "info"}\n'


def _spin_count(argv: list[str], env: dict[str, str], stdin: str = "") -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300,
                            check=False, env={**env, "OMP_DISPLAY_ENV": "VERBOSE"})
    assert result.returncode == 0, result.stderr[-2000:]
    counts = [line.split("=", 1)[1].strip(" '") for line in result.stderr.splitlines()
              if line.strip().startswith("GOMP_SPINCOUNT")]
    if not counts:
        pytest.skip("this torch does not use GNU OpenMP (no GOMP_SPINCOUNT to read)")
    return counts[-1]


def _user_environment(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return {**env, **extra}


TORCH_OP = "import torch; torch.ones(1 << 16).sum()"


@pytest.mark.parametrize("entry", ["library", "worker"])
def test_chromatize_processes_sleep_instead_of_spinning_without_being_told(entry: str) -> None:
    env = _user_environment()
    assert _spin_count([sys.executable, "-c", TORCH_OP], env) != "0"  # torch alone spins
    if entry == "library":  # a notebook or napari: chromatize imported before torch
        argv = [sys.executable, "-c", f"import chromatize.pipeline; {TORCH_OP}"]
        assert _spin_count(argv, env) == "0"
    else:  # the editors' worker, which loads torch to answer
        argv = [sys.executable, "-m", "chromatize.worker"]
        assert _spin_count(argv, env, INFO_REQUEST) == "0"


def test_a_wait_policy_the_user_chose_is_kept() -> None:
    env = _user_environment(OMP_WAIT_POLICY="ACTIVE")
    argv = [sys.executable, "-c", f"import chromatize.pipeline; {TORCH_OP}"]
    assert _spin_count(argv, env) == "30000000000"


def test_worker_environments_make_any_child_sleep() -> None:
    env = engine.environment_for_workers(_user_environment())
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert _spin_count([sys.executable, "-c", TORCH_OP], env) == "0"  # even without chromatize
    chosen = engine.environment_for_workers(_user_environment(OMP_WAIT_POLICY="ACTIVE"))
    assert chosen["OMP_WAIT_POLICY"] == "ACTIVE"


# ------------------------------------------------------------------ colour hints in ONNX Runtime


def test_the_hint_graph_follows_torch_and_its_hints(cache: Path) -> None:
    import torch

    from chromatize.models.mobile import build_mobile

    torch.manual_seed(0)
    model = build_mobile(hints=True).eval()
    with torch.no_grad():  # a hint encoder that reacts (a fresh one may start at zero)
        for param in model.hint_encoder.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    runner = engine.onnx_engine(model, "hinted", 2, hints=True)  # checked against torch inside
    assert runner.takes_hints and sorted(cache.glob("hinted-hints-*.onnx"))
    lightness = torch.rand(1, 1, 64, 96) * 100
    hints = torch.zeros(1, 3, 64, 96)
    hints[0, :, 20:30, 40:50] = torch.tensor([0.5, -0.3, 1.0])[:, None, None]
    with torch.inference_mode():
        expected, plain = model(lightness, hints), model(lightness)
    got = runner(lightness, hints)
    error = float((got - expected).abs().max())
    assert error < engine.LOGIT_TOLERANCE
    effect = float((got - plain).abs().max())
    assert effect > 1e-2 and effect > 1000 * error  # the hints do reach the graph's output
    assert torch.allclose(runner(lightness), plain, atol=engine.LOGIT_TOLERANCE)  # None = none
    with pytest.raises(ValueError, match="no hint input"):
        engine.onnx_engine(model, "hinted", 2)(lightness, hints)


def test_hints_run_in_onnx_runtime_with_torch_colours(cache: Path) -> None:
    from chromatize.hints import Hints
    from chromatize.samples import sample_grayscale

    gray = sample_grayscale("astronaut")
    hints = Hints.from_points([(100, 120, "#2e8b57", 9), (400, 300, "#b22222", 5)])
    fast = Colorizer("mobile", device="cpu", engine="onnx")
    reference = Colorizer("mobile", device="cpu", engine="torch")
    a = fast.colorize(gray, hints=hints).astype(np.int16)
    assert fast._hint_runner() is not None and fast._hint_runner().takes_hints
    assert sorted(cache.glob("mobile-hints-*.onnx"))
    b = reference.colorize(gray, hints=hints).astype(np.int16)
    assert np.abs(a - b).max() <= 1
    assert (a != b).mean() < 1e-3


def test_a_cached_graph_runs_without_importing_the_exporter(cache: Path) -> None:
    """onnx (the exporter, ~1 s to import) is only loaded when a graph has to be exported."""
    Colorizer("mobile", device="cpu")  # exports into the cache
    probe = ("import sys; from chromatize.pipeline import Colorizer; "
             "c = Colorizer('mobile', device='cpu'); print(c.engine, 'onnx' in sys.modules)")
    import os

    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "CHROMATIZE_CACHE_DIR": str(cache.parent)},
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onnx", "False"]
