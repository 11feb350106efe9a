"""Client addresses behind reverse proxies: Forwarded, X-Forwarded-For, X-Forwarded-Proto."""

from __future__ import annotations

import json
import logging

import pytest
import websockets
from websockets.datastructures import Headers

from chathub import configload
from chathub.admin.client import call
from chathub.config import Config
from chathub.edge import proxies
from chathub.errors import ConfigError
from tests.helpers import ws_url
from tests.test_guard import refused


def h(*pairs: tuple[str, str]) -> Headers:
    return Headers(list(pairs))


# -- resolve(), no sockets ---------------------------------------------------------


def test_headers_from_an_untrusted_peer_are_ignored():
    """Anyone can send X-Forwarded-For: without trusted_proxies, or from another peer, it is ignored."""
    spoof = h(("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=7.7.7.7;proto=https"),
              ("X-Forwarded-Proto", "https"))
    assert proxies.resolve("203.0.113.9", spoof, []) == proxies.Client("203.0.113.9")
    assert proxies.resolve("203.0.113.9", spoof, ["127.0.0.1", "10.0.0.0/8"]) == \
        proxies.Client("203.0.113.9")


def test_x_forwarded_for_from_a_trusted_proxy():
    got = proxies.resolve("127.0.0.1", h(("X-Forwarded-For", "198.51.100.7"),
                                         ("X-Forwarded-Proto", "https")), ["127.0.0.1"])
    assert got == proxies.Client("198.51.100.7", "https", "127.0.0.1")


def test_right_most_untrusted_address_wins_over_a_spoofed_left_part():
    """The client wrote '6.6.6.6' itself; the proxy appended the real peer, 198.51.100.7."""
    got = proxies.resolve("10.0.0.5", h(("X-Forwarded-For", "6.6.6.6, 198.51.100.7")), ["10.0.0.0/8"])
    assert got.ip == "198.51.100.7"


def test_a_chain_of_two_trusted_proxies():
    """client → edge proxy (10.0.0.9) → local nginx (127.0.0.1) → chathub."""
    trusted = ["127.0.0.1", "10.0.0.0/24"]
    xff = h(("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.0.0.9"))
    assert proxies.resolve("127.0.0.1", xff, trusted).ip == "198.51.100.7"
    fwd = h(("Forwarded", 'for=6.6.6.6;proto=http, for=198.51.100.7;proto=https'),
            ("Forwarded", "for=10.0.0.9;proto=http"))
    assert proxies.resolve("127.0.0.1", fwd, trusted) == \
        proxies.Client("198.51.100.7", "https", "127.0.0.1")


def test_every_hop_trusted_gives_the_left_most():
    got = proxies.resolve("127.0.0.1", h(("X-Forwarded-For", "10.0.0.3, 10.0.0.9")),
                          ["127.0.0.1", "10.0.0.0/8"])
    assert got.ip == "10.0.0.3"


def test_forwarded_is_preferred_over_x_forwarded_for():
    got = proxies.resolve("127.0.0.1", h(("X-Forwarded-For", "192.0.2.1"),
                                         ("Forwarded", "for=192.0.2.2")), ["127.0.0.1"])
    assert got.ip == "192.0.2.2"


@pytest.mark.parametrize("header, value, ip", [
    ("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https', "2001:db8:cafe::17"),
    ("Forwarded", 'For="[2001:DB8::1]"', "2001:db8::1"),
    ("Forwarded", "for=192.0.2.60:8080;by=203.0.113.43", "192.0.2.60"),
    ("X-Forwarded-For", "2001:db8::abcd", "2001:db8::abcd"),
    ("X-Forwarded-For", "[2001:db8::abcd]:443", "2001:db8::abcd"),
    ("X-Forwarded-For", "::ffff:192.0.2.5", "192.0.2.5"),
])
def test_ipv6_and_ports(header, value, ip):
    assert proxies.resolve("::1", h((header, value)), ["::1"]).ip == ip


def test_ipv6_proxy_range_and_mapped_peer():
    """A v4-mapped peer matches a v4 range; an IPv6 range matches an IPv6 proxy."""
    assert proxies.resolve("::ffff:127.0.0.1", h(("X-Forwarded-For", "192.0.2.8")),
                           ["127.0.0.0/8"]).ip == "192.0.2.8"
    assert proxies.resolve("fd00::12", h(("X-Forwarded-For", "2001:db8::9, fd00::1")),
                           ["fd00::/64"]).ip == "2001:db8::9"


@pytest.mark.parametrize("headers", [
    [("X-Forwarded-For", "not-an-address")],
    [("X-Forwarded-For", "198.51.100.7, ,, 999.1.1.1")],
    [("X-Forwarded-For", " , ")],
    [("Forwarded", "for=unknown")],
    [("Forwarded", "for=_hidden;proto=https")],
    [("Forwarded", 'for="[2001:db8::1"')],
    [("Forwarded", "proto=https")],
    [("Forwarded", "garbage")],
    [("Forwarded", 'for="192.0.2.1')],
])
def test_malformed_headers_fall_back_to_the_proxy_address(headers):
    """A header that cannot be read is ignored: the connection counts as the proxy's, no error."""
    got = proxies.resolve("127.0.0.1", h(*headers), ["127.0.0.1"])
    assert got == proxies.Client("127.0.0.1", None, "127.0.0.1")


@pytest.mark.parametrize("header, value", [
    ("X-Forwarded-For", "<script>, unknown, 198.51.100.7"),
    ("Forwarded", "for=unknown, for=_hidden, for=198.51.100.7"),
    ("Forwarded", "proto=https, for=198.51.100.7"),
])
def test_junk_left_of_the_client_is_the_clients_own_and_is_skipped(header, value):
    """A client can write anything before the address the proxy appends: its address still counts."""
    assert proxies.resolve("127.0.0.1", h((header, value)), ["127.0.0.1"]).ip == "198.51.100.7"


def test_a_malformed_forwarded_falls_back_to_x_forwarded_for():
    got = proxies.resolve("127.0.0.1", h(("Forwarded", 'for="192.0.2.9'),
                                         ("X-Forwarded-For", "192.0.2.4")), ["127.0.0.1"])
    assert got.ip == "192.0.2.4"


def test_malformed_headers_are_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(proxies, "_warned", set())
    with caplog.at_level(logging.DEBUG, logger="chathub.edge.proxies"):
        for _ in range(3):
            proxies.resolve("127.0.0.1", h(("X-Forwarded-For", "nonsense")), ["127.0.0.1"])
    levels = [r.levelno for r in caplog.records if "malformed" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_forwarded_quoted_values_with_separators():
    value = 'for="192.0.2.43";ext="a,b;c\\"d", for=198.51.100.17;proto=https'
    assert proxies.parse_forwarded([value]) == [
        (proxies._address("192.0.2.43"), None), (proxies._address("198.51.100.17"), "https")]


def test_x_forwarded_proto_lines_up_with_hops_or_comes_from_the_nearest_proxy():
    trusted = ["127.0.0.1", "10.0.0.9"]
    aligned = h(("X-Forwarded-For", "198.51.100.7, 10.0.0.9"), ("X-Forwarded-Proto", "https, http"))
    assert proxies.resolve("127.0.0.1", aligned, trusted).scheme == "https"
    single = h(("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Proto", "javascript"))
    assert proxies.resolve("127.0.0.1", single, trusted).scheme is None


# -- configuration -------------------------------------------------------------------


def test_trusted_proxies_config_is_validated():
    cfg = configload.load(None, environ={}, overrides={
        "server": {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]}})
    assert cfg.server.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
    assert Config().server.trusted_proxies == []
    with pytest.raises(ConfigError) as info:
        configload.load(None, environ={}, overrides={"server": {"trusted_proxies": ["10.0.0.0/33"]}})
    msg = str(info.value)
    assert "server.trusted_proxies" in msg and "10.0.0.0/33" in msg and "\n" not in msg
    env = configload.load(None, environ={"CHATHUB_SERVER_TRUSTED_PROXIES": "127.0.0.1, ::1"})
    assert env.server.trusted_proxies == ["127.0.0.1", "::1"]


# -- through a real daemon -----------------------------------------------------------


async def _connect(port: int, user: str, local: str, headers: dict[str, str]):
    ws = await websockets.connect(ws_url(port, user=user), open_timeout=10, max_queue=None,
                                  additional_headers=headers, local_addr=(local, 0))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    return ws


async def test_per_ip_limit_and_admin_clients_use_the_forwarded_address(daemon_factory):
    """From the trusted proxy 127.0.0.1, two clients each get their own per-IP budget; a
    spoofing peer (127.0.0.2, untrusted) is counted as itself whatever it claims."""
    d = await daemon_factory(server={"max_connections_per_ip": 1,
                                     "trusted_proxies": ["127.0.0.1"]})
    a = await _connect(d.port, "a", "127.0.0.1", {"X-Forwarded-For": "198.51.100.1"})
    b = await _connect(d.port, "b", "127.0.0.1", {"X-Forwarded-For": "198.51.100.2"})
    status, body = await refused(ws_url(d.port, user="a2"),
                                 additional_headers={"X-Forwarded-For": "198.51.100.1"})
    assert status == 429 and b"your address" in body
    s = await _connect(d.port, "s", "127.0.0.2", {"X-Forwarded-For": "198.51.100.3"})
    status, _ = await refused(ws_url(d.port, user="s2"), local_addr=("127.0.0.2", 0),
                              additional_headers={"X-Forwarded-For": "198.51.100.9"})
    assert status == 429  # the spoofed header did not buy 127.0.0.2 a second budget
    reply = await call(d.cfg.admin_socket, "clients")
    addrs = {c["user"]: c["remote_addr"] for c in reply["clients"]}
    assert addrs == {"a": "198.51.100.1", "b": "198.51.100.2", "s": "127.0.0.2"}
    for ws in (a, b, s):
        await ws.close()


async def test_a_malformed_header_never_refuses(daemon_factory):
    d = await daemon_factory(server={"trusted_proxies": ["127.0.0.1"]})
    ws = await _connect(d.port, "m", "127.0.0.1", {"X-Forwarded-For": "<script>",
                                                   "Forwarded": "for=;;"})
    reply = await call(d.cfg.admin_socket, "clients")
    assert [c["remote_addr"] for c in reply["clients"]] == ["127.0.0.1"]
    await ws.close()
