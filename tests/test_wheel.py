"""The wheel is the product: build it, install it into a fresh virtualenv, run it.

Everything else in the suite runs from the editable install, where a file left out
of the wheel still sits next to the code. Here the checkout is copied (without
build leftovers), built with ``python -m build --wheel``, and installed into a new
virtualenv; then ``chathub serve`` runs from a temp folder with no checkout on the
path, on embedded PostgreSQL and Valkey, until SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chathub import __version__
from tests.procs import START_TIMEOUT, free_port

ROOT = Path(__file__).resolve().parent.parent
#: what a copy of the checkout leaves out: build output, virtualenvs, caches, data dirs
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".*_cache", ".hypothesis", ".chathub", "bench", "*.pyc")
#: seconds for building the wheel and for installing it with its dependencies
BUILD_TIMEOUT = 180
INSTALL_TIMEOUT = 300


def _env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, no chathub settings, no virtualenv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "NOTIFY_SOCKET")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CHATHUB_")}
    return {**env, **extra}


def _run(args: list[str], cwd: Path, timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, **kw)
    assert res.returncode == 0, f"{args[:3]} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _source_files(top: str) -> set[str]:
    base = ROOT / top
    return {p.relative_to(base).as_posix() for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _processes_mentioning(text: str) -> list[str]:
    """Command lines that mention ``text`` (an embedded server's data folder)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the virtualenv's bin folder) for a wheel built from a copy of the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    t0 = time.monotonic()
    res = _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(src)],
               work, BUILD_TIMEOUT)
    built = time.monotonic()
    assert "deprecat" not in (res.stdout + res.stderr).lower(), res.stderr[-3000:]
    (wheel,) = (work / "dist").glob("chathub-*.whl")
    _run([sys.executable, "-m", "venv", str(work / "venv")], work, 120)
    bin_ = work / "venv" / "bin"
    _run([str(bin_ / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          str(wheel)], work, INSTALL_TIMEOUT)
    print(f"wheel built in {built - t0:.1f}s, installed in {time.monotonic() - built:.1f}s")
    yield wheel, bin_
    shutil.rmtree(work, ignore_errors=True)


def test_the_wheel_holds_every_runtime_file_and_no_top_level_tui(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert tops == {"chathub", f"chathub-{__version__}.dist-info"}, tops
    missing = {f"chathub/{f}" for f in _source_files("chathub")} - names
    missing |= {f"chathub/tui/{f}" for f in _source_files("tui")} - names
    assert not missing, f"left out of the wheel: {sorted(missing)}"
    meta = zipfile.ZipFile(wheel).read(f"chathub-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in meta


def test_serve_from_the_installed_wheel(installed, short_dir: Path):
    """Fresh virtualenv, temp cwd: serve → /healthz 200, / serves the page, status answers,
    SIGTERM → exit 0 and no embedded server left running."""
    _, bin_ = installed
    cwd = short_dir
    where = _run([str(bin_ / "python"), "-c", "import chathub, chathub.tui.app; print(chathub.__file__)"],
                 cwd, 60).stdout.strip()
    assert where.startswith(str(bin_.parent)) and str(ROOT) not in where
    assert _run([str(bin_ / "chathub"), "--version"], cwd, 60).stdout.strip() == f"chathub {__version__}"
    assert _run([str(bin_ / "python"), "-m", "chathub", "--version"], cwd, 60).stdout.strip() == \
        f"chathub {__version__}"
    data, port = cwd / "data", free_port()
    log = (cwd / "serve.log").open("wb")
    proc = subprocess.Popen([str(bin_ / "chathub"), "serve", "--data-dir", str(data), "--port", str(port)],
                            cwd=cwd, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, (cwd / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (cwd / "serve.log").read_text()[-3000:]
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        status = _run([str(bin_ / "chathub"), "status", "--json", "--socket", str(data / "admin.sock")],
                      cwd, 60).stdout
        assert '"connections": 0' in status
        running = " | ".join(_processes_mentioning(str(data)))
        assert "postgres" in running and "valkey-server" in running, running
        # the line docs/deploy.md tells the operator to look for in systemctl status
        (said,) = re.findall(r'systemctl status chathub +# "([^"]+)" once ready',
                             (ROOT / "docs" / "deploy.md").read_text())
        assert said.replace(":8080/", f":{port}/") in (cwd / "serve.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (cwd / "serve.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert _processes_mentioning(str(data)) == []
    assert not (data / "pg" / "data" / "postmaster.pid").exists()


def test_a_missing_package_file_is_named(installed, short_dir: Path):
    """Without cache.lua, serve says that file is missing; it does not blame Valkey."""
    _, bin_ = installed
    site = _run([str(bin_ / "python"), "-c", "import chathub; print(chathub.__file__)"],
                short_dir, 60).stdout.strip()
    lua = Path(site).parent / "cache.lua"
    saved = lua.read_bytes()
    lua.unlink()
    data = short_dir / "data"
    try:
        res = subprocess.run([str(bin_ / "chathub"), "serve", "--data-dir", str(data), "--port", "0"],
                             cwd=short_dir, env=_env(), capture_output=True, text=True, timeout=90)
    finally:
        lua.write_bytes(saved)
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "chathub/cache.lua is missing" in last and "Valkey" not in last, res.stderr[-2000:]
    assert _processes_mentioning(str(data)) == []
