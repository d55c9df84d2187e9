"""What of an ``input`` can be spoken: control and invisible characters out, "nothing" detected.

Clients send strings with NUL and other control characters (the OpenAI SDK passes them on
unchanged) and inputs such as ``"."``, ``"—"`` or a zero-width space (Home Assistant's setup check
sends ``"."``). Engines fail on the first ("embedded null character") and return no audio for the
second, which used to give an empty 200. Control characters are spoken as the whitespace they
stand for; an input with nothing to speak is answered with a short silence instead.
"""

from __future__ import annotations

import re
import unicodedata

# Characters that carry no sound and that engines either choke on or pass through as noise:
# C0/C1 controls (tab and newlines are whitespace already), zero-width and bidi marks, BOM, the
# replacement character and other format (Cf) characters.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffd]"
)


def clean_input(text: str) -> str:
    """``text`` with every invisible or control character replaced by a space."""
    text = _INVISIBLE.sub(" ", text)
    return "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") else c for c in text)


def has_speech(text: str) -> bool:
    """True when some character could make a sound: a letter, a digit or a symbol ($, %, emoji)."""
    return any(unicodedata.category(c)[0] in "LNS" for c in text)
