"""Worked example (docs/writing-a-backend.md): an eager array library, PyTorch on the CPU.

Every point of the contract that an eager framework meets, in one small adapter:

- ``asarray`` receives NumPy arrays: logits, cotangents, class-index targets (int64),
  probability targets and class weights all come through it. bfloat16 arrives as an
  ``ml_dtypes.bfloat16`` array, which torch cannot read directly (view it as int16); negatively
  strided views (``x[:, ::-1]``) are refused by ``torch.from_numpy``, so they are copied first;
- ``to_numpy`` returns the same dtype (bfloat16 back through int16);
- the gradients are autograd's; the class axis of cross-entropy is last in the protocol and dim 1
  in PyTorch; ``ignore_index=None`` means "nothing ignored" (PyTorch's default -100 would ignore
  a target of -100);
- an option combination the adapter does not handle raises NotImplementedError inside the op,
  which the suite records as "unsupported" (here: label smoothing with probability targets).

Run it:  softmaxbench check --plugin docs/examples/eager_torch_backend.py --backends example-torch-eager
"""

from __future__ import annotations

import numpy as np

from softmaxbench.backends import Backend

NOTHING_IGNORED = -(2**63)


class TorchEager(Backend):
    name = "example-torch-eager"
    device = "cpu"
    dtypes = ("bfloat16", "float32", "float64")
    framework = "torch"
    conventions = {"nan_row_for_posinf": {"reason": "torch.softmax computes exp(inf - inf) for a +inf row",
                                          "link": "https://github.com/pytorch/pytorch/issues/6864"},
                   "nan_for_zero_mass_neginf": {"reason": "-(q * log_softmax).sum() evaluates 0 * -inf",
                                                "link": ""}}

    def unavailable(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "needs torch (pip install torch)"
        return None

    def asarray(self, a):
        import ml_dtypes
        import torch

        a = np.asarray(a)
        if any(s < 0 for s in a.strides) or not a.flags.writeable:
            a = np.ascontiguousarray(a).copy()       # torch.from_numpy: no negative strides
        if a.dtype == ml_dtypes.bfloat16:
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)

    def to_numpy(self, x):
        import ml_dtypes
        import torch

        t = x.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()

    # -- forward ---------------------------------------------------------------------------------
    def softmax(self, x, axis=-1):
        import torch

        return torch.softmax(x, dim=axis)

    def log_softmax(self, x, axis=-1):
        import torch

        return torch.log_softmax(x, dim=axis)

    def logsumexp(self, x, axis=-1):
        import torch

        return torch.logsumexp(x, dim=axis)

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        import torch

        if label_smoothing and target.dtype.is_floating_point:
            raise NotImplementedError("label smoothing with probability targets")
        if logits.ndim >= 2:                         # protocol: classes last; torch: classes at dim 1
            logits = logits.movedim(-1, 1)
            if target.dtype.is_floating_point:
                target = target.movedim(-1, 1)
        return torch.nn.functional.cross_entropy(
            logits, target, weight=weight, reduction=reduction, label_smoothing=label_smoothing,
            ignore_index=NOTHING_IGNORED if ignore_index is None else ignore_index)

    # -- gradients: autograd of the forward ops ----------------------------------------------------
    def _vjp(self, fn, x, cotangent):
        import torch

        leaf = x.detach().clone().requires_grad_(True)
        out = fn(leaf)
        (grad,) = torch.autograd.grad(out, leaf, cotangent if cotangent is not None else torch.ones_like(out))
        return grad

    def softmax_vjp(self, x, cotangent, axis=-1):
        return self._vjp(lambda t: self.softmax(t, axis), x, cotangent)

    def log_softmax_vjp(self, x, cotangent, axis=-1):
        return self._vjp(lambda t: self.log_softmax(t, axis), x, cotangent)

    def cross_entropy_grad(self, logits, target, **options):
        if options.get("reduction") == "none":       # d(sum of the per-sample losses) / d logits
            return self._vjp(lambda t: self.cross_entropy(t, target, **options).sum(), logits, None)
        return self._vjp(lambda t: self.cross_entropy(t, target, **options), logits, None)


def backends():
    return [TorchEager()]
