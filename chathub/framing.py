"""Server frames on the wire, sans I/O: a payload in, the bytes of one WebSocket frame out.

The hub builds each frame once and writes the same bytes to every recipient. That is
possible because server frames are never masked (RFC 6455 section 5.1) and chathub
turns compression off, so a frame does not depend on the connection it goes to.
"""

from __future__ import annotations

#: first byte of a complete text frame: FIN set, opcode 0x1 (RFC 6455 section 5.2)
_FIN_TEXT = 0x81
#: payload lengths from here on take a 16-bit extended length, and from 2^16 a 64-bit one
_LEN16 = 126
_LEN64 = 65536


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked WebSocket text frame (FIN set) carrying ``payload``."""
    n = len(payload)
    if n < _LEN16:
        return bytes((_FIN_TEXT, n)) + payload
    if n < _LEN64:
        return bytes((_FIN_TEXT, 126)) + n.to_bytes(2, "big") + payload
    return bytes((_FIN_TEXT, 127)) + n.to_bytes(8, "big") + payload
