"""Worked example (docs/writing-a-backend.md): a lazy framework, JAX with jit on the CPU.

JAX dispatches asynchronously: an op returns an array whose value may not be computed yet. The
contract says the work is done when ``synchronize()`` returns, so the adapter keeps the last
result and blocks on it there (``to_numpy`` also waits, by reading the values). Otherwise:

- ``jax_enable_x64`` is switched on (in the worker that imports this plugin), or float64 inputs
  would silently become float32 (the suite reports "every finite value is a float32 number");
- each op is jitted once per (shape, dtype, options), as a JAX user's training step would be;
- gradients come from ``jax.vjp``; cross-entropy is written out with the formulas of the
  contract (weights, ignore_index, label smoothing, the mean's divisor);
- an option the adapter does not implement raises NotImplementedError ("unsupported"): here,
  weights together with probability targets;
- a class index out of range must raise: inside jit an index is clamped silently, so the adapter
  checks the targets before dispatching.

Run it:  softmaxbench check --plugin docs/examples/lazy_jax_backend.py --backends example-jax-lazy
"""

from __future__ import annotations

from functools import partial

import numpy as np

from softmaxbench.backends import Backend


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _cross_entropy(logits, target, reduction, label_smoothing, ignore_index, weight):
    """PyTorch's semantics (docs/writing-a-backend.md, "Cross-entropy"), class axis last."""
    jnp = _jax().numpy
    C = logits.shape[-1]
    logp = _jax().nn.log_softmax(logits, axis=-1)
    w = jnp.ones(C, logits.dtype) if weight is None else weight
    eps = label_smoothing
    if jnp.issubdtype(target.dtype, jnp.integer):
        keep = jnp.ones(target.shape, bool) if ignore_index is None else target != ignore_index
        t = jnp.where(keep, target, 0)
        picked = jnp.take_along_axis(logp, t[..., None], axis=-1)[..., 0]
        loss = -(1 - eps) * w[t] * picked - eps / C * (w * logp).sum(-1)
        loss = jnp.where(keep, loss, 0)
        divisor = jnp.where(keep, w[t], 0).sum()
    else:
        q = (1 - eps) * target + eps / C
        loss = -(w * q * logp).sum(-1)
        divisor = loss.size
    if reduction == "none":
        return loss
    return loss.sum() / divisor if reduction == "mean" else loss.sum()


class JaxLazy(Backend):
    name = "example-jax-lazy"
    device = "cpu"
    dtypes = ("float32", "float64")
    framework = "jax"
    conventions = ("nan_row_for_posinf", "nan_for_zero_mass_neginf", "nan_for_all_ignored",
                   "flushed_subnormals")

    def __init__(self):
        self._last = None
        self._compiled = {}

    def unavailable(self) -> str | None:
        try:
            import jax  # noqa: F401
        except ImportError:
            return "needs jax (pip install jax)"
        return None

    def asarray(self, a):
        return _jax().device_put(np.asarray(a))

    def to_numpy(self, x):
        return np.asarray(x)                       # reading the values waits for them

    def synchronize(self) -> None:
        if self._last is not None:
            _jax().block_until_ready(self._last)   # the work is done when this returns

    def _run(self, key, build, *arrays):
        if key not in self._compiled:
            self._compiled[key] = _jax().jit(build())
        self._last = self._compiled[key](*arrays)
        return self._last

    def _sig(self, *arrays):
        return tuple(None if a is None else (a.shape, str(a.dtype)) for a in arrays)

    # -- forward -----------------------------------------------------------------------------------
    def softmax(self, x, axis=-1):
        return self._run(("softmax", axis, self._sig(x)), lambda: partial(_jax().nn.softmax, axis=axis), x)

    def log_softmax(self, x, axis=-1):
        return self._run(("log_softmax", axis, self._sig(x)),
                         lambda: partial(_jax().nn.log_softmax, axis=axis), x)

    def logsumexp(self, x, axis=-1):
        return self._run(("logsumexp", axis, self._sig(x)),
                         lambda: partial(_jax().scipy.special.logsumexp, axis=axis), x)

    def _ce_fn(self, target, options):
        if options.get("weight") is not None and not np.issubdtype(target.dtype, np.integer):
            raise NotImplementedError("weights with probability targets")
        if np.issubdtype(target.dtype, np.integer):
            # Indexing clamps out-of-range indices inside jit; the contract says raise.
            t = np.asarray(target)
            bad = (t < 0) | (t >= self._classes)
            if options.get("ignore_index") is not None:
                bad &= t != options["ignore_index"]
            if bad.any():
                raise ValueError(f"class index {int(t[bad][0])} out of range [0, {self._classes})")
        opts = dict(reduction="mean", label_smoothing=0.0, ignore_index=None)
        opts.update({k: v for k, v in options.items() if k != "weight"})
        return partial(_cross_entropy, **opts)

    def cross_entropy(self, logits, target, **options):
        self._classes = logits.shape[-1]
        fn = self._ce_fn(target, options)
        w = options.get("weight")
        key = ("ce", tuple(sorted((k, v) for k, v in options.items() if k != "weight")),
               self._sig(logits, target, w))
        return self._run(key, lambda: lambda x, t, w: fn(x, t, weight=w), logits, target, w)

    # -- gradients -------------------------------------------------------------------------------
    def _vjp(self, key, f, x, cotangent):
        def build():
            def grad(x, v):
                out, pullback = _jax().vjp(f, x)
                return pullback(v)[0]
            return grad
        return self._run(key, build, x, cotangent)

    def softmax_vjp(self, x, cotangent, axis=-1):
        return self._vjp(("softmax_vjp", axis, self._sig(x)), partial(_jax().nn.softmax, axis=axis),
                         x, cotangent)

    def log_softmax_vjp(self, x, cotangent, axis=-1):
        return self._vjp(("log_softmax_vjp", axis, self._sig(x)),
                         partial(_jax().nn.log_softmax, axis=axis), x, cotangent)

    def cross_entropy_grad(self, logits, target, **options):
        self._classes = logits.shape[-1]
        fn = self._ce_fn(target, options)
        w = options.get("weight")
        key = ("ce_grad", tuple(sorted((k, v) for k, v in options.items() if k != "weight")),
               self._sig(logits, target, w))

        def build():
            def grad(x, t, w):
                return _jax().grad(lambda x: fn(x, t, weight=w).sum())(x)
            return grad
        return self._run(key, build, logits, target, w)


def backends():
    return [JaxLazy()]
