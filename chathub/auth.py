"""Tokens for auth mode "token": HS256 JWTs whose ``sub`` is the user name.

:func:`mint` makes one (``chathub token``); :func:`verify` checks one at the upgrade.
Only HS256 is accepted (``alg: none`` and every other algorithm are refused), and
``exp`` is required.
"""

from __future__ import annotations

import time

import jwt

from .errors import ChathubError
from .protocol import valid_user

ALGORITHM = "HS256"


class TokenError(ChathubError, ValueError):
    """A token that is missing, malformed, expired or wrongly signed; the message says which."""


def mint(user: str, secret: str, ttl_seconds: float) -> str:
    """A token for ``user`` valid for ``ttl_seconds``."""
    if not valid_user(user):
        raise TokenError(f"invalid user name {user!r}")
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + int(ttl_seconds)}, secret, ALGORITHM)


def verify(token: str | None, secret: str) -> tuple[str, float]:
    """Return (user, expiry as epoch seconds) for a valid token.

    Raises:
        TokenError: with a one-line reason for the 401.
    """
    if not token:
        raise TokenError("missing token: pass ?token= or Authorization: Bearer")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError("token signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError("token algorithm not allowed (HS256 only)") from None
    except jwt.PyJWTError:
        raise TokenError("token is malformed") from None
    user = claims.get("sub")
    if not isinstance(user, str) or not valid_user(user):
        raise TokenError("token subject is not a valid user name")
    return user, float(claims["exp"])
