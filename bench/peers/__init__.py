"""Peers and tools the benchmark builds or installs for itself, outside the repository.

- **Node ``ws``** (:func:`node_ws`): ``npm install ws@WS_VERSION`` into a cache folder
  (``$CHATHUB_BENCH_CACHE``, default ``~/.cache/chathub-bench``) when ``node`` and
  ``npm`` are on the PATH; ``bench/peers/ws_server.cjs`` loads it from there.
- **The Go hub** (:func:`gorilla_chat`): gorilla/websocket's ``examples/chat`` from a
  checkout of that repository at tag v1.5.3 named by ``$CHATHUB_BENCH_GORILLA``,
  built with ``go`` (``golang-go`` from Debian) into a temporary folder, offline
  (``GOFLAGS=-mod=mod GOPROXY=off``: the example needs nothing outside the repository).
- **The Go load generator** (:func:`go_generator`): ``bench/gen`` (standard library
  only), built into the cache folder, keyed by a hash of its source.

Each returns what to run, or raises :class:`Unavailable` with one line saying why,
which the harness prints before skipping that peer (or falling back to the Python
generator).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: the ``ws`` release the Node peer runs
WS_VERSION = "8.18.3"
#: the gorilla/websocket tag whose chat example is the Go peer
GORILLA_TAG = "v1.5.3"
#: environment variable naming a gorilla/websocket checkout
GORILLA_ENV = "CHATHUB_BENCH_GORILLA"
HERE = Path(__file__).resolve().parent
GEN_SRC = HERE.parent / "gen"
#: seconds an install or build may take
BUILD_TIMEOUT = 300


class Unavailable(RuntimeError):
    """A peer or tool cannot be used here; the message says why in one line."""


def cache_dir() -> Path:
    base = os.environ.get("CHATHUB_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "chathub-bench")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _go_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local", CGO_ENABLED="0")
    env.setdefault("GOCACHE", str(cache_dir() / "go-build"))
    env.setdefault("GOPATH", str(tmp / "gopath"))
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    try:
        p = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{' '.join(cmd[:3])} failed: {exc}") from None
    if p.returncode:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
        raise Unavailable(f"{' '.join(cmd[:3])} failed: {tail[0]}")


def node_ws() -> Path:
    """The folder holding ``node_modules/ws`` (installed on first use)."""
    if not shutil.which("node"):
        raise Unavailable("node is not installed (apt-get install nodejs npm)")
    folder = cache_dir() / f"node-ws-{WS_VERSION}"
    if (folder / "node_modules" / "ws" / "package.json").exists():
        return folder
    if not shutil.which("npm"):
        raise Unavailable("npm is not installed (apt-get install npm)")
    folder.mkdir(parents=True, exist_ok=True)
    _run(["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund",
          "--no-package-lock", f"ws@{WS_VERSION}"], folder)
    return folder


def gorilla_chat(out_dir: Path) -> tuple[Path, str]:
    """Build the chat example of the checkout in ``$CHATHUB_BENCH_GORILLA`` into ``out_dir``;
    (binary, a line describing the checkout's version)."""
    src = os.environ.get(GORILLA_ENV)
    if not src:
        raise Unavailable(f"{GORILLA_ENV} is not set (a gorilla/websocket checkout at {GORILLA_TAG})")
    root = Path(src).expanduser().resolve()
    if not (root / "examples" / "chat" / "hub.go").exists() or not (root / "go.mod").exists():
        raise Unavailable(f"{root} holds no gorilla/websocket checkout (examples/chat/hub.go, go.mod)")
    if not shutil.which("go"):
        raise Unavailable("go is not installed (apt-get install golang-go)")
    version = "exported tree"
    if (root / ".git").exists():
        p = subprocess.run(["git", "-C", str(root), "describe", "--tags", "--always"],
                           capture_output=True, text=True, timeout=30)
        version = p.stdout.strip() or "unknown"
        if version != GORILLA_TAG:
            print(f"bench: {root} is at {version}, not {GORILLA_TAG}; its figures may differ")
    exe = out_dir / "gorilla-chat"
    _run(["go", "build", "-o", str(exe), "./examples/chat"], root, _go_env(out_dir))
    return exe, version


def go_generator() -> Path:
    """The Go load generator, built from ``bench/gen`` on first use (cached by source hash)."""
    if not shutil.which("go"):
        raise Unavailable("go is not installed (apt-get install golang-go)")
    digest = hashlib.sha256()
    for f in sorted(GEN_SRC.glob("*")):
        if f.suffix in (".go", ".mod"):
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
    exe = cache_dir() / f"gen-{digest.hexdigest()[:12]}"
    if exe.exists():
        return exe
    with tempfile.TemporaryDirectory(prefix="chbgen") as tmp:
        _run(["go", "build", "-o", str(exe), "."], GEN_SRC, _go_env(Path(tmp)))
    return exe
