"""core.device: auto picks CUDA only when it is visible; CUDA asked for on a machine without it is
one DeviceUnavailableError naming the CPU fallback; an unknown name lists the choices."""
from __future__ import annotations

import pytest
import torch

from ddkit.core import device
from ddkit.core.device import DeviceUnavailableError, require_cuda, resolve_device


@pytest.mark.parametrize("visible, expected", [(False, torch.device("cpu")),
                                               (True, torch.device("cuda", 3))])
def test_auto_follows_what_is_visible(monkeypatch, visible, expected):
    monkeypatch.setattr(device.torch.cuda, "is_available", lambda: visible)
    assert resolve_device("auto", local_rank=3) == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_device_names_the_cpu_fallback(monkeypatch):
    monkeypatch.setattr(device.torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match=r"no CUDA device.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceUnavailableError, match=r"^the profile's device is cuda but"):
        require_cuda("the profile's device is cuda")


def test_an_unknown_device_lists_the_choices():
    with pytest.raises(ValueError, match=r"'tpu'.*\['auto', 'cpu', 'cuda'\]"):
        resolve_device("tpu")
