"""The fault probe (tests/exploits/fault_probe.py): a backend faulting at every point the suite
calls it (discovery, each step of a call, the bench's hooks, the hunt), in every way a process
can fault. Each fault must be survived: the verb finishes, the other backends' records are all
there and honest, the faulty backend's cases get crash/timeout/error, results.jsonl stays
intact, the exit code tells the truth, no traceback reaches the terminal.

Each probe runs its verb once for all its faults (module-scoped); each fault is one test.
``python tests/exploits/fault_probe.py`` prints the score.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "exploits"))
import fault_probe  # noqa: E402

_RESULTS: dict[str, dict] = {}


def _outcomes(probe: str, tmp_path_factory) -> dict:
    if probe not in _RESULTS:
        work = tmp_path_factory.mktemp(f"fault-{probe}")
        _RESULTS[probe] = {o.fault: o for o in fault_probe.PROBES[probe](work)}
    return _RESULTS[probe]


CASES = [(probe, fid) for probe in fault_probe.PROBES for fid in fault_probe.fault_ids(probe)]


@pytest.mark.parametrize("probe, fault", CASES, ids=[f for _, f in CASES])
def test_the_fault_is_survived(probe, fault, tmp_path_factory):
    outcome = _outcomes(probe, tmp_path_factory)[fault]
    assert outcome.survived, outcome.why


def test_the_probe_covers_every_point_and_kind():
    assert len(CASES) >= 74
    assert {f.split(":")[1] for f in fault_probe.fault_ids("discovery")} == set(fault_probe.DISCOVERY_POINTS)
