"""An example one-file softmaxbench plugin: copy it next to the CI template and replace the body
of each op with a call into your own kernel.

softmaxbench loads this file with ``--plugin softmaxbench_plugin.py`` and calls ``backends()``.
Operations you do not override are recorded as ``unsupported``, not as failures.
"""

import numpy as np

from softmaxbench.backends import Backend


class MyKernel(Backend):
    name = "my-kernel"
    device = "cpu"
    dtypes = ("float32", "float64")
    framework = "numpy"

    def softmax(self, x, axis=-1):
        shifted = x - np.max(x, axis=axis, keepdims=True)
        e = np.exp(shifted)
        return e / np.sum(e, axis=axis, keepdims=True)

    def log_softmax(self, x, axis=-1):
        shifted = x - np.max(x, axis=axis, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def backends():
    return [MyKernel()]
