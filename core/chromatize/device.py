"""Choosing the torch device: explicit name, or "auto" = cuda -> mps -> cpu."""

from __future__ import annotations

import torch

from chromatize.errors import DeviceUnavailableError
from chromatize.options import DEVICE_CHOICES

__all__ = ["DEVICE_CHOICES", "available_devices", "cpu_has_native_bf16", "mps_available",
           "resolve_device"]


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX-512 BF16 / AMX; oneDNN's own
    check). Where it does not (AVX2-only CPUs), bfloat16 autocast is emulated and several times
    slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def available_devices() -> list[str]:
    """Device names usable on this machine, best first (always ends with "cpu")."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if mps_available():
        found.append("mps")
    return [*found, "cpu"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto"/"cpu"/"cuda[:N]"/"mps" into a torch.device, failing clearly if not present."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "device 'cuda' was requested but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); set «device» to cpu or auto"
            )
        return torch.device(name)
    if name == "mps":
        if not mps_available():
            raise DeviceUnavailableError(
                "device 'mps' was requested but Apple MPS is not available here; "
                "set «device» to cpu or auto"
            )
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceUnavailableError(
        f"unknown «device» {device!r}; choose one of {', '.join(DEVICE_CHOICES)}"
    )
