"""The sandbox of a worker that runs third-party code (a ``--plugin``, an entry point, discovery).

Process isolation keeps a plugin's memory away from the judge, but the plugin still runs as the
same user: it could write the trusted process's ``--out`` (found through ``/proc/<ppid>``), its
discovery cache (poisoning a later run), the softmaxbench code the trusted process imports
later, or signal the trusted process (SIGSTOP hangs the run, SIGKILL ends it). On Linux >= 5.13
:func:`confine` closes these with Landlock before the plugin is imported:

- **files**: nothing may be created, written, truncated, renamed or removed outside the worker's
  private working directory (also its TMPDIR), the plugins' own cache folder (its
  XDG_CACHE_HOME: :func:`plugin_cache_dir`), ``/dev/shm`` and the character devices a framework
  opens for writing (``/dev/null``, ``/dev/nvidia*``, ...); reading stays allowed;
- **processes** (Landlock ABI >= 6): no signal to a process outside the sandbox (the trusted
  process, other workers), no connection to an abstract Unix socket outside it;
- **/proc of the parent**: a Landlocked process cannot ptrace-access one outside its domain, so
  ``/proc/<ppid>/fd``, ``/cwd``, ``/environ`` and ``/mem`` are closed to it.

The restriction is inherited by every child and cannot be lifted. Built-in backends run without
it (their code is the project's own, and their frameworks keep their caches).
``SOFTMAXBENCH_NO_SANDBOX=1`` turns it off (debugging a plugin); where the kernel has no Landlock
the worker runs unconfined and says so in its description (the trusted side's other checks still
hold: it never believes a worker, and it kills the plugin's stray processes).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import tempfile

_SYS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446), "arm64": (444, 445, 446)}

# access rights (linux/landlock.h)
_WRITE_FILE = 1 << 1
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13      # ABI 2
_TRUNCATE = 1 << 14   # ABI 3
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1                # ABI 6

_PR_SET_NO_NEW_PRIVS = 38


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _Ruleset(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def abi_version() -> int:
    """The kernel's Landlock ABI version (0: none here)."""
    nums = _SYS.get(platform.machine())
    if not sys.platform.startswith("linux") or nums is None:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    v = libc.syscall(nums[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # ..._VERSION
    return max(int(v), 0)


def _device_files() -> list[str]:
    names = ["null", "zero", "full", "random", "urandom", "tty", "dxg", "kfd"]
    try:
        names += [n for n in os.listdir("/dev") if n.startswith("nvidia")]
    except OSError:
        pass
    paths = [f"/dev/{n}" for n in names]
    if os.path.isdir("/dev/dri"):
        paths += [os.path.join("/dev/dri", n) for n in os.listdir("/dev/dri")]
    return [p for p in paths if os.path.exists(p)]


#: Share of the machine's memory one third-party worker may hold (its heap and writable mappings).
MEMORY_SHARE = 0.5


def limit_memory() -> int | None:
    """RLIMIT_DATA of this process: :data:`MEMORY_SHARE` of the machine's memory, so a memory bomb
    is a MemoryError in its own worker, not the out-of-memory killer on the machine. Returns the
    limit in bytes (None: not set). ``SOFTMAXBENCH_WORKER_MEMORY`` (bytes) overrides the share."""
    try:
        import resource

        override = os.environ.get("SOFTMAXBENCH_WORKER_MEMORY", "").strip()
        if override:
            limit = int(float(override))
        else:
            with open("/proc/meminfo") as fh:
                total_kib = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
            limit = int(total_kib * 1024 * MEMORY_SHARE)
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft == resource.RLIM_INFINITY or soft > limit:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
        return limit
    except (OSError, ValueError, StopIteration, ImportError):
        return None


def plugin_cache_dir(plugins) -> str | None:
    """A cache folder of the plugins' own (made now), under the user's cache but apart from the
    suite's (``softmaxbench-plugins/<key>/``, a key per set of plugins): the worker's
    XDG_CACHE_HOME, so a plugin can keep compiled kernels between runs. The trusted process never
    reads it."""
    import hashlib
    from pathlib import Path

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256("\0".join(sorted(str(p) for p in plugins)).encode()).hexdigest()[:16]
    d = base / "softmaxbench-plugins" / key
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(d)


def confine(workdir: str, plugins=()) -> str:
    """Confine this process (and its future children) as the module says; returns what was done
    ("landlock ABI n" / why not), for the worker's description. Never raises."""
    if os.environ.get("SOFTMAXBENCH_NO_SANDBOX"):
        return "off (SOFTMAXBENCH_NO_SANDBOX)"
    cache = plugin_cache_dir(plugins)
    try:
        abi = abi_version()
        if abi < 1:
            return "unavailable (no Landlock in this kernel)"
        nums = _SYS[platform.machine()]
        libc = ctypes.CDLL(None, use_errno=True)
        write = (_WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_CHAR | _MAKE_DIR | _MAKE_REG
                 | _MAKE_SOCK | _MAKE_FIFO | _MAKE_BLOCK | _MAKE_SYM)
        if abi >= 2:
            write |= _REFER
        if abi >= 3:
            write |= _TRUNCATE
        attr = _Ruleset(write, 0, (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
        size = 24 if abi >= 6 else 8
        ruleset = libc.syscall(nums[0], ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
        if ruleset < 0:
            return f"unavailable (landlock_create_ruleset: {os.strerror(ctypes.get_errno())})"
        try:
            file_rights = _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)
            rules = [(workdir, write), ("/dev/shm", write)] + [(p, file_rights) for p in _device_files()]
            if cache:
                rules.append((cache, write))
            for path, rights in rules:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    if not os.path.isdir(path):
                        rights &= _WRITE_FILE | _TRUNCATE  # only file rights apply to a file
                    rule = _PathBeneath(rights, fd)
                    libc.syscall(nums[1], ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                                 ctypes.c_uint32(0))
                finally:
                    os.close(fd)
            if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                return f"unavailable (no_new_privs: {os.strerror(ctypes.get_errno())})"
            if libc.syscall(nums[2], ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
                return f"unavailable (landlock_restrict_self: {os.strerror(ctypes.get_errno())})"
        finally:
            os.close(ruleset)
    except Exception as exc:  # noqa: BLE001 - a sandbox that cannot be set up leaves the worker as it was
        return f"unavailable ({type(exc).__name__}: {exc})"
    limit_memory()
    # Temporary files go to the private working directory, caches to the plugins' own folder
    # (the only places writable now).
    os.environ["TMPDIR"] = workdir
    tempfile.tempdir = None
    if cache:
        os.environ["XDG_CACHE_HOME"] = cache
        if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(cache, "jax")
    return f"landlock ABI {abi}"
