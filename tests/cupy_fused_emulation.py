"""A NumPy emulation of the ``cupy-fused`` CUDA kernels, step by step, to test their algorithm
where there is no GPU.

It splits each row among threads exactly as the kernel does (``cupy_fused.launch_plan``: a warp
or a block per row, 16-byte vectors), runs each thread's online maximum/sum recurrence in the
kernel's order in the kernel's accumulation dtype (float32 for float16/bfloat16/float32, float64
for float64), merges the threads' states with the same butterfly over lanes and the same
reduction across warps, then writes the outputs with the kernel's formulas and rounding. What it
cannot reproduce is the GPU's exp/log rounding and fused multiply-adds: the tests compare it with
the reference, not bit for bit with the device.

:class:`FusedEmulation` is a CPU ``Backend`` (not registered: a test instrument), so the whole
case catalogue can run against the algorithm:

>>> import numpy as np
>>> b = FusedEmulation()
>>> y = b.softmax(np.log(np.arange(1, 5000, dtype=np.float32)), axis=-1)   # one block per row
>>> bool(abs(float(y.sum(dtype=np.float64)) - 1) < 1e-5), y.dtype
(True, dtype('float32'))
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from softmaxbench.backends import textbook
from softmaxbench.backends.base import Backend
from softmaxbench.backends.cupy_fused import launch_plan
from softmaxbench.reference.dtypes import dtype_name, np_dtype

AUX_NONE, AUX_SCALED, AUX_PLAIN = 0, 1, 2
AUX_OF_OP = {"softmax_vjp": AUX_SCALED, "log_softmax_vjp": AUX_PLAIN, "cross_entropy_grad": AUX_PLAIN}


@dataclass
class State:
    """Per-thread (or merged) online state: running maximum, sum of exp(x - m), third accumulator."""

    m: np.ndarray
    s: np.ndarray
    aux: np.ndarray


def _acc(dtype: str):
    return np.float64 if dtype == "float64" else np.float32


def _nanmax(a, b):
    """The kernel's maximum, which propagates NaN."""
    return np.where((a > b) | np.isnan(a), a, b)


def _identity(shape, acc) -> State:
    return State(np.full(shape, -np.inf, acc), np.zeros(shape, acc), np.zeros(shape, acc))


def _merge(a: State, b: State, aux_kind: int) -> State:
    m = _nanmax(a.m, b.m)
    dead = m == -np.inf  # only -inf seen on both sides: both sums are 0
    fa, fb = np.exp(a.m - m), np.exp(b.m - m)
    zero = np.zeros_like(m)
    s = np.where(dead, zero, a.s * fa + b.s * fb)
    if aux_kind == AUX_PLAIN:
        aux = a.aux + b.aux
    elif aux_kind == AUX_SCALED:
        aux = np.where(dead, zero, a.aux * fa + b.aux * fb)
    else:
        aux = zero
    return State(m, s, aux)


def _warp_allreduce(st: State, aux_kind: int) -> State:
    """Butterfly over the last axis (32 lanes); every lane then takes lane 0's result."""
    for offset in (16, 8, 4, 2, 1):
        partner = np.arange(32) ^ offset
        st = _merge(st, State(st.m[..., partner], st.s[..., partner], st.aux[..., partner]), aux_kind)
    return State(st.m[..., 0], st.s[..., 0], st.aux[..., 0])


def _allreduce(st: State, aux_kind: int) -> State:
    """(rows, threads) states -> (rows,): warp butterflies, then one across the warps' results."""
    rows, threads = st.m.shape
    warps = threads // 32
    per_warp = _warp_allreduce(State(*(a.reshape(rows, warps, 32) for a in (st.m, st.s, st.aux))), aux_kind)
    if warps == 1:
        return State(per_warp.m[:, 0], per_warp.s[:, 0], per_warp.aux[:, 0])
    lanes = _identity((rows, 32), st.m.dtype)
    lanes.m[:, :warps], lanes.s[:, :warps], lanes.aux[:, :warps] = per_warp.m, per_warp.s, per_warp.aux
    return _warp_allreduce(lanes, aux_kind)


def _by_thread(a: np.ndarray, threads: int, vector: int):
    """(rows, n) -> (rows, iterations, threads, vector) in the order threads visit vectors, and the
    (iterations, threads) mask of the vectors that exist (thread t takes vectors t, t + threads, ...)."""
    rows, n = a.shape
    packs = n // vector
    iterations = -(-packs // threads)
    padded = np.zeros((rows, iterations * threads * vector), a.dtype)
    padded[:, :n] = a
    valid = (np.arange(iterations * threads) < packs).reshape(iterations, threads)
    return padded.reshape(rows, iterations, threads, vector), valid


def online_state(x: np.ndarray, threads: int, vector: int, aux_kind: int = AUX_NONE,
                 aux_input: np.ndarray | None = None) -> State:
    """Sweep 1 of the kernel on rows ``x`` (accumulator dtype) and the merge: one State per row."""
    acc = x.dtype.type
    xs, valid = _by_thread(x, threads, vector)
    avs = _by_thread(aux_input, threads, vector)[0] if aux_input is not None else np.zeros_like(xs)
    st = _identity(xs.shape[:1] + (threads,), acc)
    for it in range(xs.shape[1]):
        xv, av, ok = xs[:, it], avs[:, it], valid[it][None, :]
        vmax = xv[..., 0]
        for i in range(1, vector):
            vmax = _nanmax(vmax, xv[..., i])
        grow = ok & ~(vmax <= st.m)  # a larger value, or a NaN: rescale once
        m_new = _nanmax(st.m, vmax)
        f = np.exp(st.m - m_new)
        st.s = np.where(grow, st.s * f, st.s)
        if aux_kind == AUX_SCALED:
            st.aux = np.where(grow, st.aux * f, st.aux)
        st.m = np.where(grow, m_new, st.m)
        if aux_kind == AUX_PLAIN:
            for i in range(vector):
                st.aux = np.where(ok, st.aux + av[..., i], st.aux)
        live = ok & (st.m != -np.inf)
        for i in range(vector):
            e = np.exp(xv[..., i] - st.m)
            st.s = np.where(live, st.s + e, st.s)
            if aux_kind == AUX_SCALED:
                st.aux = np.where(live, st.aux + e * av[..., i], st.aux)
    return _allreduce(st, aux_kind)


def _plain_sum(values: np.ndarray, threads: int) -> np.ndarray:
    """The kernel's strided per-thread sums (element j to thread j % threads) and their reduction."""
    vs, valid = _by_thread(values, threads, 1)
    acc = np.zeros((values.shape[0], threads), values.dtype)
    for it in range(vs.shape[1]):
        acc = np.where(valid[it][None, :], acc + vs[:, it, :, 0], acc)
    st = State(np.full_like(acc, -np.inf), np.zeros_like(acc), acc)
    return _allreduce(st, AUX_PLAIN).aux


class FusedEmulation(Backend):
    """The cupy-fused kernels' algorithm in NumPy (CPU), for tests."""

    name = "cupy-fused-emulation"
    device = "cpu"
    dtypes = ("float16", "bfloat16", "float32", "float64")
    framework = "numpy"
    conventions = ("nan_row_for_posinf",)

    def asarray(self, a):
        return np.asarray(a)

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _rows(a: np.ndarray, axis: int):
        """(contiguous (n_rows, n_cols) rows with ``axis`` last, their shape before flattening);
        a 0-d input is one row of one element, as in cupy_fused."""
        moved = np.moveaxis(a, axis, -1) if a.ndim else a.reshape(1)
        n_cols = moved.shape[-1]
        return np.ascontiguousarray(moved).reshape(prod(moved.shape[:-1]), n_cols), moved.shape

    @staticmethod
    def _plan(op: str, rows: np.ndarray, itemsize: int):
        return launch_plan(rows.shape[0], rows.shape[1], itemsize, op, aligned=True)

    def _elementwise(self, op: str, x, axis: int, cotangent=None):
        dtype = dtype_name(x.dtype)
        acc = _acc(dtype)
        rows, moved_shape = self._rows(x, axis)
        out = np.empty(rows.shape, acc)
        if rows.size:
            plan = self._plan(op, rows, x.dtype.itemsize)
            xa = rows.astype(acc)
            va = self._rows(cotangent, axis)[0].astype(acc) if cotangent is not None else None
            with np.errstate(all="ignore"):
                st = online_state(xa, plan.threads, plan.vector, AUX_OF_OP.get(op, AUX_NONE), va)
                m, s, aux = st.m[:, None], st.s[:, None], st.aux[:, None]
                if op == "softmax":
                    out = np.exp(xa - m) / s
                elif op == "log_softmax":
                    out = (xa - m) - np.log(s)
                elif op == "softmax_vjp":
                    out = np.exp(xa - m) / s * (va - aux / s)
                else:  # log_softmax_vjp
                    out = va - np.exp(xa - m) / s * aux
        y = out.astype(np_dtype(dtype)).reshape(moved_shape)
        return np.moveaxis(y, -1, axis) if x.ndim else y.reshape(())

    def softmax(self, x, axis: int = -1):
        return self._elementwise("softmax", x, axis)

    def log_softmax(self, x, axis: int = -1):
        return self._elementwise("log_softmax", x, axis)

    def softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._elementwise("softmax_vjp", x, axis, cotangent)

    def log_softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._elementwise("log_softmax_vjp", x, axis, cotangent)

    def logsumexp(self, x, axis: int = -1):
        dtype = dtype_name(x.dtype)
        acc = _acc(dtype)
        rows, moved_shape = self._rows(x, axis)
        if rows.shape[1] == 0 or rows.shape[0] == 0:
            return np.full(moved_shape[:-1], -np.inf, np_dtype(dtype))
        plan = self._plan("logsumexp", rows, x.dtype.itemsize)
        with np.errstate(all="ignore"):
            st = online_state(rows.astype(acc), plan.threads, plan.vector)
            lse = np.where(st.m == np.inf, st.m, st.m + np.log(st.s))
        return lse.astype(np_dtype(dtype)).reshape(moved_shape[:-1])

    # -- cross-entropy -------------------------------------------------------------------------
    def _ce_parts(self, logits, target, ignore_index, weight, label_smoothing):
        """Rows, per-element class masses a_j = q'_j w_j, per-row label weights and ignored mask."""
        dtype = dtype_name(logits.dtype)
        acc = _acc(dtype)
        rows = np.ascontiguousarray(logits).reshape(-1, logits.shape[-1]).astype(acc)
        n_rows, n_cols = rows.shape
        eps = acc(label_smoothing)
        w = None if weight is None else np.asarray(weight).astype(acc)
        probs = not textbook.is_index_target(target)
        if probs:
            q = np.asarray(target).reshape(-1, n_cols).astype(acc)
            ignored = np.zeros(n_rows, bool)
            labels = np.full(n_rows, -1)
        else:
            labels = np.asarray(target).reshape(-1)
            textbook.check_class_indices(np, labels, n_cols, ignore_index)
            ignored = labels == ignore_index if ignore_index is not None else np.zeros(n_rows, bool)
            labels = np.where(ignored, 0, labels)
            q = (np.arange(n_cols)[None, :] == labels[:, None]).astype(acc)
        if eps > 0:
            q = q * (acc(1) - eps) + eps / acc(n_cols)
        mass = q if w is None else q * w[None, :]
        w_label = np.ones(n_rows, acc) if (w is None or probs) else w[labels]
        return dtype, acc, rows, mass, w_label, ignored, labels, probs

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        textbook._check_options(reduction, label_smoothing)
        dtype, acc, rows, mass, w_label, ignored, labels, probs = self._ce_parts(
            logits, target, ignore_index, weight, label_smoothing)
        n_rows = rows.shape[0]
        loss = np.zeros(n_rows, acc)
        if rows.size:
            plan = self._plan("cross_entropy", rows, logits.dtype.itemsize)
            with np.errstate(all="ignore"):
                st = online_state(rows, plan.threads, plan.vector)
                log_s = np.log(st.s)
                if not probs and label_smoothing == 0:  # -log_softmax = log(s) - (x - m)
                    loss = w_label * (log_s - (rows[np.arange(n_rows), labels] - st.m))
                else:  # skip a_j = 0: 0 * inf would be NaN
                    terms = np.where(mass != 0, mass * (log_s[:, None] - (rows - st.m[:, None])), acc(0))
                    loss = _plain_sum(terms, plan.threads)
        loss = np.where(ignored, acc(0), loss)
        row_weight = np.where(ignored, acc(0), acc(1) if probs else w_label)
        with np.errstate(all="ignore"):
            if reduction == "none":
                out = loss.reshape(logits.shape[:-1])
            elif reduction == "sum":
                out = loss.sum(dtype=acc)
            else:
                out = loss.sum(dtype=acc) / row_weight.sum(dtype=acc)
        return np.asarray(out).astype(np_dtype(dtype))

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        textbook._check_options(reduction, label_smoothing)
        dtype, acc, rows, mass, w_label, ignored, labels, probs = self._ce_parts(
            logits, target, ignore_index, weight, label_smoothing)
        scale = 1.0
        if reduction == "mean":  # as cupy_fused computes it: a Python float, cast in the kernel
            denom = float(rows.shape[0]) if probs else float(np.where(ignored, 0, w_label).sum())
            scale = 1.0 / denom if denom else 0.0
        out = np.zeros(rows.shape, acc)
        if rows.size:
            plan = self._plan("cross_entropy_grad", rows, logits.dtype.itemsize)
            with np.errstate(all="ignore"):
                st = online_state(rows, plan.threads, plan.vector, AUX_PLAIN, mass)
                prob = np.exp(rows - st.m[:, None]) / st.s[:, None]
                out = acc(scale) * (st.aux[:, None] * prob - mass)
            out = np.where(ignored[:, None], acc(0), out)
        return out.astype(np_dtype(dtype)).reshape(logits.shape)
