"""Copy-paste repro snippets: Python that rebuilds a case input with NumPy and calls the backend.

Every non-pass check record carries one, so a failure reported by CI can be replayed in a shell
without the suite: the snippet rebuilds the input (``CaseInput.numpy_source()``), looks the
backend up by name (loading the same ``--plugin`` files), calls the op and prints the result next
to the reference.

>>> from types import SimpleNamespace
>>> import numpy as np
>>> x = np.zeros((1, 3), np.float32)
>>> inputs = SimpleNamespace(case="demo", dtype="float32", axis=-1, x=x, cotangent=None, target=None,
...                          ce_options={}, numpy_source=lambda: "x = np.zeros((1, 3), np.float32)",
...                          args=lambda op: ((x,), {"axis": -1}))
>>> print(snippet("numpy", "softmax", inputs).splitlines()[-4])
out = backend.to_numpy(backend.softmax(backend.asarray(x), axis=-1))
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

#: Names the case source is expected to define for each input array.
_ARRAY_NAMES = ("x", "cotangent", "target", "weight")


def snippet(backend, op: str, inputs, plugins: Sequence[str] = ()) -> str:
    """Python source that reproduces ``backend.<op>`` on ``inputs`` and prints it beside the reference.

    ``backend`` is a backend name, or a Backend instance: one that discovery does not know by its
    name (a backend handed to the pytest plugin directly) is rebuilt from its class instead.
    """
    source = inputs.numpy_source().rstrip()
    lines = [source]
    args, kwargs = inputs.args(op)
    named = {name: getattr(inputs, name, None) for name in ("x", "cotangent", "target")}
    named["weight"] = (inputs.ce_options or {}).get("weight")

    def ref(value, defined_as: str | None = None) -> str:
        """The source text of one argument: a name the case source defines, or a literal."""
        if isinstance(value, np.ndarray):
            for name in _ARRAY_NAMES:
                if named.get(name) is value and _defines(source, name):
                    return name
            name = defined_as or "arg"
            lines.append(f"{name} = np.array({value.tolist()!r}, dtype={_dtype_src(value)})")
            return name
        return repr(value)

    pos = [ref(a, f"arg{i}") for i, a in enumerate(args)]
    kw = [(k, ref(v, k)) for k, v in kwargs.items()]
    plugin_arg = f", plugins={[os.path.abspath(p) if os.path.exists(p) else p for p in plugins]!r}" \
        if plugins else ""
    native = [f"backend.asarray({p})" if _is_array(a) else p for p, a in zip(pos, args)]
    native_kw = [f"{k}=backend.asarray({s})" if _is_array(kwargs[k]) else f"{k}={s}" for k, s in kw]
    ref_kw = [f"{k}={s}" for k, s in kw]
    body = "\n".join(lines)
    imports = [imp for imp in ("import ml_dtypes", "import numpy as np")
               if imp.split()[1] in body and imp not in source]
    lines = imports + lines
    lines += [
        *backend_lookup(backend, plugin_arg, plugins),
        "from softmaxbench.reference import ops as reference",
        f"out = backend.to_numpy(backend.{op}({', '.join(native + native_kw)}))",
        f"exact = reference.{op}({', '.join(pos + ref_kw)})",
        "print('backend:  ', out)",
        "print('reference:', exact)",
    ]
    return "\n".join(lines) + "\n"


def backend_lookup(backend, plugin_arg: str, plugins: Sequence[str]) -> list[str]:
    """Source lines that set ``backend``: by name (a name, or an instance of a built-in's class),
    or from its class."""
    name = backend if isinstance(backend, str) else backend.name
    by_name = ["from softmaxbench.backends.registry import get", f"backend = get({name!r}{plugin_arg})"]
    if isinstance(backend, str):
        return by_name
    # Only a built-in is looked up by name: discovery would import every adapter and plugin in
    # this process (the caller of the Python API or the pytest plugin, holding one instance).
    try:
        from softmaxbench.backends.registry import BUILTINS, get

        if name in BUILTINS and type(get(name)) is type(backend):
            return by_name
    except LookupError:
        pass
    cls = type(backend)
    return [f"from {cls.__module__} import {cls.__qualname__.split('.')[0]}",
            f"backend = {cls.__qualname__}()  # {name!r} is not registered: built from its class"]


def _defines(source: str, name: str) -> bool:
    return any(line.lstrip().startswith((f"{name} =", f"{name}=")) for line in source.splitlines())


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray)


def _dtype_src(a: np.ndarray) -> str:
    if str(a.dtype) == "bfloat16":
        return "ml_dtypes.bfloat16"
    return f"np.{a.dtype.name}"
