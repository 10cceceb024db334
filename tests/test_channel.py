"""The channel between the trusted process and a worker: framing rules, typed messages, and the
worker process's confinement (process group, cwd, captured output, timeouts on the parent's clock)."""

import pickle
import threading
import time
from multiprocessing.connection import Pipe
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from softmaxbench.suite.isolation import channel
from softmaxbench.suite.isolation.channel import (
    BackendInfo,
    ProtocolError,
    Worker,
    WorkerLost,
    WorkerRefused,
    clean_text,
    decode,
    encode,
    recv,
    send,
)

PLUGIN = str(Path(__file__).parent / "exploits" / "plugin_channel.py")


def _roundtrip(header, arrays):
    a, b = Pipe()
    send(a, header, arrays)
    return recv(b)


@pytest.mark.parametrize("arr", [
    np.arange(6, dtype=np.float32).reshape(2, 3), np.array(1.5, np.float64), np.zeros((0, 4), np.float16),
    np.array([1.0, -np.inf, np.nan], dtype=ml_dtypes.bfloat16), np.arange(5, dtype=np.int64),
    np.array([True, False]), np.arange(12.0).reshape(3, 4).T,
])
def test_arrays_travel_bit_exact(arr):
    h, (got,) = _roundtrip({"kind": "x"}, [arr])
    assert h == {"kind": "x"}
    assert got.dtype == arr.dtype and got.shape == arr.shape
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(arr).tobytes()


def test_disallowed_dtypes_do_not_travel():
    with pytest.raises(ProtocolError, match="cannot travel"):
        encode({}, [np.array(["a"], dtype=object)])
    with pytest.raises(ProtocolError):
        encode({}, [np.zeros(2, np.complex64)])


@pytest.mark.parametrize("head, frames, match", [
    (b"\x80\x04K\x01.", [], "not JSON"),                       # a pickle instead of JSON
    (b"[1, 2]", [], "not an object"),
    (b'{"arrays": [{"dtype": "object", "shape": [1], "nbytes": 8}]}', [b"\0" * 8], "not allowed"),
    (b'{"arrays": [{"dtype": "float32", "shape": [4], "nbytes": 17}]}', [b"\0" * 17], "does not match"),
    (b'{"arrays": [{"dtype": "float32", "shape": [-4], "nbytes": -16}]}', [b""], "non-negative"),
    (b'{"arrays": [{"dtype": "float32", "shape": [4], "nbytes": 16}]}', [b"\0" * 15], "announced"),
    (b'{"arrays": [{"dtype": "float32", "shape": [4], "nbytes": 16, "x": 1}]}', [b""], "description"),
])
def test_malformed_frames_are_protocol_errors(head, frames, match):
    with pytest.raises(ProtocolError, match=match):
        decode(head, frames)


def test_oversized_header_and_message_are_refused_before_reading():
    a, b = Pipe()
    def push():
        try:
            a.send_bytes(b" " * (channel.HEADER_MAX + 1))
        except OSError:  # the receiver closed after refusing the frame
            pass

    threading.Thread(target=push, daemon=True).start()
    with pytest.raises(ProtocolError, match="over its cap"):
        recv(b)
    a, b = Pipe()
    a.send_bytes(b'{"arrays": [{"dtype": "float64", "shape": [1099511627776], "nbytes": 8796093022208}]}')
    with pytest.raises(ProtocolError, match="array bytes"):
        recv(b)


def test_a_pickle_on_the_wire_is_never_unpickled(tmp_path):
    mark = tmp_path / "mark"

    class Pwn:
        def __reduce__(self):
            return (open, (str(mark), "w"))

    a, b = Pipe()
    a.send_bytes(pickle.dumps(Pwn()))
    with pytest.raises(ProtocolError):
        recv(b)
    assert not mark.exists()


def test_clean_text_escapes_control_characters_and_caps():
    assert clean_text("a\x1b[31mred\x07") == "a\\x1b[31mred\\x07"
    assert "\n" not in clean_text("two\nlines")
    assert len(clean_text("x" * 1000, 50)) == 50


def test_backend_info_validates_what_a_worker_says():
    info = BackendInfo.from_header({"name": "n" * 250, "device": "tpu", "dtypes": ["float32", "int8"],
                                    "ops": ["softmax", "rm -rf"], "framework_version": "\x1b]0;x\x07"})
    assert info.unavailable and "invalid backend name" in info.unavailable
    assert len(info.name) <= 40 and info.dtypes == () and info.ops == ()
    assert "\x1b" not in info.framework_version
    ok = BackendInfo.from_header({"name": "fine", "device": "cpu", "dtypes": ["float32"], "ops": ["softmax"],
                                  "conventions": {"nan_row_for_posinf": {"reason": "r"}, "made_up": {}}},
                                 known_deviations=["nan_row_for_posinf"])
    assert ok.unavailable is None and list(ok.conventions) == ["nan_row_for_posinf"]


# -- real workers ------------------------------------------------------------------------------------
def test_worker_calls_numpy_and_reports_back():
    w = Worker("numpy")
    try:
        info = w.start(timeout_s=120)
        assert (info.name, info.device) == ("numpy", "cpu") and "softmax" in info.ops
        r = w.call("softmax", [np.zeros((2, 4), np.float32)], {"axis": -1}, timeout_s=60)
        assert r.status == "output" and r.output.dtype == np.float32
        assert np.allclose(r.output, 0.25) and r.wall_s > 0 and not r.inputs_after
        r = w.call("cross_entropy", [np.zeros((2, 4), np.float32), np.array([1, 2])],
                   {"reduction": "mean", "label_smoothing": 0.0, "ignore_index": None, "weight": None},
                   timeout_s=60)
        assert r.status == "output" and r.output.shape == ()
        r = w.call("softmax", [np.zeros((2, 4), np.float16)], {"axis": 5}, timeout_s=60)
        assert r.status == "raised" and r.raised.type in ("AxisError", "ValueError")
        with pytest.raises(WorkerRefused, match="no handler"):
            w.request("no-such-kind", {}, [], timeout_s=30)
        assert w.call("softmax", [np.ones(3, np.float64)], {"axis": -1}, timeout_s=60).status == "output"
    finally:
        w.kill()


def test_unknown_backend_is_refused_not_lost():
    w = Worker("no-such-backend")
    with pytest.raises(WorkerRefused, match="no-such-backend"):
        w.start(timeout_s=120)


def _hostile(name, tmp_path, timeout=60.0):
    w = Worker(name, plugins=(PLUGIN,), env={"SOFTMAXBENCH_EXPLOIT_MARK": str(tmp_path / "mark")},
               log_path=tmp_path / "w.log")
    w.start(timeout_s=120)
    return w


@pytest.mark.parametrize("name, match", [
    ("exploit-oversized-header", "protocol violation"),
    ("exploit-wrong-nbytes", "protocol violation"),
    ("exploit-pickle", "protocol violation"),
    ("exploit-object-dtype", "protocol violation"),
    ("exploit-huge-claim", "protocol violation"),
    ("exploit-exit-in-op", "exited with code 0"),
    ("exploit-segfault-in-op", "SIGSEGV"),
])
def test_a_hostile_op_costs_its_call_a_crash(name, match, tmp_path):
    w = _hostile(name, tmp_path)
    t0 = time.monotonic()
    with pytest.raises(WorkerLost) as lost:
        w.call("softmax", [np.zeros(4, np.float32)], {"axis": -1}, timeout_s=60)
    assert lost.value.kind == "crash" and match in lost.value.note, lost.value.note
    assert time.monotonic() - t0 < 55  # not the hostile op's sleep
    assert not (tmp_path / "mark").exists()  # no pickle was run
    assert not w.alive()


def test_segfault_note_names_the_backend_frame(tmp_path):
    w = _hostile("exploit-segfault-in-op", tmp_path)
    with pytest.raises(WorkerLost) as lost:
        w.call("softmax", [np.zeros(4, np.float32)], {"axis": -1}, timeout_s=60)
    assert "Fatal Python error" in lost.value.note and "plugin_channel.py" in lost.value.note


def test_a_hang_is_a_timeout_on_the_parents_clock(tmp_path):
    w = _hostile("exploit-hang-in-op", tmp_path)
    t0 = time.monotonic()
    with pytest.raises(WorkerLost) as lost:
        w.call("softmax", [np.zeros(4, np.float32)], {"axis": -1}, timeout_s=2)
    assert lost.value.kind == "timeout" and time.monotonic() - t0 < 30
    assert not w.alive()


def test_kill_takes_the_plugins_children_too(tmp_path):
    w = _hostile("exploit-child-holds-stdout", tmp_path)
    assert w.call("softmax", [np.zeros(4, np.float32)], {"axis": -1}, timeout_s=60).status == "output"
    w.kill()
    pid = int(Path(w.log_path).read_text().split("CHILD-PID", 1)[1].split()[0])
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":  # killed; a container's init may be slow to reap it
            break
        time.sleep(0.1)
    else:
        pytest.fail("the plugin's child outlived its worker")


def test_worker_runs_in_a_private_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results.jsonl").write_text("precious\n")
    w = _hostile("exploit-deletes-cwd", tmp_path)
    cwd = w.cwd
    assert w.call("softmax", [np.zeros(4, np.float32)], {"axis": -1}, timeout_s=60).status == "output"
    w.kill()
    assert (tmp_path / "results.jsonl").read_text() == "precious\n"
    assert cwd != str(tmp_path) and not Path(cwd).exists()


def test_output_goes_to_a_capped_log_not_the_terminal(tmp_path, capfd):
    w = _hostile("exploit-noisy", tmp_path)
    w.log_cap = 4096
    assert w.call("softmax", [np.zeros(4, np.float32)], {"axis": -1}, timeout_s=60).status == "output"
    w.kill()
    out, err = capfd.readouterr()
    assert "PWNED" not in out + err
    log = (tmp_path / "w.log").read_bytes()
    assert b"PWNED" in log and len(log) < 4096 + 200 and b"log cut" in log
