"""Calling a backend for a check: the one request format, sent to a worker or run in this process.

:func:`request_for` turns (op, case input) into the ``call`` request of the channel (arrays as
bytes, views with their layout, options as JSON). :func:`call_in_worker` sends it to a
:class:`~softmaxbench.suite.isolation.channel.Worker`; :func:`call_in_process` runs the worker's
own handler here, for callers that hold a Backend instance (the pytest plugin, ``run_checks``).
Both give a :class:`~softmaxbench.suite.isolation.channel.CallResult` that
:func:`softmaxbench.suite.conformance.judge.judge` turns into a record.

>>> from softmaxbench.suite.hunt.store import get_case
>>> from softmaxbench.backends.registry import builtin
>>> r = call_in_process(builtin("numpy"), "softmax", get_case("dist_normal_scale_1").build("float32"))
>>> r.status, r.output.dtype
('output', dtype('float32'))
"""

from __future__ import annotations

import time

import numpy as np

from softmaxbench.suite.conformance import checks
from softmaxbench.suite.isolation.channel import CallResult, call_header, decode, encode


def request_for(op: str, inputs) -> tuple[dict, list[np.ndarray]]:
    """The header and arrays of the ``call`` request for ``op`` on ``inputs``."""
    args, kwargs = inputs.args(op)
    named = checks.input_arrays(op, inputs)
    ids = {id(a): n for n, a in named.items()}
    order = [a for a in [*args, *kwargs.values()] if isinstance(a, np.ndarray)]
    names = [ids.get(id(a), f"arg{i}") for i, a in enumerate(order)]
    return call_header(op, list(args), dict(kwargs), names)


def call_in_worker(worker, op: str, inputs, *, timeout_s: float) -> CallResult:
    """``op`` on ``inputs`` in ``worker`` (WorkerLost when it dies or hangs)."""
    header, arrays = request_for(op, inputs)
    reply = worker.request("call", header, arrays, timeout_s=timeout_s)
    return CallResult.from_reply(reply.header, reply.arrays, reply.wall_s)


def call_in_process(backend, op: str, inputs) -> CallResult:
    """``op`` on ``inputs`` with ``backend`` in this process, through the worker's handler and the
    channel's encoding (so the backend gets exactly what a worker would give it). No isolation."""
    from softmaxbench.suite.isolation.worker import handle_call

    header, arrays = request_for(op, inputs)
    head, frames = encode(header, arrays)
    header, arrays = decode(head, [bytes(f) for f in frames])
    t0 = time.perf_counter()
    out_header, out_arrays = handle_call(backend, header, arrays)
    return CallResult.from_reply(out_header, list(out_arrays), time.perf_counter() - t0)
