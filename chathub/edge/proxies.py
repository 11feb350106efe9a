"""The client's real address behind reverse proxies (``[server] trusted_proxies``).

Behind nginx every connection comes from the proxy's address. When the peer is
one of ``trusted_proxies`` (addresses or CIDR ranges), :func:`resolve` reads the
chain of addresses the proxies recorded, from ``Forwarded`` (RFC 7239) when
present, else ``X-Forwarded-For``, and walks it from the right: the first
address that is not itself a trusted proxy is the client. (A proxy appends the
address it received the request from, so everything left of an untrusted hop
may have been written by the client and is never believed.) The scheme the
client used comes from the same ``Forwarded`` element's ``proto=``, or from
``X-Forwarded-Proto``.

When the peer is not trusted, the headers are ignored: anyone can send them.
A header that cannot be read is ignored too (the peer's own address is used),
logged once at WARNING and then at DEBUG, and never refuses a connection. An
unreadable entry left of the client's address is the client's own writing and is
skipped like the rest of that part.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from ..errors import ChathubError

if TYPE_CHECKING:
    from websockets.datastructures import Headers

log = logging.getLogger("chathub.edge.proxies")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: characters of a malformed header quoted in the log line
_LOG_CHARS = 200
#: header names already warned about (the first malformed value of each is a WARNING)
_warned: set[str] = set()


@dataclass(frozen=True, slots=True)
class Client:
    """Where a connection really comes from."""

    #: the client's address, normalised (``::ffff:10.0.0.1`` → ``10.0.0.1``), or "unknown"
    ip: str
    #: "https" or "http" as a trusted proxy reported it; None when not behind a trusted proxy
    scheme: str | None = None
    #: the peer's address when it is a trusted proxy, else None
    proxy: str | None = None


class MalformedHeader(ChathubError, ValueError):
    """A forwarding header that cannot be read; it is ignored."""


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "::1"]`` → networks. Raises ValueError naming the bad entry."""
    out = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not an IP address or CIDR range") from None
    return tuple(out)


@lru_cache(maxsize=8)
def _networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(specs)


def _address(text: str) -> Address:
    """An address, unwrapping IPv4-mapped IPv6; raises ValueError."""
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _node(text: str) -> Address:
    """A node as proxies write it: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]``, ``[::1]:80``, ``::1``."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            raise ValueError(text)
        return _address(text[1:end])
    if text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    return _address(text)


def _split_quoted(value: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes (RFC 7230 quoted-string, with \\-escapes)."""
    parts, cur, quoted, escape = [], [], False, False
    for ch in value:
        if escape:
            cur.append("\\" + ch)  # kept escaped; unquoted once the value is cut out
            escape = False
        elif quoted and ch == "\\":
            escape = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise MalformedHeader("unbalanced quotes")
    parts.append("".join(cur))
    return parts


def parse_forwarded(values: Sequence[str]) -> list[tuple[Address | None, str | None]]:
    """RFC 7239 ``Forwarded`` header lines → [(for address, proto)], left (client) first.

    An element whose ``for=`` gives no address (missing, ``unknown``, an obfuscated
    ``_identifier``, garbage) has None: it matters only if the walk from the right
    reaches it.

    Raises:
        MalformedHeader: the header's structure cannot be read (pairs, quotes).
    """
    hops: list[tuple[Address | None, str | None]] = []
    for line in values:
        for element in _split_quoted(line, ","):
            if not element.strip():
                continue
            params: dict[str, str] = {}
            for pair in _split_quoted(element, ";"):
                name, eq, val = pair.strip().partition("=")
                if not eq or not name:
                    raise MalformedHeader(f"bad pair {pair.strip()!r}")
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] == '"':
                    val = re.sub(r"\\(.)", r"\1", val[1:-1])
                params[name.strip().lower()] = val
            try:
                addr: Address | None = _node(params.get("for", ""))
            except ValueError:
                addr = None
            hops.append((addr, params.get("proto")))
    if not hops:
        raise MalformedHeader("empty")
    return hops


def parse_x_forwarded_for(values: Sequence[str]) -> list[Address | None]:
    """``X-Forwarded-For`` header lines → addresses (None where unreadable), left (client) first."""
    out: list[Address | None] = []
    for line in values:
        for item in line.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                out.append(_node(item))
            except ValueError:
                out.append(None)
    if not out:
        raise MalformedHeader("empty")
    return out


def _scheme(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value in ("http", "https") else None


def _malformed(header: str, value: str, exc: Exception) -> None:
    level = logging.DEBUG if header in _warned else logging.WARNING
    _warned.add(header)
    log.log(level, "ignoring a malformed %s header from a trusted proxy (%s): %r%s", header, exc,
            value[:_LOG_CHARS], "" if level == logging.DEBUG else "; further ones are logged at DEBUG")


def resolve(peer: str | None, headers: Headers, trusted_proxies: Sequence[str]) -> Client:
    """The real client of a connection from ``peer`` with request ``headers``.

    Args:
        peer: the TCP peer's address (``connection.remote_address[0]``), or None.
        headers: the HTTP request headers.
        trusted_proxies: ``[server] trusted_proxies``: addresses and CIDR ranges.
    """
    if peer is None:
        return Client("unknown")
    try:
        peer_ip = _address(peer)
    except ValueError:
        return Client(peer)
    nets = _networks(tuple(trusted_proxies)) if trusted_proxies else ()
    if not any(peer_ip in n for n in nets):
        return Client(str(peer_ip))

    def trusted(ip: Address) -> bool:
        return any(ip in n for n in nets)

    hops: list[tuple[Address | None, str | None]] | None = None
    header = "Forwarded"
    forwarded = headers.get_all("Forwarded")
    if forwarded:
        try:
            hops = parse_forwarded(forwarded)
        except MalformedHeader as exc:
            _malformed("Forwarded", ", ".join(forwarded), exc)
    if hops is None:
        header = "X-Forwarded-For"
        xff = headers.get_all(header)
        if xff:
            try:
                addrs = parse_x_forwarded_for(xff)
            except MalformedHeader as exc:
                _malformed("X-Forwarded-For", ", ".join(xff), exc)
            else:
                protos = [p.strip() for line in headers.get_all("X-Forwarded-Proto")
                          for p in line.split(",") if p.strip()]
                if len(protos) == len(addrs):  # one value per hop: each lines up with its address
                    hops = list(zip(addrs, protos, strict=True))
                else:  # one value (or a mismatch): the nearest proxy's word, for every hop
                    last = protos[-1] if protos else None
                    hops = [(a, last) for a in addrs]
    if not hops:
        return Client(str(peer_ip), None, str(peer_ip))
    # right to left: the first hop that is not one of ours is the client
    for addr, proto in reversed(hops):
        if addr is None:  # a hop our proxies wrote, yet unreadable: no client address to trust
            _malformed(header, ", ".join(headers.get_all(header)), MalformedHeader("no address"))
            return Client(str(peer_ip), None, str(peer_ip))
        if not trusted(addr):
            return Client(str(addr), _scheme(proto), str(peer_ip))
    addr, proto = hops[0]  # every hop is trusted: the left-most is the client
    return Client(str(addr), _scheme(proto), str(peer_ip))
