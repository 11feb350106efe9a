"""The deployment files: the systemd unit (verified by systemd-analyze where it is
installed), and the container files checked against chathub's defaults.

The Dockerfile and deploy/compose.yaml cannot run here (no container engine); what
can be checked is that they agree with the code: port, health path, stop signal,
timeouts, the wheel they build.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chathub.config import Config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "chathub.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min)?", value)
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on the unit, with ExecStart pointing at this chathub."""
    here = Path(sys.executable).parent / "chathub"
    assert here.exists(), here
    path = tmp_path / "chathub.service"
    path.write_text(unit_text.replace("/opt/chathub/bin/chathub", str(here)))
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here; the unit is checked by the other tests only")
    res = _verify(UNIT.read_text(), tmp_path)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr
    # and the check sees mistakes: systemd only warns about a bad value, so output counts
    bad = _verify(UNIT.read_text().replace("Type=notify", "Type=notyfi"), tmp_path)
    assert "notyfi" in bad.stdout + bad.stderr


def test_unit_is_notify_hardened_and_stops_within_its_timeout():
    svc = _unit()["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert svc["KillSignal"] == "SIGTERM" and svc["KillMode"] == "mixed"
    assert "chathub serve" in svc["ExecStart"]
    # the graceful stop (drain_timeout) and then the flush and services must fit
    assert _seconds(svc["TimeoutStopSec"]) >= Config().server.drain_timeout + 15
    assert svc["StateDirectory"] == "chathub"
    assert svc["Environment"] == "CHATHUB_DATA_DIR=/var/lib/chathub"
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "CapabilityBoundingSet": ""}.items():
        assert svc[key] == value, key


def test_unit_has_exec_reload_only_once_sighup_is_handled():
    """ExecReload sends SIGHUP: it belongs in the unit when serve handles SIGHUP, not before."""
    handles_hup = "SIGHUP" in (ROOT / "chathub" / "server.py").read_text()
    assert ("ExecReload" in _unit()["Service"]) == handles_hup


def test_deploy_md_describes_the_units_reload():
    """docs/deploy.md's systemd section says what the unit does on reload: with an
    ExecReload line in the unit, the page names it and no longer says SIGHUP is unhandled."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    exec_reload = _unit()["Service"].get("ExecReload")
    if exec_reload is None:
        assert "ExecReload=" not in text.split("## 4.")[0].split("## 3.")[1]
        return
    assert f"ExecReload={exec_reload}" in text
    assert "does not handle SIGHUP" not in text and "no `ExecReload`" not in text


def test_dockerfile_agrees_with_the_daemon():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) == 2 and stages[0][1] == "build"
    assert "python -m build --wheel" in text and "COPY --from=build" in text
    assert re.search(r"^USER chathub$", text, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*http://127\.0\.0\.1:8080/healthz", text, re.M)
    assert "CHATHUB_SERVER_PORT=8080" in text and re.search(r"^EXPOSE 8080$", text, re.M)
    # every package folder the wheel is built from is copied into the build stage
    for folder in ("chathub", "tui"):
        assert f"COPY {folder} ./{folder}" in text


def test_compose_file_agrees_with_the_daemon():
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    for needed in ("postgres:", "valkey:", "CHATHUB_DATABASE_URL: postgresql://",
                   "CHATHUB_VALKEY_URL: redis://valkey:6379", 'command: ["migrate"]',
                   "service_completed_successfully", "stop_signal: SIGTERM", '"127.0.0.1:8080:8080"'):
        assert needed in text, needed
    grace = re.search(r"stop_grace_period: (\d+)s", text)
    assert grace and int(grace.group(1)) >= Config().server.drain_timeout + 15
    assert "\t" not in text  # YAML forbids tabs for indentation


def test_every_file_deploy_md_installs_on_the_server_is_copied_there():
    """The server has only what step 1 copies to it: each file a later ``install`` line
    takes from the current folder (the config template, the unit) is in the ``scp`` line,
    and exists in the checkout under the path copied."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    shell = "\n".join(re.findall(r"```sh\n(.*?)```", text, re.S))
    copies = re.findall(r"^scp (.+) server:$", shell, re.M)
    assert len(copies) == 1, "step 1 should copy what the server needs in one scp line"
    copied = copies[0].split()
    assert any(c.startswith("dist/chathub-") and c.endswith(".whl") for c in copied), copied
    for path in copied[1:]:
        assert (ROOT / path).is_file(), path
    sources = [m.split()[-2] for m in re.findall(r"^sudo install (?!-d).*$", shell, re.M)]
    assert len(sources) >= 2, sources
    for src in sources:
        assert "/" not in src and src in {Path(c).name for c in copied}, src


def test_the_configuration_of_deploy_md_finds_the_units_daemon(tmp_path: Path):
    """The file docs/deploy.md writes, read without the unit's environment (as
    ``chathub status --config /etc/chathub/chathub.toml`` from a shell reads it), names the
    data dir the unit gives serve: commands reach the daemon's admin socket."""
    from chathub.configload import load

    text = (ROOT / "docs" / "deploy.md").read_text()
    (toml,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    f = tmp_path / "chathub.toml"
    f.write_text(toml)
    cfg = load(f, environ={}, serving=False)  # the secret is in the unit's environment file
    unit_env = dict(kv.split("=", 1) for kv in _unit()["Service"]["Environment"].split())
    assert cfg.data_dir == unit_env["CHATHUB_DATA_DIR"]
    assert cfg.admin_socket == Path(unit_env["CHATHUB_DATA_DIR"]) / "admin.sock"
    assert cfg.auth.mode == "token" and cfg.server.trusted_proxies == ["127.0.0.1"]
