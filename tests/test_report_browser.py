"""report.html opened for real in headless Chromium (Debian's package), driven over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: no port, no extra dependency).

Checked: the page loads from file:// without a single network request, its plots decode
(naturalWidth > 0), it runs no script, an untrusted backend name shows as text, and its
screenshot is not blank. Skipped, with the reason, only when chromium is not installed.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_report_records import make_bench_records, make_check_records, write_dir

from softmaxbench.reports.build import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install chromium; .ci/run installs it)")
EVIL = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"


class Chromium:
    """Headless Chromium and a minimal Chrome DevTools Protocol client over its debugging pipe."""

    def __init__(self, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        cmd_r, self._cmd_w = os.pipe()      # we write commands; chromium reads them on fd 3
        self._res_r, res_w = os.pipe()      # chromium writes replies/events on fd 4

        def wire_fds():                     # runs in the child, before exec
            # Move both ends above 9 first: a pipe end may already be fd 3 or 4, where dup2 would
            # either clobber the other end or be a no-op that leaves close-on-exec set.
            high_r, high_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # close_fds=False: fds 3 and 4 made by dup2 are inheritable and must survive exec;
            # every other descriptor of ours is non-inheritable (PEP 446) and closes on exec.
            preexec_fn=wire_fds, close_fds=False)
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (rc={self.proc.poll()})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def open_page(self, url: str, width: int = 1300, height: int = 1800) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.enable")
        self.send("Network.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report of constructed records (one backend named like an attack), open in Chromium."""
    tmp = tmp_path_factory.mktemp("browser")
    backends = ("numpy", EVIL)
    check = write_dir(tmp / "check", make_check_records(backends), label="box")
    bench = write_dir(tmp / "bench", make_bench_records(backends), label="box", kind="bench")
    write_report([check, bench], tmp / "report")
    browser = Chromium(tmp / "profile")
    try:
        browser.open_page((tmp / "report" / "report.html").resolve().as_uri())
        yield browser
    finally:
        browser.close()


def test_page_makes_no_network_request_and_runs_no_script(page):
    urls = [ev["params"]["request"]["url"] for ev in page.events
            if ev.get("method") == "Network.requestWillBeSent"]
    assert urls and urls[0].startswith("file://")
    assert [u for u in urls if not u.startswith(("file://", "data:"))] == []
    assert page.evaluate("document.scripts.length") == 0
    assert page.evaluate("document.title") == "softmaxbench report"     # the name's script did not run


def test_images_load(page):
    sizes = page.evaluate("Array.from(document.images)"
                          ".map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) >= 2                       # a throughput plot and an error plot
    assert all(c and w > 100 and h > 100 for c, w, h in sizes), sizes


def test_untrusted_name_is_shown_as_text(page):
    cells = page.evaluate("Array.from(document.querySelectorAll('td, th')).map(c => c.textContent)")
    assert any(EVIL in c for c in cells)
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0


def test_tables_render(page):
    heads = page.evaluate("Array.from(document.querySelectorAll('section h2')).map(h => h.textContent)")
    for title in ("Conformance summary", "Accuracy (forward ops)", "Special values", "Throughput",
                  "Environment"):
        assert title in heads
    n_rows = page.evaluate("document.querySelector('#conformance tbody').rows.length")
    assert n_rows == 2 * 3                       # 2 backends x 3 dtypes


def test_screenshot_is_not_blank(page):
    from PIL import Image

    img = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    assert img.size == (1300, 1800)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50    # text, table shading, verdict colours
    # Not one colour covering nearly everything (a blank or error page).
    assert max(n for n, _ in colours) < 0.95 * img.size[0] * img.size[1]


def test_first_screen_answers_which_is_right_and_fastest(page):
    """The first screen (1300 x 1800) shows the machine's load and the overview table, whose cells
    say per backend whether it conforms and how fast it is, and name the fastest conforming one."""
    top = page.evaluate("document.getElementById('overview').getBoundingClientRect().top")
    assert top < 900
    lead = page.evaluate("Array.from(document.querySelectorAll('.lead')).map(p => p.textContent)")
    assert any("load average" in line for line in lead)
    heads = page.evaluate("Array.from(document.querySelectorAll('#overview th')).map(h => h.textContent)")
    assert heads[:2] == ["op", "dtype"] and "fastest conforming" in heads
    cells = page.evaluate("Array.from(document.querySelectorAll('#overview td')).map(c => c.textContent)")
    assert any(c.startswith("✓ conforms") and "GB/s [" in c and "% of copy" in c for c in cells)
    assert any(c.startswith("✗ ") for c in cells)
    # The table fits the window: no horizontal scrolling needed to see the last column.
    right = page.evaluate("document.querySelector('#overview table').getBoundingClientRect().right")
    assert right <= 1300
