"""Provider API keys: from an environment variable or a secret file, and kept out of every message."""

from __future__ import annotations

import os
import re
from pathlib import Path

_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{6,}|xi-[A-Za-z0-9_\-]{6,})")


def resolve_key(env_name: str | None, file_path: str | None) -> str | None:
    """``env_name`` itself, else the file named by ``<env_name>_FILE``, else ``file_path``."""
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if value:
            return value
        secret = os.environ.get(f"{env_name}_FILE", "").strip()
        if secret:
            file_path = secret
    if file_path:
        try:
            return Path(file_path).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    return None


def scrub(text: str, key: str | None) -> str:
    """A provider's message as it may be shown: our key (and anything shaped like a key, such as
    OpenAI's 'Incorrect API key provided: sk-ab***yz') replaced."""
    if key:
        text = text.replace(key, "[key]")
    return _KEYLIKE.sub("[key]", text)
