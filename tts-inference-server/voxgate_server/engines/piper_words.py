"""Word spans for Piper from its phoneme alignment (samples per phoneme, from the model's w_ceil).

Piper speaks phonemes, not words: espeak-ng turns a sentence into one phoneme string, and it
joins or splits words on the way ("on the" can become one phoneme word, "42" two). So each text
word is phonemized alone, and its phonemes are aligned to the sentence's phonemes with difflib;
a word's span runs from its first to its last aligned phoneme. Words espeak read differently in
context get the gap between their aligned neighbours; words not reached carry over to the next
sentence piece.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence

_NOT_CONTENT = set(".,;:!?¡¿—–-…\"'()[]«»“”ˈˌ^$_") | {" "}
_WORD = re.compile(r"\S+")
_STRIP = ".,;:!?¡¿—–…\"'()[]«»“”"


def _content(phonemes: str) -> str:
    return "".join(c for c in phonemes if c not in _NOT_CONTENT and not c.isspace())


class WordAligner:
    """Hands one chunk's text words to its sentence pieces, in order."""

    def __init__(self, text: str, phonemize: Callable[[str], str]) -> None:
        words = [w for w in _WORD.findall(text) if any(c.isalnum() for c in w)]
        self.words = [(w.strip(_STRIP) or w, _content(phonemize(w))) for w in words]
        self.next = 0

    def assign(self, alignments: Sequence, sample_rate: int) -> list[tuple[str, float, float]]:
        # the piece's content phonemes with their sample spans
        chars: list[str] = []
        times: list[tuple[int, int]] = []
        pos = 0
        for a in alignments:
            start, pos = pos, pos + int(a.num_samples)
            for c in a.phoneme:
                if c not in _NOT_CONTENT and not c.isspace():
                    chars.append(c)
                    times.append((start, pos))
        if not chars or self.next >= len(self.words):
            return []
        remaining = self.words[self.next:]
        text_chars: list[str] = []
        owner: list[int] = []
        for i, (_, ps) in enumerate(remaining):
            text_chars.extend(ps)
            owner.extend([i] * len(ps))
        spans: dict[int, list[int]] = {}
        matcher = difflib.SequenceMatcher(None, text_chars, chars, autojunk=False)
        for a, b, size in matcher.get_matching_blocks():
            for k in range(size):
                i = owner[a + k]
                s, e = times[b + k]
                span = spans.setdefault(i, [s, e])
                span[0], span[1] = min(span[0], s), max(span[1], e)
        if not spans:
            return []
        last = max(spans)
        out: list[tuple[str, float, float]] = []
        prev_end = times[0][0]
        for i in range(last + 1):
            if i in spans:
                s, e = max(spans[i][0], prev_end), max(spans[i][1], prev_end)
            else:  # not aligned: the gap up to the next aligned word
                nxt = min(j for j in spans if j > i)
                s = e = prev_end
                e = max(s, spans[nxt][0])
            out.append((remaining[i][0], s / sample_rate, e / sample_rate))
            prev_end = e if i in spans else prev_end
        # phonemes after the last aligned word still belong to it (espeak's extra syllables)
        w, s, e = out[-1]
        out[-1] = (w, s, max(e, times[-1][1] / sample_rate))
        self.next += last + 1
        return out
