"""The ``scipy`` backend: ``scipy.special.softmax``, ``log_softmax`` and ``logsumexp``.

Cross-entropy is built on ``scipy.special.log_softmax`` (SciPy has none), gradients are analytic
from ``scipy.special.softmax``; both come from :class:`NumPyBackend`, which calls ``self.softmax``
and ``self.log_softmax``. bfloat16 is not offered, for NumPy's reason (and ``logsumexp`` returns
float64 for it).

>>> import numpy as np
>>> float(SciPyBackend().logsumexp(np.array([0.0, 0.0]), axis=-1))
0.6931471805599453
"""

from __future__ import annotations

from softmaxbench.backends.conventions import declared
from softmaxbench.backends.numpy_backend import NumPyBackend, quiet


def _special():
    import scipy.special  # lazily: scipy.special takes half a second to import

    return scipy.special


class SciPyBackend(NumPyBackend):
    """scipy.special's softmax family (CPU)."""

    name = "scipy"
    framework = "scipy"
    conventions = declared("scipy")

    @quiet
    def softmax(self, x, axis: int = -1):
        return _special().softmax(x, axis=axis)

    @quiet
    def log_softmax(self, x, axis: int = -1):
        return _special().log_softmax(x, axis=axis)

    @quiet
    def logsumexp(self, x, axis: int = -1):
        return _special().logsumexp(x, axis=axis)
