"""Where the network's forward pass runs: torch (the reference) or ONNX Runtime (faster on CPU).

The ``engine`` setting (:data:`chromatize.options.SETTINGS`) is ``auto``, ``torch`` or ``onnx``.
``auto`` uses ONNX Runtime for a registered model on the CPU when ``onnxruntime`` and ``onnx``
are installed (the ``onnx`` extra) and torch everywhere else (CUDA runs torch in float16, MPS
torch); ``onnx`` insists and fails with a clear message when it cannot; ``torch`` never uses
ONNX Runtime. Colour hints run in ONNX Runtime as well, through a second graph with a hint
input (exported and checked like the first, at the first call with hints, for models that accept
hints); where that graph cannot be made, hints run in torch.

Why ONNX Runtime: the same ``mobile`` weights run about 3-6x faster than torch eager at batch 1
on a 2-core CPU (``benchmarks/RESULTS.md``) with logits within 1e-4, colours within one unit of
8-bit output; it is a regular, well-kept package with wheels for Linux, macOS and Windows on
x86-64 and ARM64 and every supported Python. It stays an extra because a missing wheel must not
make chromatize uninstallable: torch is always there to fall back on.

The ONNX file is exported from the loaded torch model at first use and cached in
``cache_dir()/onnx``, named by a hash of the model class, the export format and the weights
themselves, written atomically with a sidecar holding its sha256: a file whose hash does not
match (damaged, half-copied) is rebuilt, never trusted. Every export is checked against torch
on two render shapes before it is used. ONNX Runtime runs without spinning threads
(``session.intra_op.allow_spinning=0``): spinning collapses on a machine whose cores are busy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from chromatize.atomic import replacing
from chromatize.errors import ChromatizeError
from chromatize.models.contract import OUTPUT_BINS, output_kind
from chromatize.options import ENGINE_CHOICES

#: Bump when the exported graph changes (names, opset, wrapper): old cache files are not reused.
EXPORT_FORMAT = 1
OPSET = 17
#: Largest difference of logits between the export and torch accepted when checking an export.
LOGIT_TOLERANCE = 5e-3

_SESSIONS: dict[tuple[str, int, bool], OnnxEngine] = {}
_SESSIONS_LOCK = threading.Lock()


class EngineUnavailableError(ChromatizeError):
    """``engine="onnx"`` was asked for but cannot be used here (message says why and what to do)."""


def _installed(name: str) -> bool:
    """Whether ``import name`` would find the package (None in sys.modules blocks an import)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def onnx_available() -> str | None:
    """None if ONNX Runtime and the exporter can be used, else what is missing (for messages).

    Looks the packages up without importing them: ``onnx`` alone takes ~1 s to import (its
    ml_dtypes extension), and it is only needed when a graph is exported, not when the cached
    one is loaded."""
    missing = [name for name in ("onnxruntime", "onnx") if not _installed(name)]
    if missing:
        return (f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed "
                "(pip install 'chromatize[onnx]')")
    return None


def weights_key(model: nn.Module) -> str:
    """Hash of the model's class, the export format and every weight (the cache file's name)."""
    digest = hashlib.sha256(f"{type(model).__qualname__}/{EXPORT_FORMAT}/{OPSET}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class _LightnessOnly(nn.Module):
    """The model's forward without the optional hints argument (what the export traces)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        return self.model(lightness)


class _WithHints(_LightnessOnly):
    """The model's forward with its hints argument (the hint graph's two inputs)."""

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.model(lightness, hints)


def _example_hints(shape: tuple[int, ...], generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """Contract hints (N, 3, H, W) for L of ``shape``: ab / 110 in [-1, 1] on ~5 % of pixels."""
    n, _, h, w = shape
    mask = (torch.rand(n, 1, h, w, generator=generator) < 0.05).float()
    ab = torch.rand(n, 2, h, w, generator=generator) * 2.0 - 1.0
    return torch.cat((ab * mask, mask), dim=1)


def _example_shapes(stride: int) -> list[tuple[int, int, int, int]]:
    """Render shapes an export is traced at and checked on (landscape, portrait, batch 2)."""
    return [(1, 1, 6 * stride, 9 * stride), (2, 1, 5 * stride, 4 * stride)]


def export_onnx(model: nn.Module, *, hints: bool = False) -> bytes:
    """The model as an ONNX graph (any batch size, any render shape that is a stride multiple);
    with ``hints``, a graph with a second input ``hints`` (the contract's hint tensor)."""
    stride = int(model.stride)
    shape = _example_shapes(stride)[0]
    example: tuple[torch.Tensor, ...] = (torch.rand(shape) * 100.0,)
    names = ["lightness"]
    axes = {"lightness": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h4", 3: "w4"}}
    if hints:
        example += (_example_hints(shape),)
        names.append("hints")
        axes["hints"] = {0: "n", 2: "h", 3: "w"}
    wrapper = _WithHints(model) if hints else _LightnessOnly(model)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper.eval(), example, buffer, input_names=names, output_names=["logits"],
            opset_version=OPSET, dynamo=False, dynamic_axes=axes,
        )
    return buffer.getvalue()


def session_options(threads: int) -> Any:
    """ONNX Runtime options: ``threads`` intra-op threads that sleep instead of spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _array(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


class OnnxEngine:
    """One ONNX Runtime session of one model; calling it runs the forward pass (thread-safe).

    ``hints``: the graph takes the contract's hint tensor as a second input."""

    name = "onnx"

    def __init__(self, graph: bytes, threads: int, *, hints: bool = False) -> None:
        import onnxruntime as ort

        self.threads = threads
        self.takes_hints = hints
        self.session = ort.InferenceSession(graph, session_options(threads),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, lightness: torch.Tensor, hints: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Logits (N, 313, H/4, W/4) for L (N, 1, H, W) and, for a hint graph, hints
        (N, 3, H, W; None = no hints), as a CPU float32 tensor."""
        feed = {"lightness": _array(lightness)}
        if self.takes_hints:
            if hints is None:
                hints = lightness.new_zeros((lightness.shape[0], 3, *lightness.shape[-2:]))
            feed["hints"] = _array(hints)
        elif hints is not None:
            raise ValueError("this ONNX graph has no hint input")
        (logits,) = self.session.run(["logits"], feed)
        return torch.from_numpy(logits)


def check_export(engine: OnnxEngine, model: nn.Module) -> float:
    """Largest logit difference between ``engine`` and ``model`` on the example shapes; raises
    :class:`EngineUnavailableError` above :data:`LOGIT_TOLERANCE`."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in _example_shapes(int(model.stride)):
        lightness = torch.rand(shape, generator=generator) * 100.0
        inputs = (lightness, _example_hints(shape, generator)) if engine.takes_hints else (
            lightness,)
        with torch.inference_mode():
            expected = model(*inputs).float()
        got = engine(*inputs)
        if got.shape != expected.shape:
            raise EngineUnavailableError(f"the ONNX export gives logits of shape "
                                         f"{tuple(got.shape)}, torch {tuple(expected.shape)}")
        worst = max(worst, float((got - expected).abs().max()))
    if worst > LOGIT_TOLERANCE:
        raise EngineUnavailableError(f"the ONNX export's logits differ from torch's by {worst:.3g}"
                                     f" (more than {LOGIT_TOLERANCE}); use «engine» torch")
    return worst


def cache_folder() -> Path:
    """Where exported graphs are kept: ``onnx/`` in the weights cache directory."""
    from chromatize.weights.finding import cache_dir

    return cache_dir() / "onnx"


def _read_cached(path: Path) -> bytes | None:
    """The cached graph if it and its sidecar agree (sha256), else None (missing or damaged)."""
    try:
        graph = path.read_bytes()
        recorded = json.loads(path.with_suffix(".json").read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return graph if hashlib.sha256(graph).hexdigest() == recorded else None


def _write_cached(path: Path, graph: bytes) -> None:
    """Store the graph and then its sidecar, each atomically; a cache we cannot write is skipped
    (the export is used from memory)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_bytes(graph)
        sidecar = {"sha256": hashlib.sha256(graph).hexdigest(), "format": EXPORT_FORMAT,
                   "opset": OPSET, "torch": torch.__version__}
        with replacing(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(sidecar) + "\n")
    except OSError:
        pass


def onnx_engine(model: nn.Module, label: str, threads: int, *, hints: bool = False
                ) -> OnnxEngine:
    """The ONNX Runtime engine for ``model`` (exported and cached on first use, reused after);
    ``hints``: the graph with a hint input (for models that accept hints)."""
    problem = onnx_available()
    if problem:
        raise EngineUnavailableError(f"«engine» onnx needs ONNX Runtime: {problem}")
    key = weights_key(model)
    with _SESSIONS_LOCK:
        engine = _SESSIONS.get((key, threads, hints))
        if engine is not None:
            return engine
        path = cache_folder() / f"{label}{'-hints' if hints else ''}-{key[:24]}.onnx"
        graph = _read_cached(path)
        fresh = graph is None
        if fresh:
            graph = export_onnx(model, hints=hints)
        try:
            engine = OnnxEngine(graph, threads, hints=hints)
        except Exception as exc:  # ONNX Runtime's own errors have no common base class
            raise EngineUnavailableError(f"ONNX Runtime cannot load the exported {label!r} "
                                         f"model ({type(exc).__name__}: {exc})") from None
        if fresh:
            check_export(engine, model)
            _write_cached(path, graph)
        _SESSIONS[(key, threads, hints)] = engine
        return engine


def hint_engine(runner: OnnxEngine, model: nn.Module, label: str) -> OnnxEngine | None:
    """The hint graph's engine beside ``runner`` (same model and threads), or None (with a
    warning) when it cannot be made: hints then run in torch."""
    try:
        return onnx_engine(model, label, runner.threads, hints=True)
    except Exception as exc:  # an export failure must not stop colorization with hints
        warnings.warn(f"chromatize: colour hints for the {label!r} model run in torch "
                      f"(no ONNX hint graph: {type(exc).__name__}: {exc})", RuntimeWarning,
                      stacklevel=2)
        return None


def select_engine(requested: str, model: nn.Module, device: torch.device, label: str,
                  *, registered: bool) -> OnnxEngine | None:
    """The engine ``requested`` means here: an :class:`OnnxEngine`, or None for torch.

    ``auto`` falls back to torch (with a warning if an export failed) where ONNX Runtime cannot
    run the model; ``onnx`` raises :class:`EngineUnavailableError` instead.
    """
    if requested not in ENGINE_CHOICES:
        raise EngineUnavailableError(f"unknown «engine» {requested!r}; choose one of "
                                     f"{', '.join(ENGINE_CHOICES)}")
    if requested == "torch":
        return None
    if output_kind(model) != OUTPUT_BINS:
        if requested == "onnx":
            raise EngineUnavailableError(f"«engine» onnx runs the 313-bin models; the {label!r} "
                                         "baseline runs in torch (use «engine» auto or torch)")
        return None
    if device.type != "cpu":
        if requested == "onnx":
            raise EngineUnavailableError(f"«engine» onnx runs on the CPU, not on {device}; "
                                         "use «device» cpu, or «engine» auto or torch")
        return None
    if requested == "auto" and (not registered or onnx_available()):
        return None
    threads = max(1, torch.get_num_threads())
    try:
        return onnx_engine(model, label, threads)
    except EngineUnavailableError:
        if requested == "onnx":
            raise
    except Exception as exc:  # an export failure must not stop colorization under "auto"
        if requested == "onnx":
            raise EngineUnavailableError(f"cannot export the {label!r} model to ONNX "
                                         f"({type(exc).__name__}: {exc}); use «engine» torch"
                                         ) from None
    warnings.warn(f"chromatize: ONNX Runtime is unavailable for the {label!r} model; using torch",
                  RuntimeWarning, stacklevel=2)
    return None


def clear_engines() -> None:
    """Forget the ONNX Runtime sessions of this process."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


def environment_for_workers(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: a copy of os.environ) with ``OMP_WAIT_POLICY=PASSIVE`` unless the user
    chose a policy: what chromatize's own processes start with, before torch is imported."""
    result = dict(os.environ if env is None else env)
    result.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return result
