"""Reading a speech WebSocket as a test client does."""

from __future__ import annotations

import asyncio
import json


async def collect(ws, until=("done", "error")):
    """Audio bytes and JSON messages until one of type ``until``."""
    audio, messages = bytearray(), []
    while True:
        msg = await asyncio.wait_for(ws.recv(), 120)
        if isinstance(msg, bytes):
            audio += msg
            continue
        messages.append(json.loads(msg))
        if messages[-1]["type"] in until:
            return bytes(audio), messages
