"""Cheap availability probes that import no framework: is a module installed, is there a CUDA device.

``softmaxbench list`` must not import torch, jax or cupy, and must not initialise CUDA in a process
that later forks workers, so the GPU adapters ask these first and import their framework only
when everything here says yes.

>>> module_missing("numpy") is None
True
>>> module_missing("surely_not_installed_xyz")
'surely_not_installed_xyz is not installed'
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from functools import cache
from importlib import metadata


def module_missing(module: str, hint: str = "") -> str | None:
    """'<module> is not installed[ (hint)]' when ``module`` cannot be found, else None (no import)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails, or a broken __spec__
        found = False
    if found:
        return None
    return f"{module} is not installed" + (f" ({hint})" if hint else "")


def distribution_version(*names: str) -> str:
    """Version of the first installed distribution among ``names``; '' when none is."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


def distribution_of(module: str) -> str:
    """The installed distribution that provides top-level ``module`` (e.g. cupy -> cupy-cuda12x)."""
    dists = metadata.packages_distributions().get(module) or []
    return dists[0] if dists else ""


@cache
def cuda_device_problem() -> str | None:
    """Why no CUDA device is usable here (one line), or None when the driver reports one.

    Asks NVML, as ``torch.cuda.is_available`` can, because NVML does not create a CUDA context:
    a context in the parent process would break CUDA in the workers the runner forks.

    >>> cuda_device_problem() is None or cuda_device_problem().startswith("no CUDA device")
    True
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"no CUDA device (CUDA_VISIBLE_DEVICES={visible!r} hides every device)"
    nvml = None
    for lib in ("libnvidia-ml.so.1", "libnvidia-ml.so", "nvml.dll"):
        try:
            nvml = ctypes.CDLL(lib)
            break
        except OSError:
            continue
    if nvml is None:
        return "no CUDA device (no NVIDIA driver: libnvidia-ml.so.1 not found)"
    try:
        rc = nvml.nvmlInit_v2()
        if rc != 0:
            return f"no CUDA device (nvmlInit failed with NVML error {rc})"
        count = ctypes.c_uint(0)
        rc = nvml.nvmlDeviceGetCount_v2(ctypes.byref(count))
        nvml.nvmlShutdown()
    except AttributeError as exc:  # a driver too old for the _v2 entry points
        return f"no CUDA device (unusable NVML: {exc})"
    if rc != 0:
        return f"no CUDA device (nvmlDeviceGetCount failed with NVML error {rc})"
    if count.value == 0:
        return "no CUDA device (the NVIDIA driver reports 0 devices)"
    return None
