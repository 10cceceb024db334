"""Worked example (docs/writing-a-backend.md): a compiled kernel library called through ctypes.

``rowsoftmax.c`` beside this file is compiled with gcc on first use (into a cache folder) and its
row kernels are called on contiguous float32/float64 rows. What the adapter does for the kernel:

- moves the class axis last and makes the rows contiguous (``np.ascontiguousarray``): the suite
  passes transposed, strided and negatively strided views, and a C kernel reads memory linearly;
- allocates the output itself, so the input is never written (the suite checks bit for bit);
- handles the shapes the kernel does not: a 0-d input is one element; an empty axis gives an
  empty result (logsumexp: -inf);
- provides only the ops the library has: cross-entropy is not overridden, so it is "unsupported".

Run it:  softmaxbench check --plugin docs/examples/ctypes_kernel_backend.py --backends example-ctypes-kernel
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from softmaxbench.backends import Backend

SOURCE = Path(__file__).with_name("rowsoftmax.c")
_LIB = None


def _library() -> ctypes.CDLL:
    """Compile rowsoftmax.c once per source version (cached by its hash), then load it."""
    global _LIB
    if _LIB is None:
        digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
        cache = Path(os.environ.get("XDG_CACHE_HOME", tempfile.gettempdir())) / "softmaxbench-examples"
        cache.mkdir(parents=True, exist_ok=True)
        lib = cache / f"librowsoftmax-{digest}.so"
        if not lib.exists():
            tmp = lib.with_suffix(f".{os.getpid()}.tmp")
            subprocess.run(["gcc", "-O2", "-shared", "-fPIC", str(SOURCE), "-o", str(tmp), "-lm"],
                           check=True, capture_output=True)
            tmp.replace(lib)          # atomic: parallel workers never load a half-written file
        _LIB = ctypes.CDLL(str(lib))
    return _LIB


_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_PTR = ctypes.c_void_p
_SIZE = ctypes.c_size_t


class CtypesKernel(Backend):
    name = "example-ctypes-kernel"
    device = "cpu"
    dtypes = ("float32", "float64")
    conventions = {"nan_row_for_posinf": {"reason": "exp(x - max) with max = +inf is exp(inf - inf)",
                                          "link": ""}}

    def unavailable(self) -> str | None:
        if shutil.which("gcc") is None:
            return "needs gcc to compile rowsoftmax.c"
        return None

    def framework_version(self) -> str:
        """No Python distribution to look up (``framework``): report the compiler instead."""
        out = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True)
        return f"rowsoftmax.c, gcc {out.stdout.strip()}"

    # asarray / to_numpy / synchronize: the base class's (NumPy arrays in and out, no device).

    def _rows(self, x, axis):
        """(contiguous rows with the class axis last, how to put the axis back)."""
        moved = np.moveaxis(np.asarray(x), axis, -1)
        return np.ascontiguousarray(moved), moved.shape

    def _forward(self, kernel: str, x, axis: int, reduce: bool = False):
        x = np.asarray(x)
        if x.ndim == 0:                                   # one element along the axis
            out = self._forward(kernel, x.reshape(1), -1, reduce)
            return out.reshape(())
        rows, shape = self._rows(x, axis)
        n = shape[-1]
        count = int(np.prod(shape[:-1], dtype=np.int64))
        out = np.empty(shape[:-1] if reduce else shape, x.dtype)
        if n == 0:                                        # empty axis: nothing to compute
            out = np.full(out.shape, -np.inf, x.dtype) if reduce else out
        elif count:
            fn = getattr(_library(), f"{kernel}_{_SUFFIX[x.dtype]}")
            fn(_PTR(rows.ctypes.data), _PTR(out.ctypes.data), _SIZE(count), _SIZE(n))
        return out if reduce else np.moveaxis(out, -1, axis)

    def softmax(self, x, axis=-1):
        return self._forward("softmax", x, axis)

    def log_softmax(self, x, axis=-1):
        return self._forward("log_softmax", x, axis)

    def logsumexp(self, x, axis=-1):
        return self._forward("logsumexp", x, axis, reduce=True)

    def softmax_vjp(self, x, cotangent, axis=-1):
        x = np.asarray(x)
        if x.ndim == 0:
            return np.zeros_like(x)
        rows, shape = self._rows(x, axis)
        v, _ = self._rows(cotangent, axis)
        n = shape[-1]
        count = int(np.prod(shape[:-1], dtype=np.int64))
        g = np.empty(shape, x.dtype)
        if n and count:
            getattr(_library(), f"softmax_vjp_{_SUFFIX[x.dtype]}")(
                _PTR(rows.ctypes.data), _PTR(v.ctypes.data), _PTR(g.ctypes.data), _SIZE(count), _SIZE(n))
        return np.moveaxis(g, -1, axis)


def backends():
    return [CtypesKernel()]
