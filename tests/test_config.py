"""Configuration: defaults, file, environment and flags, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from chathub import config as c
from chathub.cli import app


def test_defaults_are_the_documented_ones():
    """No file, no env: host 127.0.0.1, port 8080, data_dir .chathub."""
    cfg = c.load(None, environ={})
    assert (cfg.server.host, cfg.server.port, cfg.data_dir) == ("127.0.0.1", 8080, ".chathub")
    assert cfg.admin_socket == Path(".chathub/admin.sock")


def test_precedence_file_env_flags(tmp_path):
    """defaults < file < env < flags."""
    f = tmp_path / "c.toml"
    f.write_text('data_dir = "/from/file"\n[server]\nport = 1000\nhost = "0.0.0.0"\n')
    cfg = c.load(f, environ={"CHATHUB_SERVER_PORT": "2000", "CHATHUB_DATA_DIR": "/from/env"},
                 overrides={"server": {"port": 3000, "host": None}})
    assert cfg.server.port == 3000
    assert cfg.server.host == "0.0.0.0"
    assert cfg.data_dir == "/from/env"


def test_env_urls_and_lists():
    """CHATHUB_DATABASE_URL and list values from the environment."""
    cfg = c.load(None, environ={"CHATHUB_DATABASE_URL": "postgresql://x/y",
                                "CHATHUB_VALKEY_URL": "unix:///tmp/v.sock",
                                "CHATHUB_SERVER_ALLOWED_ORIGINS": "http://a, http://b"})
    assert cfg.database.url == "postgresql://x/y"
    assert cfg.valkey.url == "unix:///tmp/v.sock"
    assert cfg.server.allowed_origins == ["http://a", "http://b"]


@pytest.mark.parametrize("text, needle", [
    ("[server]\nprot = 1\n", "server.prot"),
    ("[sever]\nport = 1\n", "sever"),
    ('[server]\nport = "eighty"\n', "server.port"),
    ("[server]\nport = 70000\n", "server.port"),
    ("[cache]\nhistory_on_join = 5000\n", "cache.history_on_join"),
    ('[auth]\nmode = "token"\nsecret = "short"\n', "auth.secret"),
    ("[server]\nmax_text_chars = true\n", "server.max_text_chars"),
    ("data_dir = 5\n", "data_dir"),
])
def test_bad_keys_and_values_name_the_key(tmp_path, text, needle):
    """Unknown keys, wrong types and impossible values raise ConfigError naming the key."""
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(c.ConfigError) as info:
        c.load(f, environ={})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_env_value_names_the_variable_key():
    """A bad value in the environment names the key and says it came from there."""
    with pytest.raises(c.ConfigError, match="server.port in environment"):
        c.load(None, environ={"CHATHUB_SERVER_PORT": "x"})


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    """chathub serve with a bad key: exit code 2, one line, no traceback."""
    f = tmp_path / "bad.toml"
    f.write_text("[server]\nprot = 1\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(f)])
    assert result.exit_code == 2
    out = result.output.strip()
    assert out.count("\n") == 0 and "server.prot" in out and "Traceback" not in out


def test_example_config_is_valid_and_complete():
    """config.example.toml loads, and documents every key the dataclasses have."""
    example = Path(__file__).parent.parent / "config.example.toml"
    cfg = c.load(example, environ={})
    assert cfg == c.Config()
    import tomllib

    data = tomllib.loads(example.read_text())
    for name in c.SECTIONS:
        keys = set(c._field_types(type(getattr(cfg, name))))
        assert keys <= set(data.get(name, {})), f"[{name}] lacks {keys - set(data.get(name, {}))}"
