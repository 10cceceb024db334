"""``softmaxbench check`` on the command line: exit codes 0/1/2, one clear line for bad input,
plain progress lines when not on a terminal, the summary table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import softmaxbench.backends.registry  # noqa: F401 - a missing module is a failure
import softmaxbench.reference.ops  # noqa: F401 - a missing module is a failure
from softmaxbench.suite.cli.main import main  # noqa: E402

PLUGIN = str(Path(__file__).with_name("broken_backends.py"))
SMALL = ["--plugin", PLUGIN, "--ops", "softmax", "--dtypes", "float32", "--cases", "dist_normal_scale_1"]


def run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["check", *args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("args, words", [
    (["--backends", "no-such-backend"], "unknown backend 'no-such-backend'"),
    (["--backends", "broken-baselin"], "did you mean broken-baseline"),
    (["--backends", "broken-baseline", "--ops", "softmx"], "unknown op 'softmx'; did you mean softmax"),
    (["--backends", "broken-baseline", "--dtypes", "float8"], "unknown dtype 'float8'"),
    (["--backends", "broken-baseline", "--cases", "dist_normal_scale_2"], "no case named"),
    (["--backends", "broken-baseline", "--timeout", "0"], "--timeout must be a positive"),
    (["--backends", "broken-baseline", "--jobs", "0"], "--jobs must be at least 1"),
    (["--backends", "broken-baseline", "--timeout", "soon"], "'soon' is not a valid float"),
    (["--backends", "broken-baseline", "--ops", "logsumexp", "--cases", "ce_mean"],
     "the selection has no checks"),
])
def test_bad_input_is_one_line_and_exit_2(args, words, capsys, tmp_path):
    code, out, err = run(["--plugin", PLUGIN, "--out", str(tmp_path), *args], capsys)
    assert code == 2
    assert words in err and err.count("\n") == 1 and "Traceback" not in err + out
    assert not (tmp_path / "results.jsonl").exists()


def test_missing_plugin_file_and_unavailable_backend(tmp_path, capsys):
    code, _, err = run(["--plugin", str(tmp_path / "nope.py")], capsys)
    assert code == 2 and "no such file" in err and err.count("\n") == 1
    plugin = tmp_path / "away.py"
    plugin.write_text("from softmaxbench.backends import Backend\n"
                      "class Away(Backend):\n"
                      "    name = 'away'\n"
                      "    def unavailable(self):\n"
                      "        return 'needs a device this machine lacks'\n"
                      "def backends():\n"
                      "    return [Away()]\n")
    code, _, err = run(["--plugin", str(plugin), "--backends", "away", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "'away' is unavailable here: needs a device this machine lacks" in err
    assert err.count("\n") == 1


def test_out_must_be_a_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, _, err = run([*SMALL, "--backends", "broken-baseline", "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "is not a directory" in err and err.count("\n") == 1


def test_resume_does_not_take_a_new_selection(tmp_path, capsys):
    code, _, err = run(["--resume", str(tmp_path), "--backends", "numpy"], capsys)
    assert code == 2 and "do not combine it with --backends" in err


def test_a_broken_plugin_does_not_stop_the_run(tmp_path, capsys):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("raise ImportError('this plugin is broken')\n")
    code, out, _ = run(["--plugin", str(bad), *SMALL, "--backends", "broken-baseline",
                        "--out", str(tmp_path / "o")], capsys)
    assert code == 0 and "broken-baseline" in out


def test_exit_0_when_conforming_and_1_when_not(tmp_path, capsys):
    code, out, _ = run([*SMALL, "--backends", "broken-baseline", "--out", str(tmp_path / "ok")], capsys)
    assert code == 0
    assert "conforms" in out and "broken-baseline" in out and " yes" in out
    code, out, _ = run([*SMALL, "--backends", "broken-baseline,broken-all-zeros", "--out",
                        str(tmp_path / "bad")], capsys)
    assert code == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("broken-all-zeros "))
    assert line.split()[-1] == "NO"


def test_console_script_prints_plain_lines_when_not_a_tty(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "softmaxbench.suite.cli.main", "check", *SMALL, "--backends",
                           "broken-baseline,broken-all-zeros", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "\x1b[" not in proc.stdout  # no terminal control codes in a CI log
    assert ("FAIL     broken-all-zeros softmax dist_normal_scale_1 float32: softmax: error ratio"
            in proc.stdout)
    assert "broken-all-zeros: done in" in proc.stdout
    assert (tmp_path / "results.jsonl").read_text().count("\n") == 2


def test_rich_progress_display(tmp_path, capsys):
    from softmaxbench.suite.conformance.runner import run_check

    code = run_check(tmp_path, backends=["broken-baseline"], ops=["softmax"], dtypes=["float32"],
                     cases=["dist_normal_scale_1", "special_nan_one"], plugins=[PLUGIN], display="rich")
    out = capsys.readouterr().out
    assert code == 0 and "broken-baseline" in out and "2/2" in out
