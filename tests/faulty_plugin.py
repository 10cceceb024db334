"""Test double: the source of a one-file plugin with an honest softmax backend and a faulty one
that segfaults on rank-4 inputs and hangs on rank-3 ones (the isolation tests of the Python API
and the pytest plugin write it to a file and name it as a plugin)."""


def faulty_plugin_source(prefix: str, *, zeros_for_normal_rows: bool = False, absent: bool = False) -> str:
    """``{prefix}-honest`` and ``{prefix}-faulty`` (plus ``{prefix}-absent``, unavailable, with
    ``absent``); the faulty one returns zeros for a finite 2-D input with ``zeros_for_normal_rows``."""
    zeros = ("        if x.ndim == 2 and np.isfinite(x).all():\n"
             "            return np.zeros_like(x)\n") if zeros_for_normal_rows else ""
    extra = f'''

class Absent(Honest):
    name = "{prefix}-absent"

    def unavailable(self):
        return "needs the {prefix}-absent accelerator"
''' if absent else ""
    return f'''
import ctypes, time
import numpy as np
from softmaxbench.backends import Backend


class Honest(Backend):
    name = "{prefix}-honest"
    dtypes = ("float32",)

    def softmax(self, x, axis=-1):
        x64 = x.astype(np.float64)
        with np.errstate(invalid="ignore"):
            e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
            return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


class Faulty(Honest):
    name = "{prefix}-faulty"

    def softmax(self, x, axis=-1):
        if x.ndim == 4:
            ctypes.string_at(0)
        if x.ndim == 3:
            time.sleep(600)
{zeros}        return super().softmax(x, axis)
{extra}

def backends():
    return [Honest(), Faulty(){", Absent()" if absent else ""}]
'''
