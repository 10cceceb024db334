"""Starting the CLI stays light: the verb modules import their engines (numpy, pandas, matplotlib,
the frameworks) only when their verb runs, so `softmaxbench list` and `--help` start fast."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_imports_no_engine_until_a_verb_runs():
    heavy = "('numpy', 'pandas', 'matplotlib', 'torch', 'jax', 'scipy')"
    code = f"import sys, softmaxbench.suite.cli.main; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
