"""``softmaxbench check``: the options of the conformance verb and their glue to the engine
(:func:`softmaxbench.suite.conformance.runner.run_check`)."""

from __future__ import annotations

import click

from softmaxbench.suite.cli.options import selection_options


def check_main(backends: str | None = None, ops: str | None = None, dtypes: str | None = None,
               cases: str | None = None, plugins: tuple[str, ...] = (), quick: bool = False,
               out: str = "softmaxbench-results/check", timeout: float = 60.0, resume: str | None = None,
               strict: bool = False, junit_xml: str | None = None, seed: int | None = None,
               jobs: int | None = None, baseline: str | None = None,
               known_failures: tuple[str, ...] = ()) -> int:
    """The ``check`` verb: CLI options (comma-separated strings) -> ``run_check``."""
    from softmaxbench.errors import InputError
    from softmaxbench.suite.cli.options import positive_seconds, split_csv, usable_out_dir, usable_out_file
    from softmaxbench.suite.conformance.runner import run_check
    from softmaxbench.suite.selection import plugin_paths

    if resume is not None:
        given = [n for n, v in (("--backends", backends), ("--ops", ops), ("--dtypes", dtypes),
                                ("--cases", cases), ("--quick", quick), ("--seed", seed is not None)) if v]
        if given:
            raise InputError(f"--resume finishes the run recorded in {resume}/run.json; "
                             f"do not combine it with {', '.join(given)}")
    positive_seconds(timeout, "--timeout")
    usable_out_dir(resume if resume is not None else out, "--resume" if resume is not None else "--out")
    usable_out_file(junit_xml, "--junit-xml")
    plugins = plugin_paths(plugins)
    return run_check(resume if resume is not None else out, backends=split_csv(backends), ops=split_csv(ops),
                     dtypes=split_csv(dtypes), cases=split_csv(cases), plugins=plugins, quick=quick,
                     timeout=timeout, resume=bool(resume), strict=strict, junit_xml=junit_xml, seed=seed,
                     jobs=jobs, baseline=baseline, known_failures=known_failures)


@click.command("check")
@selection_options
@click.option("--out", default="softmaxbench-results/check", show_default=True, help="Results directory.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds a single case may run.")
@click.option("--resume", "resume", default=None, metavar="DIR",
              help="Finish an interrupted run in DIR (name its --plugin files again to let them run).")
@click.option("--strict", is_flag=True,
              help="Deviations count as non-conformance too, and so does a known failure that passes now.")
@click.option("--junit-xml", default=None, metavar="PATH", help="Also write JUnit XML.")
@click.option("--seed", default=None, type=click.IntRange(0, 2**64 - 1), metavar="N",
              help="Seed of the fresh cases (fresh_normal: inputs no catalogue can hold) "
                   "(default: random, recorded in run.json).")
@click.option("--jobs", default=None, type=int, metavar="N",
              help="Worker processes at once (default: one per backend, up to max(4, cores); a "
                   "backend left alone gets more while cores are free).")
@click.option("--baseline", default=None, metavar="DIR",
              help="A previous results directory: its failures are known; exit 1 only on a new one.")
@click.option("--known-failures", "known_failures", multiple=True, metavar="FILE",
              help="TOML file of known failures (backend/op/case/dtype patterns, each with a reason), "
                   "or 'builtin' for the built-in backends' documented findings; repeatable.")
def check_cmd(**kwargs) -> int:
    """Check backends against the reference; write DIR/results.jsonl and DIR/run.json."""
    return check_main(**kwargs)
