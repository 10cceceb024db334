"""How fast the reference is: ``python -m benchmarks.reference_speed``.

The reference must stay cheap enough to judge every case of every run, so it has two speed
targets on a 2-core machine: softmax of 1e7 float32 elements in at most 1 s (float64 working
precision) and of 1e6 float64 elements in at most 2 s (binary128 working precision). This
command times them (median of a few runs after one warm-up) and prints each figure beside its
target; ``--all`` adds the other ops at the same sizes, for information. ``--strict`` exits 1
when a target is missed (timings are not unit tests: a busy machine makes them noisy).

>>> bench = Benchmark("softmax", "float32", (10, 100), target_s=None)
>>> bench.elements
1000
>>> median_seconds(bench, repeats=1) > 0
True
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from softmaxbench.reference import ops
from softmaxbench.reference.dtypes import np_dtype

ROWS = 1000   # rows of the benchmark inputs: a batch of vocabulary-sized rows


@dataclass(frozen=True)
class Benchmark:
    """One timed call: ``op`` on random normal logits of ``shape`` in ``dtype``."""

    op: str
    dtype: str
    shape: tuple[int, ...]
    target_s: float | None        # the speed target, None for information only

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape))

    def arguments(self) -> tuple[tuple, dict]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(self.shape).astype(np_dtype(self.dtype))
        if self.op in ("softmax_vjp", "log_softmax_vjp"):
            return (x, rng.standard_normal(self.shape).astype(x.dtype)), {}
        if self.op in ("cross_entropy", "cross_entropy_grad"):
            return (x, rng.integers(0, self.shape[-1], self.shape[:-1])), {}
        return (x,), {}


TARGETS: tuple[Benchmark, ...] = (
    Benchmark("softmax", "float32", (ROWS, 10_000), target_s=1.0),
    Benchmark("softmax", "float64", (ROWS, 1_000), target_s=2.0),
)

OTHER_OPS = ("log_softmax", "logsumexp", "softmax_vjp", "log_softmax_vjp", "cross_entropy",
             "cross_entropy_grad")


def median_seconds(bench: Benchmark, repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls after one untimed warm-up call."""
    args, kwargs = bench.arguments()
    fn = getattr(ops, bench.op)
    fn(*args, **kwargs)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:   # one line and exit 2, as every softmaxbench command
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Time the reference; 0, or 1 with ``--strict`` when a target is missed."""
    parser = _Parser(prog="python -m benchmarks.reference_speed",
                     description="Time the reference ops against their speed targets.")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per op (median)")
    parser.add_argument("--all", action="store_true", help="also time the other ops")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, not {args.repeats}")
    benches = list(TARGETS)
    if args.all:
        benches += [Benchmark(op, t.dtype, t.shape, None) for t in TARGETS for op in OTHER_OPS]
    missed = 0
    print(f"{'op':<20} {'dtype':<8} {'elements':>10} {'median s':>9} {'target s':>9}  verdict")
    for bench in benches:
        seconds = median_seconds(bench, args.repeats)
        if bench.target_s is None:
            verdict, target = "", "-"
        else:
            ok = seconds <= bench.target_s
            missed += not ok
            verdict, target = ("ok" if ok else "SLOWER THAN TARGET"), f"{bench.target_s:.1f}"
        print(f"{bench.op:<20} {bench.dtype:<8} {bench.elements:>10.0e} {seconds:>9.3f} {target:>9}  "
              f"{verdict}", flush=True)
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
