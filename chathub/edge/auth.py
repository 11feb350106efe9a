"""Tokens for auth mode "token": HS256 JWTs whose ``sub`` is the user name.

:func:`mint` makes one (``chathub token``); :func:`verify` checks one at the upgrade.
Only HS256 is accepted (``alg: none`` and every other algorithm are refused),
``exp`` is required, and ``iat``, ``nbf`` and ``exp`` are checked with ``auth.clock_skew``
seconds of leeway.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jwt

from ..errors import ChathubError
from ..protocol import valid_user

ALGORITHM = "HS256"
#: seconds of clock difference tolerated by default (``auth.clock_skew``)
DEFAULT_CLOCK_SKEW = 30.0


class TokenError(ChathubError, ValueError):
    """A token that is missing, malformed, expired or wrongly signed; the message says which."""


def mint(user: str, secret: str, ttl_seconds: float, channels: tuple[str, ...] = ()) -> str:
    """A token for ``user`` valid for ``ttl_seconds``; ``channels`` names the private
    channels (or glob patterns such as ``$team-*``) it may subscribe to."""
    if not valid_user(user):
        raise TokenError(f"invalid user name {user!r}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now, "exp": now + int(ttl_seconds)}
    if channels:
        claims["channels"] = list(channels)
    return jwt.encode(claims, secret, ALGORITHM)


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519 section 2: a JSON number of seconds), or None if absent.

    Raises:
        TokenError: the claim is not a finite number (a string, a boolean, NaN, ...).
    """
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TokenError(f"token claim {name!r} must be a number of seconds (RFC 7519 NumericDate)")
    return float(value)


def verify(token: str | None, secret: str, clock_skew: float = DEFAULT_CLOCK_SKEW,
           now: float | None = None) -> tuple[str, float, tuple[str, ...]]:
    """Return (user, expiry as epoch seconds with the skew, private channels) for a valid
    token. ``channels``, when present, is a list of channel names or glob patterns.

    The signature is checked first (HS256 only); then every registered claim chathub
    reads is checked for its RFC 7519 type: ``sub`` a string that is a valid user name,
    ``exp`` (required), ``nbf`` and ``iat`` NumericDates. Times allow ``clock_skew``
    seconds either way, for servers whose clocks differ a little.

    Raises:
        TokenError: with a one-line reason for the 401 ("token is not yet valid",
            "token expired", "token claim 'exp' must be ...", ...).
    """
    if not token:
        raise TokenError("missing token: pass ?token= or Authorization: Bearer")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"verify_exp": False, "verify_nbf": False,
                                     "verify_iat": False, "verify_aud": False,
                                     "verify_iss": False, "verify_sub": False,
                                     "verify_jti": False})
    except jwt.InvalidSignatureError:
        raise TokenError("token signature is invalid") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError("token algorithm not allowed (HS256 only)") from None
    except jwt.PyJWTError:
        raise TokenError("token is malformed") from None
    if not isinstance(claims, dict):  # pragma: no cover - PyJWT returns the payload object
        raise TokenError("token is malformed")
    now = time.time() if now is None else now
    exp = _numeric_date(claims, "exp")
    nbf = _numeric_date(claims, "nbf")
    iat = _numeric_date(claims, "iat")
    if exp is None:
        raise TokenError("token lacks the 'exp' claim")
    if "sub" not in claims:
        raise TokenError("token lacks the 'sub' claim")
    user = claims["sub"]
    if not isinstance(user, str) or not valid_user(user):
        raise TokenError("token subject is not a valid user name")
    if nbf is not None and nbf > now + clock_skew:
        raise TokenError("token is not yet valid (nbf is in the future)")
    if iat is not None and iat > now + clock_skew:
        raise TokenError("token is not yet valid (issued in the future)")
    if exp + clock_skew <= now:
        raise TokenError("token expired")
    rights = claims.get("channels", [])
    if not isinstance(rights, list) or not all(isinstance(r, str) and 0 < len(r) <= 65
                                               for r in rights):
        raise TokenError("token claim 'channels' must be a list of channel names or patterns")
    return user, exp + clock_skew, tuple(rights)
