"""The ``jax-cpu`` and ``jax-gpu`` backends: ``jax.nn`` and ``jax.scipy.special``, all jitted.

``jax.nn.softmax``, ``jax.nn.log_softmax``, ``jax.scipy.special.logsumexp``, a cross-entropy built
on ``jax.nn.log_softmax`` with PyTorch's semantics (JAX has none of its own), and every gradient
by ``jax.vjp``. Each op is compiled ahead of time per (shapes, dtypes, options) with
``jit(...).lower(...).compile()``, so compile seconds land in ``compile_times`` (the optional hook
of ``softmaxbench.backends.base``) and never in a timed call.

float64 needs ``jax_enable_x64``, a process-wide flag: it is switched on at first use, before the
first array is made (otherwise float64 inputs silently become float32).

Executables are kept on disk when ``SOFTMAXBENCH_JAX_EXECUTABLES`` names a directory (``check``
and ``hunt`` set it to ``$XDG_CACHE_HOME/softmaxbench/jax-exec``; ``bench`` does not, it reports
compile times; see :class:`ExecutableCache`): a second run loads each one (2-5 ms) instead of
tracing, lowering and fetching it from JAX's own compilation cache (20-80 ms each; a quick check
has 251).

>>> import numpy as np
>>> b = JaxCPU()
>>> y = b.to_numpy(b.softmax(b.asarray(np.zeros(2)), axis=-1))
>>> y, y.dtype
(array([0.5, 0.5]), dtype('float64'))
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from softmaxbench.backends import textbook
from softmaxbench.backends.availability import cuda_device_problem, distribution_version, module_missing
from softmaxbench.backends.base import Backend
from softmaxbench.backends.conventions import declared

CUDA_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt", "jax-cuda13-pjrt")


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


# -- the ops as pure functions of arrays (static options are keyword-only) ------------------------
def _softmax(x, *, axis):
    return _jax().nn.softmax(x, axis=axis)


def _log_softmax(x, *, axis):
    return _jax().nn.log_softmax(x, axis=axis)


def _logsumexp(x, *, axis):
    return _jax().scipy.special.logsumexp(x, axis=axis)


def _cross_entropy(logits, target, weight, *, reduction, label_smoothing, ignore_index):
    jax = _jax()
    return textbook.cross_entropy(jax.numpy, jax.nn.log_softmax(logits, axis=-1), target,
                                  reduction=reduction, label_smoothing=label_smoothing,
                                  ignore_index=ignore_index, weight=weight)


def _vjp(forward, x, cotangent):
    _, pullback = _jax().vjp(forward, x)
    return pullback(cotangent)[0]


def _softmax_vjp(x, cotangent, *, axis):
    return _vjp(partial(_softmax, axis=axis), x, cotangent)


def _log_softmax_vjp(x, cotangent, *, axis):
    return _vjp(partial(_log_softmax, axis=axis), x, cotangent)


def _cross_entropy_grad(logits, target, weight, **options):
    jnp = _jax().numpy
    loss, pullback = _jax().vjp(lambda a: _cross_entropy(a, target, weight, **options), logits)
    return pullback(jnp.ones_like(loss))[0]  # ones: reduction="none" is summed first


_FUNCTIONS = {"softmax": _softmax, "log_softmax": _log_softmax, "logsumexp": _logsumexp,
              "cross_entropy": _cross_entropy, "softmax_vjp": _softmax_vjp,
              "log_softmax_vjp": _log_softmax_vjp, "cross_entropy_grad": _cross_entropy_grad}


#: The environment variable naming the executable cache's directory (unset: no cache).
EXEC_CACHE_ENV = "SOFTMAXBENCH_JAX_EXECUTABLES"
_MAGIC = b"sbjx1\n"


class ExecutableCache:
    """Compiled executables on disk, one file per (op, shapes, dtypes, options), in a
    subdirectory per environment (jax and jaxlib versions, device, XLA flags, and the source of
    the functions compiled: an edit of this file or of ``textbook`` starts a new one).

    A file is ``magic + sha256(payload) + payload`` (the payload is JAX's own serialization,
    ``jax.experimental.serialize_executable``); it is written to a temporary name and renamed,
    so a reader never sees half a file, and a file whose digest does not match (truncated,
    corrupt) is ignored and rewritten. Like JAX's compilation cache (machine code, loaded and
    run), the directory is trusted by the worker that reads it: it lives in the user's cache
    and the trusted process never reads it (it judges the outputs, whatever ran).
    """

    def __init__(self, root: str | os.PathLike, platform: str):
        jax = _jax()
        import jaxlib

        here = Path(__file__).parent
        source = b"".join((here / f).read_bytes() for f in ("jax_backend.py", "textbook.py"))
        device = jax.devices(platform)[0]
        kind = str(getattr(device, "device_kind", ""))
        env = "|".join([jax.__version__, jaxlib.__version__, platform, kind,
                        os.environ.get("XLA_FLAGS", ""), str(jax.config.jax_enable_x64),
                        hashlib.sha256(source).hexdigest()])
        self.dir = Path(root) / hashlib.sha256(env.encode()).hexdigest()[:24]
        # XLA:CPU serializes an executable that JAX's own cache gave back without its kernels
        # (loading it elsewhere fails: "Function wrapped_reduce not found"): this cache replaces
        # that one in this process, so what is stored here was always compiled here.
        jax.config.update("jax_enable_compilation_cache", False)
        self.platform = platform
        self.hits = self.misses = 0
        if not self.dir.is_dir():
            self._prune_stale(Path(root))

    @staticmethod
    def _prune_stale(root: Path, days: float = 14.0) -> None:
        """Remove other environments' subdirectories unused for ``days`` (an edit or an upgrade
        leaves its predecessor's behind; best effort)."""
        import shutil

        cutoff = time.time() - days * 86400
        try:
            for d in root.iterdir():
                if d.is_dir() and d.stat().st_mtime < cutoff:
                    shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass

    def _path(self, key: tuple) -> Path:
        return self.dir / (hashlib.sha256(repr(key).encode()).hexdigest()[:32] + ".xla")

    def load(self, key: tuple):
        """The executable stored for ``key``, or None (absent, corrupt, or not loadable here)."""
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        head = len(_MAGIC) + 32
        payload = data[head:]
        if data[:len(_MAGIC)] != _MAGIC or hashlib.sha256(payload).digest() != data[len(_MAGIC):head]:
            return None
        try:
            import pickle

            from jax.experimental.serialize_executable import deserialize_and_load

            blob, in_tree, out_tree = pickle.loads(payload)  # our own file, digest checked
            executable = deserialize_and_load(blob, in_tree, out_tree, backend=self.platform)
        except Exception:  # noqa: BLE001 - a stale or foreign entry: compile afresh
            return None
        self.hits += 1
        if self.hits == 1:
            try:
                os.utime(self.dir)  # in use: not stale
            except OSError:
                pass
        return executable

    def store(self, key: tuple, executable) -> None:
        """Keep ``executable`` for ``key`` (best effort: a full disk or a read-only cache is no error)."""
        self.misses += 1
        try:
            import pickle

            from jax.experimental.serialize_executable import serialize

            payload = pickle.dumps(serialize(executable), protocol=pickle.HIGHEST_PROTOCOL)
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self._path(key)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except Exception:  # noqa: BLE001 - the cache is an optimization only
            pass


class JaxBackend(Backend):
    """jitted JAX on ``platform`` ("cpu" or "gpu"); subclasses fix the platform."""

    framework = "jax"
    dtypes = ("float16", "bfloat16", "float32", "float64")
    platform = "cpu"

    def __init__(self) -> None:
        self.compile_times: dict[tuple[str, tuple[int, ...], str], float] = {}
        self._executables: dict[tuple, Any] = {}
        self._last: Any = None  # the latest result, for synchronize()
        self._disk: ExecutableCache | None | bool = None  # built at the first compile

    def _disk_cache(self) -> ExecutableCache | None:
        if self._disk is None:
            root = os.environ.get(EXEC_CACHE_ENV)
            try:
                self._disk = ExecutableCache(root, self.platform) if root else False
            except Exception:  # noqa: BLE001 - no cache, not no backend
                self._disk = False
        return self._disk or None

    def unavailable(self) -> str | None:
        return module_missing("jax", "pip install jax")

    def _device(self):
        return _jax().devices(self.platform)[0]

    # -- data movement -----------------------------------------------------------------------
    def asarray(self, a: Any) -> Any:
        jax = _jax()
        if isinstance(a, jax.Array):
            return jax.device_put(a, self._device())
        return jax.device_put(np.asarray(a), self._device())

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def synchronize(self) -> None:
        # JAX dispatches asynchronously and has no device-wide barrier: wait for the latest result.
        if self._last is not None:
            _jax().block_until_ready(self._last)

    # -- harness hooks (see Backend) -----------------------------------------------------------
    def copy(self, src, dst):
        """JAX arrays are immutable: a jitted copy into a new buffer (dst is only its shape)."""
        jax = _jax()
        key = ("copy", src.shape, str(src.dtype))
        fn = self._executables.get(key)
        if fn is None:
            fn = self._executables[key] = jax.jit(lambda a: a.copy()).lower(src).compile()
        self._last = fn(src)
        return self._last

    def threads_in_use(self) -> int | None:
        import os

        if self.device == "gpu":
            return None
        nproc = os.environ.get("NPROC", "")  # XLA:CPU sizes its pool from NPROC, else every core
        return int(nproc) if nproc.isdigit() and int(nproc) > 0 else os.cpu_count()

    # -- compile once per (op, arrays' shapes and dtypes, options), then run ------------------
    def _run(self, op: str, arrays: tuple, **options):
        arrays = tuple(None if a is None else self.asarray(a) if isinstance(a, np.ndarray) else a
                       for a in arrays)
        signature = tuple(None if a is None else (a.shape, str(a.dtype)) for a in arrays)
        key = (op, signature, tuple(sorted(options.items())))
        executable = self._executables.get(key)
        if executable is None:
            jax = _jax()
            start = time.perf_counter()
            disk = self._disk_cache()
            executable = disk.load(key) if disk else None
            if executable is not None:
                try:  # the first run of a loaded executable: one that cannot run is compiled afresh
                    self._last = jax.block_until_ready(executable(*arrays))
                except Exception:  # noqa: BLE001 - a real error of the op comes again below
                    executable = None
                else:
                    self._record_compile(op, arrays, start)
                    self._executables[key] = executable
                    return self._last
            if executable is None:
                executable = jax.jit(partial(_FUNCTIONS[op], **options)).lower(*arrays).compile()
                if disk:
                    disk.store(key, executable)
            self._record_compile(op, arrays, start)
            self._executables[key] = executable
        self._last = executable(*arrays)
        return self._last

    def _record_compile(self, op: str, arrays: tuple, start: float) -> None:
        x = arrays[0]
        timing_key = (op, tuple(x.shape), str(x.dtype))
        self.compile_times[timing_key] = self.compile_times.get(timing_key, 0.0) + time.perf_counter() - start

    def softmax(self, x, axis: int = -1):
        return self._run("softmax", (x,), axis=axis)

    def log_softmax(self, x, axis: int = -1):
        return self._run("log_softmax", (x,), axis=axis)

    def logsumexp(self, x, axis: int = -1):
        return self._run("logsumexp", (x,), axis=axis)

    def _ce(self, op, logits, target, reduction, label_smoothing, ignore_index, weight):
        if textbook.is_index_target(target):  # a gather in jit cannot raise; PyTorch does
            # on the host: jax.numpy would compile four little kernels per target shape
            textbook.check_class_indices(np, np.asarray(target), logits.shape[-1], ignore_index)
        target = self.asarray(target)
        return self._run(op, (logits, target, weight), reduction=reduction,
                         label_smoothing=float(label_smoothing),
                         ignore_index=None if ignore_index is None else int(ignore_index))

    def cross_entropy(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                      ignore_index=None, weight=None):
        return self._ce("cross_entropy", logits, target, reduction, label_smoothing, ignore_index, weight)

    def softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._run("softmax_vjp", (x, cotangent), axis=axis)

    def log_softmax_vjp(self, x, cotangent, axis: int = -1):
        return self._run("log_softmax_vjp", (x, cotangent), axis=axis)

    def cross_entropy_grad(self, logits, target, *, reduction="mean", label_smoothing=0.0,
                           ignore_index=None, weight=None):
        return self._ce("cross_entropy_grad", logits, target, reduction, label_smoothing, ignore_index,
                        weight)


class JaxCPU(JaxBackend):
    """jitted JAX on the CPU (XLA:CPU)."""

    name = "jax-cpu"
    device = "cpu"
    platform = "cpu"
    conventions = declared("jax-cpu")


class JaxGPU(JaxBackend):
    """jitted JAX on the first CUDA device (XLA:GPU)."""

    name = "jax-gpu"
    device = "gpu"
    platform = "gpu"
    conventions = declared("jax-gpu")

    def unavailable(self) -> str | None:
        missing = module_missing("jax", "pip install 'jax[cuda12]'")
        if missing:
            return missing
        problems = []
        device = cuda_device_problem()
        if device:
            problems.append(device)
        # CUDA comes as a PJRT plugin distribution (older jaxlib builds carried it: "+cuda").
        if not (distribution_version(*CUDA_PLUGINS) or "cuda" in distribution_version("jaxlib")):
            problems.append("jax has no CUDA plugin installed (pip install 'jax[cuda12]')")
        if problems:
            return "; ".join(problems)
        try:
            self._device()
        except RuntimeError as exc:
            return f"jax sees no GPU ({str(exc).splitlines()[0]})"
        return None
