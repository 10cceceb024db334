"""The worked examples of docs/writing-a-backend.md pass ``softmaxbench check`` (an eager array
library, a lazy one, a compiled kernel library), each on a few cases that exercise the contract:
bfloat16 through ml_dtypes, negatively strided and transposed views, weights and targets through
asarray, NotImplementedError for an option combination, the cross-entropy options, special rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from softmaxbench.suite.cli.main import main

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
CASES = ("dist_normal_scale_1", "shape_negative_stride", "shape_transposed_axis0", "special_posinf_one",
         "ce_weight_smoothing_ignore_mean", "ce_label_smoothing_prob", "ce_weight_prob_targets",
         "ce_all_ignored_mean", "ce_out_of_range_label")


def check(plugin: str, backend: str, dtypes: str, tmp_path, capsys, cases=CASES) -> list[dict]:
    out = tmp_path / backend
    with pytest.raises(SystemExit) as exc:
        main(["check", "--plugin", str(EXAMPLES / plugin), "--backends", backend, "--dtypes", dtypes,
              "--cases", ",".join(cases), "--out", str(out)])
    text = capsys.readouterr()
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    bad = [f"{r['op']} {r['case']} {r['dtype']}: {r['verdict']}: {r.get('message')}" for r in records
           if r["verdict"] not in ("pass", "deviation", "unsupported")]
    assert exc.value.code == 0 and not bad, "\n".join(bad) + text.err
    return records


def verdicts(records, case: str, ce: bool | None = None) -> set[str]:
    return {r["verdict"] for r in records if r["case"] == case
            and (ce is None or r["op"].startswith("cross_entropy") == ce)}


def test_eager_torch_example(tmp_path, capsys):
    pytest.importorskip("torch")
    records = check("eager_torch_backend.py", "example-torch-eager", "bfloat16,float64", tmp_path, capsys)
    assert verdicts(records, "shape_negative_stride") == {"pass"}          # copied before from_numpy
    assert verdicts(records, "ce_label_smoothing_prob") == {"unsupported"}  # NotImplementedError inside
    assert verdicts(records, "ce_weight_smoothing_ignore_mean") == {"pass"}
    assert {r["dtype"] for r in records if r["verdict"] == "pass"} == {"bfloat16", "float64"}


def test_lazy_jax_example(tmp_path, capsys):
    pytest.importorskip("jax")
    records = check("lazy_jax_backend.py", "example-jax-lazy", "float64", tmp_path, capsys)
    assert verdicts(records, "ce_weight_prob_targets") == {"unsupported"}
    assert verdicts(records, "ce_out_of_range_label") == {"pass"}          # it raises, as it must
    assert verdicts(records, "dist_normal_scale_1") == {"pass"}            # float64 really float64


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the example kernel")
def test_compiled_ctypes_kernel_example(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # compiled afresh, at test time
    records = check("ctypes_kernel_backend.py", "example-ctypes-kernel", "float32,float64", tmp_path,
                    capsys, cases=CASES[:4] + ("shape_scalar", "shape_empty_rows", "shape_vocab_32000"))
    mine = ("softmax", "log_softmax", "logsumexp", "softmax_vjp")
    ours = [r for r in records if r["op"] in mine]
    assert {r["verdict"] for r in records if r["op"] not in mine} == {"unsupported"}
    assert {r["verdict"] for r in ours if r["case"] == "shape_negative_stride"} == {"pass"}
    # a float32 running sum is what the model allows
    assert {r["verdict"] for r in ours if r["case"] == "shape_vocab_32000"} == {"pass"}
    assert list((tmp_path / "cache").rglob("librowsoftmax-*.so"))
