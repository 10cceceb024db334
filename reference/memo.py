"""Memos of what the judgement computes from the trusted side's inputs and exact values alone.

Every backend of a run is judged on the same case inputs against the same exact value, and the
error bound, the terms' scale, the exact value's spacing, the convention alternatives and the
model's unattainable elements depend on nothing else: they are computed once per (op, inputs,
exact) and reused. A comparison of an output is reused too when another backend returned the
same bytes (a third of a quick check's outputs).

The key is the CONTENT of the arrays (dtype, shape, strides and bytes of x, cotangent, target,
weight, the exact value, the output; axis, dtype and the other cross-entropy options), never an
object's identity: an input changed in place, rebuilt, or copied with dataclasses.replace gets
its own entry, and two inputs that share a case name but not their bytes never share one.
Anything else (array subclasses, object arrays, option values that are not plain str, int,
float, bool or None) is not memoized. What a memo holds is derived from the trusted process's
own arrays: an output a worker sent enters a key only as bytes, and the memoized result of a
comparison is a pure function of those bytes. Memory is bounded (least recently used entries
beyond :data:`MAX_BYTES` or :data:`MAX_ENTRIES` are dropped), and arrays handed out are read-only.

>>> import numpy as np
>>> from types import SimpleNamespace
>>> a = SimpleNamespace(x=np.zeros(3, np.float32), axis=-1)
>>> b = SimpleNamespace(x=np.ones(3, np.float32), axis=-1)
>>> inputs_key(a) == inputs_key(SimpleNamespace(x=np.zeros(3, np.float32), axis=-1))
True
>>> inputs_key(a) == inputs_key(b)
False
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

#: Bytes of arrays the memos keep at most (an entry larger than this is not kept).
MAX_BYTES: int = 64 * 2**20
#: Entries the memos keep at most.
MAX_ENTRIES: int = 20000

MISSING = object()
_PLAIN = (str, int, float, bool, type(None))


class Memo:
    """A thread-safe LRU map bounded by the bytes of the arrays its values hold and by entries."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_entries: int = MAX_ENTRIES):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._data: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        """The value stored for ``key``, or :data:`MISSING`."""
        with self._lock:
            hit = self._data.get(key, MISSING)
            if hit is MISSING:
                self.misses += 1
                return MISSING
            self._data.move_to_end(key)
            self.hits += 1
            return hit[0]

    def put(self, key, value, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[key] = (value, nbytes)
            self._bytes += nbytes
            while self._data and (self._bytes > self.max_bytes or len(self._data) > self.max_entries):
                _, (_, n) = self._data.popitem(last=False)
                self._bytes -= n

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)


MEMO = Memo()


def clear_memos() -> None:
    """Forget everything memoized (bounds, scales, prepared exact values, comparisons)."""
    MEMO.clear()


def own(a: np.ndarray) -> np.ndarray:
    """``a`` as a read-only array that owns its memory (a view is copied first: freezing it
    would freeze someone else's array)."""
    if a.base is not None:
        a = a.copy()
    a.flags.writeable = False
    return a


def frozen(value):
    """``value`` with its arrays read-only (an array; a tuple or dict of arrays and other values;
    an object whose attributes are arrays), and the bytes of those arrays."""
    if isinstance(value, np.ndarray):
        value = own(value)
        return value, value.nbytes
    if isinstance(value, tuple):
        value = tuple(own(v) if isinstance(v, np.ndarray) else v for v in value)
        return value, sum(v.nbytes for v in value if isinstance(v, np.ndarray))
    if isinstance(value, dict):
        value = {k: own(v) if isinstance(v, np.ndarray) else v for k, v in value.items()}
        return value, sum(v.nbytes for v in value.values() if isinstance(v, np.ndarray))
    total = 0
    for k, v in list(getattr(value, "__dict__", {}).items()):
        if isinstance(v, np.ndarray):
            v = own(v)
            object.__setattr__(value, k, v)
            total += v.nbytes
    return value, total


def memoized(key, compute):
    """``compute()``, or what it returned for ``key`` before (a None key: not memoized)."""
    if key is None:
        return compute()
    hit = MEMO.get(key)
    if hit is not MISSING:
        return hit
    value, nbytes = frozen(compute())
    MEMO.put(key, value, nbytes)
    return value


def array_key(h, a) -> bool:
    """Feed one array's dtype, shape, strides and bytes to the hash ``h`` (None: a marker);
    False when ``a`` is not a plain NumPy array of numbers."""
    if a is None:
        h.update(b"N")
        return True
    if type(a) is not np.ndarray or a.dtype.hasobject:
        return False
    h.update(repr((a.dtype.num, a.dtype.str, a.shape, a.strides)).encode())
    h.update(a.tobytes(order="A"))
    return True


def arrays_key(*arrays) -> bytes | None:
    """The content key of some arrays (or None values); None when one is not a plain array."""
    h = hashlib.blake2b(digest_size=20)
    for a in arrays:
        if not array_key(h, a):
            return None
    return h.digest()


def inputs_hash(inputs):
    """A blake2b hash of the content of ``inputs`` (its arrays' dtypes, shapes, strides and
    bytes, axis, dtype and the other cross-entropy options; a missing attribute and None are
    told apart), to be extended or digested; None (do not memoize) for anything but plain NumPy
    arrays and plain option values."""
    opts = getattr(inputs, "ce_options", MISSING)
    if opts is MISSING or opts is None:
        weight, plain = None, opts is None
    else:
        if type(opts) is not dict:
            return None
        weight = opts.get("weight")
        plain = [(k, v) for k, v in opts.items() if k != "weight"]
        if not all(type(k) is str and type(v) in _PLAIN for k, v in plain):
            return None
        plain = (sorted(plain), "weight" in opts)
    axis = getattr(inputs, "axis", MISSING)
    dtype = getattr(inputs, "dtype", MISSING)
    if axis is not MISSING and type(axis) not in (int, type(None)) or \
            dtype is not MISSING and type(dtype) not in (str, type(None)):
        return None
    meta = [plain, axis is MISSING, axis, dtype is MISSING, dtype]
    arrays = []
    for a in (getattr(inputs, "x", MISSING), getattr(inputs, "cotangent", MISSING),
              getattr(inputs, "target", MISSING), weight):
        if a is None or a is MISSING:
            meta.append(a is None)
            continue
        if type(a) is not np.ndarray or a.dtype.hasobject:
            return None
        meta.append((a.dtype.num, a.dtype.str, a.shape, a.strides))
        arrays.append(a)
    h = hashlib.blake2b(repr(meta).encode(), digest_size=20)
    for a in arrays:
        h.update(a.tobytes(order="A"))
    return h


def inputs_key(inputs) -> bytes | None:
    """The content key of ``inputs`` (:func:`inputs_hash`), or None."""
    h = inputs_hash(inputs)
    return None if h is None else h.digest()


def inputs_and_key(inputs, *arrays) -> bytes | None:
    """The content key of ``inputs`` and some arrays (an exact value, an output), or None."""
    h = inputs_hash(inputs)
    if h is None:
        return None
    h.update(b"and")
    for a in arrays:
        if not array_key(h, a):
            return None
    return h.digest()
