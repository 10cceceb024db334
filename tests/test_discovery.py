"""Discovery: built-ins, ``--plugin`` files and modules, entry points, broken plugins, duplicate names,
caching, ``softmaxbench list``, and declared conventions of third-party backends."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from softmaxbench.backends import Backend, conventions, registry
from softmaxbench.backends.availability import cuda_device_problem

PLUGIN = '''
import numpy as np
from softmaxbench.backends import Backend

class MyKernel(Backend):
    name = "{name}"
    device = "cpu"
    dtypes = ("float32", "float64")
    conventions = ("nan_row_for_posinf",)

    def softmax(self, x, axis=-1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

def backends():
    {side_effect}
    return [MyKernel()]
'''


def write_plugin(path: Path, name: str = "my-kernel", side_effect: str = "pass") -> Path:
    path.write_text(PLUGIN.format(name=name, side_effect=side_effect))
    return path


@pytest.fixture(autouse=True)
def fresh_discovery():
    registry.clear_cache()
    yield
    registry.clear_cache()


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "softmaxbench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def by_name(entries) -> dict:
    return {e.name: e for e in entries}


# -- built-ins -----------------------------------------------------------------------------------
def test_builtins_are_lazy_names_of_their_classes():
    for name, target in registry.BUILTINS.items():
        module, _, cls = target.partition(":")
        assert module.startswith("softmaxbench.backends.") and cls
        assert registry.get(name).name == name
    assert list(registry.BUILTINS)[:2] == ["numpy", "scipy"]


def test_get_unknown_name_is_one_clear_line():
    with pytest.raises(LookupError) as info:
        registry.get("nmupy")
    msg = str(info.value)
    assert "\n" not in msg and "did you mean numpy" in msg and "torch-cpu" in msg


def test_listing_imports_no_framework_without_a_gpu():
    if cuda_device_problem() is None:
        pytest.skip("with a CUDA device the GPU backends' availability checks import their framework")
    code = ("import sys, softmaxbench; from softmaxbench.suite.cli.list import list_main; "
            "list_main(); print(sorted(m for m in ('torch', 'jax', 'cupy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_list_shows_every_builtin_with_its_availability():
    out = cli("list")
    assert out.returncode == 0, out.stderr
    for name in registry.BUILTINS:
        assert name in out.stdout
    assert "numpy" in out.stdout and "available" in out.stdout
    rows = json.loads(cli("list", "--json").stdout)
    assert [r["name"] for r in rows] == list(registry.BUILTINS)
    for r in rows:
        assert r["available"] == (r["unavailable"] is None)
        assert set(r) >= {"device", "framework", "framework_version", "dtypes", "ops", "origin"}
    numpy_row = rows[0]
    assert numpy_row["available"] and numpy_row["framework_version"] and len(numpy_row["ops"]) == 7
    if cuda_device_problem() is not None:  # honest availability on a machine without a GPU
        assert all(not r["available"] and "CUDA" in r["unavailable"] for r in rows if r["device"] == "gpu")


# -- --plugin ------------------------------------------------------------------------------------
def test_single_file_plugin_with_cli_flag(tmp_path):
    plugin = write_plugin(tmp_path / "mykernel.py")
    rows = json.loads(cli("list", "--json", "--plugin", str(plugin)).stdout)
    mine = next(r for r in rows if r["name"] == "my-kernel")
    assert mine["available"] and mine["ops"] == ["softmax"] and mine["origin"] == f"plugin:{plugin}"
    assert mine["conventions"] == ["nan_row_for_posinf"]
    table = cli("list", "--plugin", str(plugin))
    assert table.returncode == 0 and "my-kernel [plugin:" in table.stdout


def test_plugin_backend_runs_and_is_found_by_get(tmp_path):
    import numpy as np

    plugin = str(write_plugin(tmp_path / "mykernel.py"))
    b = registry.get("my-kernel", plugins=[plugin])
    y = b.to_numpy(b.softmax(b.asarray(np.zeros(4, np.float32)), axis=-1))
    assert y.tolist() == [0.25] * 4
    with pytest.raises(NotImplementedError):
        b.log_softmax(np.zeros(4), axis=-1)


def test_plugin_by_module_name(tmp_path, monkeypatch):
    write_plugin(tmp_path / "sbx_module_plugin.py", name="module-kernel")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = by_name(registry.discover(["sbx_module_plugin"]))["module-kernel"]
    assert entry.backend is not None and entry.origin == "plugin:sbx_module_plugin"
    sys.modules.pop("sbx_module_plugin", None)


BROKEN = {
    "import_error": ("import nonexistent_module_xyz\n",
                     "ModuleNotFoundError: No module named 'nonexistent_module_xyz'"),
    "syntax_error": ("def backends(:\n", "SyntaxError"),
    "no_hook": ("x = 1\n", "has no backends() function"),
    "wrong_type": ("def backends():\n    return [42, 'numpy']\n",
                   "returned int 42, not a softmaxbench Backend"),
    "raises": ("def backends():\n    raise RuntimeError('boom')\n", "RuntimeError: boom"),
    "exits": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_plugin_is_listed_unavailable_and_never_stops_discovery(tmp_path, kind, caplog):
    source, expected = BROKEN[kind]
    plugin = tmp_path / f"broken_{kind}.py"
    plugin.write_text(source)
    with caplog.at_level(logging.WARNING, logger="softmaxbench.backends"):
        entries = registry.discover([str(plugin)])
    assert "numpy" in by_name(entries)  # the built-ins are all still there
    broken = [e for e in entries if e.origin == f"plugin:{plugin}"]
    assert broken and all(e.backend is None for e in broken)
    assert expected in broken[0].unavailable, broken[0].unavailable
    assert any(expected.split(":")[0] in r.getMessage() for r in caplog.records)
    out = cli("list", "--plugin", str(plugin))
    assert out.returncode == 0 and "Traceback" not in out.stderr + out.stdout
    with pytest.raises(LookupError):
        registry.get(broken[0].name, plugins=[str(plugin)])


def test_missing_plugin_file_is_an_unavailable_entry(tmp_path):
    entry = registry.discover([str(tmp_path / "nowhere.py")])[-1]
    assert entry.backend is None and "no such plugin file" in entry.unavailable


def test_a_backend_whose_availability_check_raises(tmp_path):
    plugin = tmp_path / "flaky.py"
    plugin.write_text(PLUGIN.format(name="flaky", side_effect="pass") + textwrap.dedent('''
        def _broken(self):
            raise OSError("driver exploded")
        MyKernel.unavailable = _broken
    '''))
    entry = by_name(registry.discover([str(plugin)]))["flaky"]
    assert entry.backend is not None and entry.unavailable == "unavailable() raised OSError: driver exploded"


def test_invalid_backend_attributes_are_reported(tmp_path):
    plugin = tmp_path / "bad_attrs.py"
    plugin.write_text(PLUGIN.format(name="bad-device", side_effect="pass").replace('"cpu"', '"tpu"'))
    entry = by_name(registry.discover([str(plugin)]))["bad-device"]
    assert entry.backend is None and "device must be 'cpu' or 'gpu'" in entry.unavailable


def test_duplicate_names_are_reported_and_the_first_wins(tmp_path):
    shadow = str(write_plugin(tmp_path / "shadow.py", name="numpy"))
    one = str(write_plugin(tmp_path / "one.py", name="twin"))
    two = str(write_plugin(tmp_path / "two.py", name="twin"))
    entries = registry.discover([shadow, one, two])
    numpys = [e for e in entries if e.name == "numpy"]
    assert numpys[0].origin == "builtin" and numpys[0].backend is not None
    assert numpys[1].backend is None
    assert numpys[1].unavailable == "duplicate name: 'numpy' is already provided by builtin"
    twins = [e for e in entries if e.name == "twin"]
    assert twins[0].backend is not None and twins[1].backend is None
    assert f"already provided by plugin:{one}" in twins[1].unavailable
    assert registry.get("twin", plugins=[shadow, one, two]) is twins[0].backend
    assert registry.get("numpy", plugins=[shadow]) is numpys[0].backend


def test_discovery_is_cached(tmp_path):
    calls = tmp_path / "calls.txt"
    plugin = str(write_plugin(tmp_path / "counted.py", name="counted",
                              side_effect=f"open({str(calls)!r}, 'a').write('x')"))
    first = registry.discover([plugin])
    second = registry.discover([plugin])
    assert [e.backend for e in first] == [e.backend for e in second]
    assert registry.get("counted", plugins=[plugin]) is by_name(first)["counted"].backend
    assert calls.read_text() == "x"
    registry.clear_cache()
    registry.discover([plugin])
    assert calls.read_text() == "xx"


# -- entry points --------------------------------------------------------------------------------
@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A throwaway distribution with two entry points (one working, one broken), pip-installed into
    a private directory (``--target``) so other tests running meanwhile never see it; removed after."""
    src = tmp_path / "src"
    src.mkdir()
    write_plugin(src / "sbx_ep_plugin.py", name="ep-kernel")
    (src / "sbx_ep_broken.py").write_text("raise ImportError('the vendor library is missing')\n")
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "sbx-ep-plugin-test"
        version = "0.0.1"

        [project.entry-points."softmaxbench.backends"]
        ep-kernel = "sbx_ep_plugin"
        ep-broken = "sbx_ep_broken:backends"

        [tool.setuptools]
        py-modules = ["sbx_ep_plugin", "sbx_ep_broken"]
    '''))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--no-index", "--target", str(site), str(src)],
                   check=True, capture_output=True, timeout=300)
    monkeypatch.syspath_prepend(str(site))
    yield site
    for m in ("sbx_ep_plugin", "sbx_ep_broken"):
        sys.modules.pop(m, None)
    import shutil

    shutil.rmtree(site, ignore_errors=True)  # the uninstall: nothing was written anywhere else


def test_entry_point_plugin_through_an_installed_package(installed_plugin):
    entries = by_name(registry.discover())
    ep = entries["ep-kernel"]
    assert ep.backend is not None and ep.unavailable is None
    assert ep.origin == "entry-point:sbx-ep-plugin-test"
    broken = entries["ep-broken"]
    assert broken.backend is None and "ImportError: the vendor library is missing" in broken.unavailable
    env = {"PYTHONPATH": os.pathsep.join([str(installed_plugin), os.environ.get("PYTHONPATH", "")])}
    rows = {r["name"]: r for r in json.loads(cli("list", "--json", env=env).stdout)}
    assert rows["ep-kernel"]["available"] and rows["ep-kernel"]["ops"] == ["softmax"]
    assert not rows["ep-broken"]["available"]


# -- conventions of third-party backends ---------------------------------------------------------
def test_third_party_conventions_as_names_or_dict(caplog):
    class Named(Backend):
        name = "named"
        conventions = ("nan_row_for_posinf", "not_a_deviation")

    class Described(Backend):
        name = "described"
        conventions = {"zeros_for_all_neginf": {"reason": "masking", "link": "https://example.org"}}

    with caplog.at_level(logging.WARNING, logger="softmaxbench.backends"):
        named = conventions.for_backend(Named())
    assert list(named) == ["nan_row_for_posinf"]
    assert "not_a_deviation" in caplog.text
    described = conventions.for_backend(Described())
    assert described["zeros_for_all_neginf"]["reason"] == "masking"
    assert described["zeros_for_all_neginf"]["link"] == "https://example.org"


def test_a_plugin_named_like_a_builtin_does_not_get_its_conventions():
    class Impostor(Backend):
        name = "jax-cpu"

    assert conventions.for_backend(Impostor()) == {}
    assert "flushed_subnormals" in conventions.for_backend(registry.get("jax-cpu"))


# -- the trusted process and discovery as data ----------------------------------------------------------
def test_the_trusted_process_imports_no_backend_code(tmp_path):
    plugin = write_plugin(tmp_path / "kernel_in_parent.py",
                          side_effect="import sys; sys.modules['PLUGIN_RAN'] = 1")
    code = textwrap.dedent(f"""
        import sys
        from softmaxbench.suite.conformance.runner import run_check
        from softmaxbench.suite.cli.list import backend_rows
        backend_rows([{str(plugin)!r}])
        rc = run_check({str(tmp_path / 'out')!r}, backends=["numpy", "my-kernel"], ops=["softmax"],
                       dtypes=["float32"], cases=["dist_normal_scale_1"], plugins=[{str(plugin)!r}],
                       display="none")
        bad = sorted(m for m in sys.modules if m.startswith(("softmaxbench.backends.", "softmaxbench_plugin",
                     "torch", "jax", "scipy", "cupy", "PLUGIN_RAN")) and m not in (
                     "softmaxbench.backends.base", "softmaxbench.backends.registry"))
        print(rc, bad)
    """)
    env = {**os.environ, "SOFTMAXBENCH_NO_DISCOVERY_CACHE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.strip().splitlines()[-1] == "0 []", proc.stdout + proc.stderr


def test_the_discovery_cache_follows_the_plugin_file(tmp_path):
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    plugin = write_plugin(tmp_path / "kern.py", name="first-name")
    rows = json.loads(cli("list", "--json", "--plugin", str(plugin), env=cache).stdout)
    assert "first-name" in {r["name"] for r in rows}
    assert list((tmp_path / "cache" / "softmaxbench" / "discovery").glob("*.json"))
    write_plugin(plugin, name="second-name")
    os.utime(plugin, ns=(plugin.stat().st_atime_ns, plugin.stat().st_mtime_ns + 10**9))
    names = {r["name"] for r in json.loads(cli("list", "--json", "--plugin", str(plugin), env=cache).stdout)}
    assert "second-name" in names and "first-name" not in names


def test_selection_is_one_line_for_unknown_and_unavailable_names(tmp_path):
    proc = cli("check", "--backends", "nmupy", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "did you mean numpy" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    if cuda_device_problem() is not None:
        proc = cli("check", "--backends", "cupy", "--out", str(tmp_path / "o"))
        assert proc.returncode == 2 and "unavailable here" in proc.stderr
