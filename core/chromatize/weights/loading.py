"""Resolving and loading weights: explicit path -> cache -> shipped -> download, safely read.

Loading is safe: ``torch.load(weights_only=True)`` for ``.pth`` files and ``safetensors`` for ours.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from chromatize.errors import ModelUnavailableError, WeightsError
from chromatize.registry import ModelSpec, WeightsFormat
from chromatize.weights.downloading import download_into
from chromatize.weights.finding import (
    cached_path,
    describe_expected_hash,
    spec_of,
    verified_cache_file,
    verify_sha256,
)

if TYPE_CHECKING:
    import torch
    from torch import nn


def resolve_weights(
    spec: ModelSpec,
    path: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    progress: bool = True,
) -> Path:
    """The weights file to use for ``spec``: explicit ``path`` → cache → shipped → download.

    An explicit path is used as is (no hash check; it must exist). Cached and shipped files are
    checked against ``spec.sha256`` when it is set. Downloading happens only with
    ``allow_download``; otherwise a missing model raises :class:`ModelUnavailableError` that says
    how to get it.
    """
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise WeightsError(f"weights file {explicit} does not exist or is not a file")
        return explicit

    cached = cached_path(spec)
    if cached.is_file():
        return verified_cache_file(spec, cached)

    shipped = spec.shipped_path()
    if shipped is not None and shipped.is_file():
        verify_sha256(shipped, spec.sha256)
        return shipped

    if spec.url is None:
        if spec.training_command:
            raise ModelUnavailableError(
                f"the {spec.name!r} model has no weights here (looked at {cached}); train them "
                f"with `{spec.training_command}` (the train extra; it writes them there) or give "
                "a weights file («weights=PATH»)"
            )
        if spec.shipped is not None:
            raise ModelUnavailableError(
                f"the embedded model {spec.name!r} is not in this build of chromatize "
                f"(no {spec.shipped} in the package, nothing at {cached}); use another model "
                f"(e.g. eccv16) or give a weights file («weights=PATH»)"
            )
        raise ModelUnavailableError(
            f"model {spec.name!r} has no weights here (looked at {cached}) and no download URL; "
            f"give a weights file («weights=PATH»)"
        )
    if not allow_download:
        raise ModelUnavailableError(
            f"model {spec.name!r} is not downloaded yet (looked at {cached}). Run "
            f"`chromatize models download {spec.name}`, or allow downloading "
            f"(«allow_download=True»), or fetch {spec.url} yourself and give it as the weights "
            f"file («weights=PATH»)"
        )
    return download_into(spec, cached, progress=progress)


def _format_for(path: Path, default: WeightsFormat) -> WeightsFormat:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return "pth"
    return default


def load_state_dict(
    path: str | os.PathLike[str], fmt: WeightsFormat | None = None
) -> dict[str, torch.Tensor]:
    """Read a state dict safely: ``torch.load(weights_only=True)`` or ``safetensors``.

    ``fmt`` defaults to the file's suffix. A file that is not a readable state dict of tensors
    raises :class:`WeightsError` naming it.
    """
    import torch

    path = Path(path)
    fmt = fmt or _format_for(path, "pth")
    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist") from None
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which we never do: do not pass it on.
        raise WeightsError(
            f"cannot read weights file {path} as {fmt}: it is corrupted, or it holds pickled "
            "objects other than tensors, which chromatize refuses to load for safety"
        ) from None
    except Exception as exc:  # zip, EOF, safetensors header errors: all mean "unreadable"
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise WeightsError(
            f"cannot read weights file {path} as {fmt} ({type(exc).__name__}: {detail}); "
            "the file is corrupted, truncated or in another format"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            f"weights file {path} does not hold a plain state dict (a mapping of parameter names "
            f"to tensors) but a {type(state).__name__}"
        )
    return dict(state)


def _fit_errors(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """What stops ``state`` from loading strictly into ``model`` (empty if it fits)."""
    expected = model.state_dict()
    problems: list[str] = []

    def listed(keys: list[str]) -> str:
        shown = ", ".join(keys[:5])
        return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    optional = set(getattr(model, "optional_state_keys", ()))
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing:
        problems.append(f"{len(missing)} missing keys ({listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({listed(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({listed(shapes)})")
    return problems


def _non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The floating-point tensors of ``state`` holding inf or NaN: one of them makes every
    output NaN (gray or garbage photos, not an error)."""
    import torch

    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def load_model(
    name: str | ModelSpec,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    allow_download: bool = False,
) -> nn.Module:
    """Build model ``name``, load its weights (see :func:`resolve_weights`), return it in eval mode.

    ``name`` is a registered model name (or a :class:`ModelSpec`). ``weights`` is an explicit file
    for the architecture (no hash check). A file that is corrupted or does not fit the
    architecture raises :class:`WeightsError` naming the file, the expected hash and what did not
    match.
    """
    spec = spec_of(name)
    path = resolve_weights(spec, weights, allow_download=allow_download)
    if weights is not None:
        hash_note = "an explicit file, not hash-checked"
    else:
        hash_note = describe_expected_hash(spec.sha256)
    state = load_state_dict(path, _format_for(path, spec.weights_format))
    # a model class whose sizes are choices of its training (the SOM baseline) reads them from
    # the weights; every other class takes no arguments
    shaped = getattr(spec.model_type(), "for_state_dict", None)
    model = shaped(state) if callable(shaped) else spec.build()
    problems = _fit_errors(model, state)
    if problems:
        raise WeightsError(
            f"weights file {path} ({hash_note}) does not fit the {spec.name!r} architecture: "
            + "; ".join(problems)
        )
    broken = _non_finite(state)
    if broken:
        shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        raise WeightsError(
            f"weights file {path} ({hash_note}) holds non-finite values (inf or NaN) in {shown}: "
            "every colour would come out NaN; re-export it from a checkpoint that trained well"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"weights file {path} ({hash_note}) cannot be loaded: {exc}") from None
    validate = getattr(model, "validate_weights", None)
    if callable(validate):
        validate(f"weights file {path} ({hash_note})")
    return model.to(device).eval()
