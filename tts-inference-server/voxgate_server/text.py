"""Split input text into chunks an engine can speak well, sentence by sentence.

Streaming starts with the first chunk, so the first one is kept short (one sentence) while later
ones pack whole sentences up to the engine's limit. Sentences longer than the limit are cut at
the last clause mark or space before it, never inside a word.
"""

from __future__ import annotations

import re

from sentencex import segment

_CLAUSE_BREAK = re.compile(r"[,;:\u2014\u2013)\]]\s")


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Sentences with their surrounding whitespace removed; empty ones dropped."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        out.extend(s.strip() for s in segment(language, paragraph) if s.strip())
    return out


def _cut_long(sentence: str, limit: int) -> list[str]:
    pieces: list[str] = []
    rest = sentence
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = -1
        for m in _CLAUSE_BREAK.finditer(window):
            cut = m.start() + 1
        if cut < limit // 3:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit  # one enormous "word": a hard cut is all that is left
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def chunk_text(text: str, max_chars: int, language: str = "en", first_chunk_sentences: int = 1) -> list[str]:
    """Chunks of at most ``max_chars``; the first holds ``first_chunk_sentences`` sentences."""
    sentences: list[str] = []
    for sentence in split_sentences(text, language):
        sentences.extend(_cut_long(sentence, max_chars))
    chunks: list[str] = []
    current = ""
    for i, sentence in enumerate(sentences):
        if i < first_chunk_sentences:
            chunks.append(sentence)
            continue
        if current and len(current) + 1 + len(sentence) > max_chars:
            chunks.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        chunks.append(current)
    return chunks
