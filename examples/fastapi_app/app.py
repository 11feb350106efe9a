"""A shop that embeds chathub: log in, chat with the team, hear about shipped orders.

Run it next to a daemon in auth mode "token" with an API key:

    CHATHUB_AUTH_MODE=token CHATHUB_AUTH_SECRET=... CHATHUB_API_KEYS=... chathub serve
    SHOP_CHATHUB_URL=http://127.0.0.1:8080 SHOP_CHATHUB_SECRET=... SHOP_CHATHUB_API_KEY=... \\
        uvicorn --factory examples.fastapi_app.app:from_env --port 8000

Then open http://127.0.0.1:8000/login?user=alice and, in another terminal,
``curl -X POST -b session=... http://127.0.0.1:8000/orders/1234/ship``.

What it shows:

- ``/login?user=NAME`` signs the user in (a signed cookie; a real shop checks a password);
- ``/token`` mints a chathub token for the signed-in user (:func:`chathub.edge.auth.mint`),
  which the page hands to ``/chathub.js``; the secret never reaches the browser;
- ``POST /orders/{id}/ship`` posts "order ID shipped" into the ``orders`` channel as
  ``system`` through the HTTP API (:class:`chathub.api.AsyncAPIClient`), with an
  idempotency key so a retried request announces the order once.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import secrets

from fastapi import Cookie, FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse

from chathub.api import AsyncAPIClient, ChatError
from chathub.edge.auth import mint
from chathub.protocol import valid_user

#: seconds a minted chathub token is valid; the page asks for a new one on reconnect
TOKEN_TTL = 3600

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title></head>
<body>
<p>Signed in as <b>{user}</b>. Channel <b>{channel}</b>:</p>
<ul id="chat"></ul>
<form id="say"><input id="text" autocomplete="off"><button>Send</button></form>
<script type="module">
  import {{ ChatHub }} from "{http}/chathub.js";
  const {{ token }} = await (await fetch("/token")).json();
  const hub = new ChatHub("{ws}/ws", {{ token }});
  const list = document.getElementById("chat");
  const show = (m) => {{
    if (m.channel && m.channel !== "{channel}") return;
    const li = document.createElement("li");
    li.textContent = m.from + ": " + m.text;
    list.append(li);
  }};
  hub.addEventListener("welcome", () => hub.subscribe("{channel}"), {{ once: true }});
  hub.addEventListener("message", (e) => show(e.detail));
  hub.connect();
  document.getElementById("say").addEventListener("submit", async (ev) => {{
    ev.preventDefault();
    const box = document.getElementById("text");
    await hub.chat(box.value, {{ channel: "{channel}" }});
    box.value = "";
  }});
</script>
</body></html>
"""


def create_app(chathub_url: str, secret: str, api_key: str, channel: str = "orders",
               session_key: bytes | None = None) -> FastAPI:
    """The shop.

    Args:
        chathub_url: the daemon's address, ``http://host:port``.
        secret: the daemon's ``auth.secret`` (tokens are minted with it).
        api_key: one of the daemon's ``api.keys``.
        channel: where shipping news goes.
        session_key: signs the session cookie (random when None).
    """
    app = FastAPI(title="shop")
    api = AsyncAPIClient(chathub_url, api_key)
    key = session_key or secrets.token_bytes(32)
    ws_url = "ws" + chathub_url.removeprefix("http")

    def sign(user: str) -> str:
        return user + "." + hmac.new(key, user.encode(), hashlib.sha256).hexdigest()

    def signed_in(session: str | None) -> str:
        user = (session or "").rpartition(".")[0]
        if not user or not hmac.compare_digest(sign(user), session or ""):
            raise HTTPException(401, "sign in at /login?user=NAME")
        return user

    @app.get("/login")
    def login(user: str, response: Response) -> dict[str, str]:
        if not valid_user(user):
            raise HTTPException(400, "user: 1-32 of A-Z a-z 0-9 _ - .")
        response.set_cookie("session", sign(user), httponly=True, samesite="lax")
        return {"user": user}

    @app.get("/token")
    def token(session: str | None = Cookie(default=None)) -> dict[str, str]:
        return {"token": mint(signed_in(session), secret, TOKEN_TTL)}

    @app.get("/", response_class=HTMLResponse)
    def page(session: str | None = Cookie(default=None)) -> str:
        user = signed_in(session)
        return PAGE.format(user=html.escape(user), channel=channel, http=chathub_url, ws=ws_url)

    @app.post("/orders/{order_id}/ship")
    async def ship(order_id: int, session: str | None = Cookie(default=None)) -> dict[str, object]:
        signed_in(session)
        try:
            msg = await api.publish(channel, f"order {order_id} shipped", sender="system",
                                    idempotency_key=f"ship-{order_id}")
        except ChatError as exc:
            raise HTTPException(502, f"chat announcement failed: {exc}") from None
        return {"order": order_id, "shipped": True, "message_id": msg["id"]}

    return app


def from_env() -> FastAPI:
    """The shop configured from SHOP_CHATHUB_URL, SHOP_CHATHUB_SECRET, SHOP_CHATHUB_API_KEY."""
    return create_app(os.environ["SHOP_CHATHUB_URL"], os.environ["SHOP_CHATHUB_SECRET"],
                      os.environ["SHOP_CHATHUB_API_KEY"])
