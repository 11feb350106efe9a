"""Configuration: defaults, file, environment and flags, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from chathub.cli import app
from chathub.config import SECTIONS, Config, field_types
from chathub.configload import load
from chathub.errors import ConfigError


def test_defaults_are_the_documented_ones():
    """No file, no env: host 127.0.0.1, port 8080, data_dir .chathub."""
    cfg = load(None, environ={})
    assert (cfg.server.host, cfg.server.port, cfg.data_dir) == ("127.0.0.1", 8080, ".chathub")
    assert cfg.admin_socket == Path(".chathub/admin.sock")


def test_precedence_file_env_flags(tmp_path):
    """defaults < file < env < flags."""
    f = tmp_path / "c.toml"
    f.write_text('data_dir = "/from/file"\n[server]\nport = 1000\nhost = "0.0.0.0"\n')
    cfg = load(f, environ={"CHATHUB_SERVER_PORT": "2000", "CHATHUB_DATA_DIR": "/from/env"},
               overrides={"server": {"port": 3000, "host": None}})
    assert cfg.server.port == 3000
    assert cfg.server.host == "0.0.0.0"
    assert cfg.data_dir == "/from/env"


def test_env_urls_and_lists():
    """CHATHUB_DATABASE_URL and list values from the environment."""
    cfg = load(None, environ={"CHATHUB_DATABASE_URL": "postgresql://x/y",
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
    with pytest.raises(ConfigError) as info:
        load(f, environ={})
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("var, value, section, key, expected", [
    ("CHATHUB_SERVER_UVLOOP", "off", "server", "uvloop", False),
    ("CHATHUB_SERVER_UVLOOP", "YES", "server", "uvloop", True),
    ("CHATHUB_SERVER_PORT", " 12 ", "server", "port", 12),
    ("CHATHUB_CACHE_FLUSH_INTERVAL", "2", "cache", "flush_interval", 2.0),
    ("chathub_server_port", "12", "server", "port", 8080),
    ("CHATHUB_API_KEYS", " , ", "api", "keys", []),
])
def test_env_strings_are_read_as_the_key_type(var, value, section, key, expected):
    """Environment strings become the key's type: bool words, numbers, comma lists;
    the prefix is matched in upper case only."""
    cfg = load(None, environ={var: value})
    got = getattr(getattr(cfg, section), key)
    assert got == expected and type(got) is type(expected)


def test_env_variables_that_name_no_section_are_ignored():
    """Unknown sections (another tool's variables) and the test suite's CHATHUB_TEST_*
    change nothing; an unknown key of a known section is refused (test below)."""
    cfg = load(None, environ={"CHATHUB_NOPE_X": "1", "CHATHUB_TEST_SERVER_PORT": "1"})
    assert cfg == Config()


def test_a_file_named_env_is_typed_like_any_file(tmp_path, monkeypatch):
    """Strings are read as numbers only from the environment, not from a file whose
    relative path happens to start with "env"."""
    monkeypatch.chdir(tmp_path)
    Path("env.toml").write_text('[server]\nport = "2000"\n')
    with pytest.raises(ConfigError, match="server.port in env.toml: expected an integer"):
        load("env.toml", environ={})


def test_bad_env_value_names_the_variable_key():
    """A bad value in the environment names the key and says it came from there."""
    with pytest.raises(ConfigError,
                       match=r"^server\.port in environment \(CHATHUB_SERVER_PORT\): expected an integer"):
        load(None, environ={"CHATHUB_SERVER_PORT": "x"})


def test_an_out_of_range_value_names_the_layer_that_set_it(tmp_path):
    """A port out of range from a flag or a variable is blamed on the flag or the variable,
    not on the file that was read before them (the file's port is fine)."""
    f = tmp_path / "ok.toml"
    f.write_text("[server]\nport = 8080\n")
    with pytest.raises(ConfigError, match=r"^server\.port in command-line flags: must be 0-65535"):
        load(f, environ={}, overrides={"server": {"port": 99999}})
    with pytest.raises(ConfigError,
                       match=r"^server\.port in environment \(CHATHUB_SERVER_PORT\): must be 0-65535"):
        load(f, environ={"CHATHUB_SERVER_PORT": "70000"})
    f.write_text("[server]\nport = 70000\n")
    with pytest.raises(ConfigError, match=rf"^server\.port in {f}: must be 0-65535"):
        load(f, environ={})


def test_serve_with_a_bad_flag_says_the_flag_is_wrong(tmp_path):
    """chathub serve --port 99999 with a good file: exit 2, one line naming the flags."""
    f = tmp_path / "ok.toml"
    f.write_text("[server]\nport = 8080\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(f), "--port", "99999"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == ["chathub: server.port in command-line flags: must be 0-65535, got 99999"], lines


def test_commands_other_than_serve_run_without_the_daemons_token_secret(tmp_path, monkeypatch):
    """docs/deploy.md keeps ``mode = "token"`` in the file and the secret in the unit's
    environment file: an operator's shell lacks it. status (and every admin command) and
    migrate still run; serve refuses; token says it needs the secret to mint."""
    monkeypatch.delenv("CHATHUB_AUTH_SECRET", raising=False)
    f = tmp_path / "chathub.toml"
    f.write_text(f'data_dir = "{tmp_path / "data"}"\n[auth]\nmode = "token"\n')
    runner = CliRunner()
    status = runner.invoke(app, ["status", "--config", str(f)])
    assert status.exit_code == 2 and "no chathub daemon answers on" in status.output, status.output
    assert "auth.secret" not in status.output
    migrate = runner.invoke(app, ["migrate", "--config", str(f),
                                  "--database-url", "postgresql://nobody@127.0.0.1:1/x"])
    assert migrate.exit_code == 1 and "auth.secret" not in migrate.output, migrate.output
    serve = runner.invoke(app, ["serve", "--config", str(f)])
    assert serve.exit_code == 2, serve.output
    assert "auth.secret" in serve.output and "at least 32 bytes in token mode" in serve.output
    token = runner.invoke(app, ["token", "alice", "--config", str(f)])
    assert token.exit_code == 2 and "to mint tokens" in token.output, token.output


def test_an_admin_socket_path_too_long_for_unix_is_refused_at_load():
    """A data dir deep enough that <data_dir>/admin.sock passes the 107 bytes of a Unix
    socket path: one line naming data_dir (serve used to start the services, migrate, and
    die with a traceback, "AF_UNIX path too long"); a short [admin] socket fixes it."""
    deep = "/srv/" + "d" * 100
    with pytest.raises(ConfigError, match=r"^data_dir in environment \(CHATHUB_DATA_DIR\): "
                                          r"the admin socket /srv/d+/admin\.sock would be 116 bytes"):
        load(None, environ={"CHATHUB_DATA_DIR": deep})
    cfg = load(None, environ={"CHATHUB_DATA_DIR": deep, "CHATHUB_ADMIN_SOCKET": "/run/chathub.sock"})
    assert str(cfg.admin_socket) == "/run/chathub.sock"
    fits = "/srv/" + "d" * (107 - len("/srv//admin.sock"))
    assert len(str(load(None, environ={"CHATHUB_DATA_DIR": fits}).admin_socket)) == 107


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
    cfg = load(example, environ={})
    assert cfg == Config()
    import tomllib

    data = tomllib.loads(example.read_text())
    for name in SECTIONS:
        keys = set(field_types(type(getattr(cfg, name))))
        assert keys <= set(data.get(name, {})), f"[{name}] lacks {keys - set(data.get(name, {}))}"


def test_env_unknown_key_in_a_section_names_the_variable():
    """CHATHUB_API_KEY (for CHATHUB_API_KEYS) or CHATHUB_SERVER_PROT stops start-up naming
    the key and the variable; variables outside every section (another tool's) pass."""
    for var, key in (("CHATHUB_API_KEY", "api.key"), ("CHATHUB_SERVER_PROT", "server.prot")):
        with pytest.raises(ConfigError) as info:
            load(None, environ={var: "1"})
        assert key in str(info.value) and var in str(info.value)
        assert "\n" not in str(info.value)
    cfg = load(None, environ={"CHATHUB_LOCK_FD": "3", "CHATHUB_BENCH_GORILLA": "/x",
                                "CHATHUB_UPDATE_SNAPSHOTS": "1"})
    assert cfg == Config()


@pytest.mark.parametrize("flag, url, key", [
    ("--valkey-url", "http://cache.internal:6379", "valkey.url"),
    ("--valkey-url", "cache.internal:6379", "valkey.url"),
    ("--database-url", "mysql://db.internal/chat", "database.url"),
    ("--database-url", "db.internal:5432", "database.url"),
])
def test_cli_url_with_a_wrong_scheme_exits_2_naming_the_key(tmp_path, flag, url, key):
    """A URL no client can use is a bad value (one line naming the key, exit 2), not a
    traceback or a "cannot reach" after the embedded services started."""
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "d"), flag, url])
    assert result.exit_code == 2, result.output
    out = result.output.strip()
    assert out.count("\n") == 0 and key in out and "Traceback" not in out
    assert not (tmp_path / "d").exists()  # refused before anything started


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://h/db", "redis://h:6379/0",
                                 "rediss://h", "valkey://h", "unix:///tmp/v.sock"])
def test_usable_url_schemes_load(url):
    """Every scheme asyncpg or the Valkey client accepts passes validation."""
    key = "database" if url.startswith("postgres") else "valkey"
    assert getattr(load(None, environ={}, overrides={key: {"url": url}}), key).url == url


def test_cli_negative_workers_exits_2(tmp_path):
    """serve --workers -1 is refused with one line (it used to start one worker per core)."""
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "d"),
                                      "--workers", "-1"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "--workers" in result.output
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("make, needle", [
    (lambda d: d, "is a directory"),
    (lambda d: (d / "latin.toml").write_bytes(b'data_dir = "caf\xe9"\n') and d / "latin.toml",
     "not UTF-8"),
])
def test_cli_config_file_that_cannot_be_read_exits_2(tmp_path, make, needle):
    """--config naming a directory, or a file that is not UTF-8: one line, exit 2 (they
    were tracebacks)."""
    path = make(tmp_path)
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2, result.output
    out = result.output.strip()
    assert out.count("\n") == 0 and needle in out and str(path) in out
