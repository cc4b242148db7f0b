"""The torch device a run or an analysis asks for, and the one error when CUDA is asked for on a
machine without it. ``auto`` picks CUDA when a device is visible, else the CPU."""
from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")
CPU_HINT = "run on the CPU with --device cpu (device: cpu in a profile)"


class DeviceUnavailableError(RuntimeError):
    """CUDA is asked for and no CUDA device is visible."""


def require_cuda(why: str = "device 'cuda' asked for") -> None:
    """Raise ``DeviceUnavailableError`` (naming ``why`` and the CPU fallback) unless CUDA is
    visible."""
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(f"{why} but no CUDA device is visible; {CPU_HINT}")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` as a device; CUDA is this process's GPU (``local_rank``).
    An unknown name is a ValueError naming the choices."""
    if name not in DEVICES:
        raise ValueError(f"device {name!r}; choose one of {list(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    require_cuda()
    return torch.device("cuda", local_rank)
