"""The README's quick-start WebSocket example, run as written against a real daemon (its
port aside): each printed frame is the one its comment names."""

from __future__ import annotations

import ast
import asyncio
import logging
import re
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from chathub.listen import page_url
from tests.helpers import chat_client

README = Path(__file__).parent.parent / "README.md"


def python_examples() -> list[str]:
    """The README's ```python blocks, dedented (the Clients list indents its own)."""
    blocks = re.findall(r"^( *)```python\n(.*?)^ *```", README.read_text(), re.S | re.M)
    assert blocks, "README has no python example"
    return [textwrap.dedent(code) for _, code in blocks]


def quick_start_example() -> str:
    """The first ```python block of the README (the raw websockets example)."""
    return python_examples()[0]


async def test_quick_start_prints_what_its_comments_say(daemon):
    """welcome, then the chat stamped with an id, then (bob being offline) unknown_user."""
    code = quick_start_example()
    assert "ws://127.0.0.1:8080/ws?user=alice" in code
    code = code.replace("127.0.0.1:8080", f"127.0.0.1:{daemon.port}")
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code],
                                     capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    frames = [ast.literal_eval(line) for line in result.stdout.splitlines()]
    assert [f["type"] for f in frames] == ["welcome", "chat", "error"], frames
    assert frames[1]["text"] == "hello" and frames[1]["id"]
    assert frames[2]["code"] == "unknown_user"


async def test_the_start_up_line_names_the_browser_page(daemon_factory, caplog):
    """The README says ``make serve`` runs the daemon on http://127.0.0.1:8080/ and to open
    it in a browser: the start-up line names that address (it used to name only the
    WebSocket URL), and the address serves the chat page."""
    with caplog.at_level(logging.INFO, logger="chathub.server"):
        daemon = await daemon_factory()
    lines = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    url = f"http://127.0.0.1:{daemon.port}/"
    assert len(lines) == 1 and f"ws://127.0.0.1:{daemon.port}/ws" in lines[0], lines
    assert f"the browser page is {url} " in lines[0], lines
    page = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    assert b"<title>chathub</title>" in page


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8080/"), ("0.0.0.0", "http://127.0.0.1:8080/"),
    ("::", "http://[::1]:8080/"), ("::1", "http://[::1]:8080/"),
    ("chat.example.org", "http://chat.example.org:8080/")])
def test_the_page_address_is_one_a_browser_can_open(host, url):
    """A wildcard listener is named on loopback; an IPv6 address goes in brackets."""
    assert page_url(host, 8080) == url


async def test_the_client_library_example_runs_as_written(daemon):
    """The Clients section's ``chathub.client`` example is a whole program: pasted into a
    file it runs (it used to be a bare ``async with`` that Python refuses outside a
    coroutine) and prints its own chat, then another user's."""
    code = python_examples()[1]
    assert "ChatClient(" in code and "ws://127.0.0.1:8080/ws" in code
    code = code.replace("127.0.0.1:8080", f"127.0.0.1:{daemon.port}")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-u", "-c", code,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        # 30 s: a Python start-up and one chat, on a loaded 2-CPU machine
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert first == b"alice hello\n", first + await proc.stderr.read()
        async with chat_client(daemon.port, "bob") as bob:
            await bob.chat("hi alice")
            assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"bob hi alice\n"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def test_the_commands_table_names_every_command():
    """Each top-level command and group of ``chathub --help`` has a row in the README's
    Commands table (an operator who reads only the README finds every command)."""
    from chathub.cli import app
    from tests.test_cli_help import summaries

    table = README.read_text().split("## Commands", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"`chathub ([a-z-]+)", table))
    commands = {path[0] for path, _ in summaries(app)}
    assert len(commands) >= 18
    assert commands <= named, f"missing from the README's Commands table: {sorted(commands - named)}"


def test_the_docs_examples_reach_a_daemon_on_the_default_port():
    """Every chathub address in the README, docs/, examples/ and the package's own
    docstrings is on the port ``serve`` listens on by default, so an example pasted against
    a daemon started with defaults reaches it (docs/api.md's examples used 8765, and so did
    the docstrings of chathub.client and chathub.api and the FastAPI example)."""
    from chathub.config import Config

    default = Config().server.port
    root = README.parent
    pages = [README, *sorted((root / "docs").glob("*.md")), *sorted((root / "examples").rglob("*.*")),
             *sorted((root / "chathub").rglob("*.py")), *sorted((root / "tui").rglob("*.py"))]
    found = {(str(page.relative_to(root)), int(port)) for page in pages if page.is_file()
             for port in re.findall(r"(?:https?|wss?)://127\.0\.0\.1:(\d+)", page.read_text())}
    assert {name for name, _ in found} >= {"README.md", "docs/api.md", "chathub/api/__init__.py"}
    shop = ("examples/fastapi_app/app.py", 8000)  # the example shop's own address, not chathub's
    assert {(name, port) for name, port in found if port != default} - {shop} == set()
