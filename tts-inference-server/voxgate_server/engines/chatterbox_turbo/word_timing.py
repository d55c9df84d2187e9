"""Word timings for the Chatterbox engines, laid over their speech-token timeline.

Chatterbox has no duration model and no alignment to read: T3 writes speech tokens at 25 a
second, S3Gen turns each into exactly 40 ms of audio (two 20 ms mel frames), and which text token
a speech token speaks appears nowhere in what the model returns (Turbo's GPT-2 has no alignment
heads; upstream's alignment analyser belongs to the Llama T3s and only watches for the end). So
the words are placed on the clip's own frames:

1. each 20 ms frame (one mel frame, half a speech token) is speech or silence by its energy
   against the clip's loud frames;
2. silences of at least ``MIN_PAUSE_S`` inside the clip are pauses; shorter ones (stop
   closures, the gaps between most words) stay inside speech;
3. each boundary after punctuation takes the pause near where the words' estimated spoken
   lengths put it (consonants and vowel groups; a digit counts for the words it becomes; a
   paralinguistic tag like ``[laugh]`` takes time but is no word), longer pauses preferred: an
   alignment by dynamic programming, so each pause and each mark is used once, in order.
   Silences left over are stop closures and quiet sounds inside the words;
4. between the paired pauses the words share the time by their lengths, and each boundary
   moves to the quietest frame within ``SNAP_S`` of it.

How accurate that is, measured: ``bench/service/word_timing_bench.py`` runs this same function on real
speech whose word times are known (Piper's phoneme alignment, Kokoro's predicted durations),
against a plain letter-proportional split of the clip as the baseline (docs/chatterbox.md, "Word timings"). The
constants here were chosen on that benchmark's sentences.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

FRAME_S = 0.02  # one S3Gen mel frame: two per 40 ms speech token
MIN_PAUSE_S = 0.12  # three speech tokens of silence
SNAP_S = 0.06
_REACH_S = 0.6  # how far from its estimated place a punctuation mark's pause is looked for
_LEN_WEIGHT = 4.0  # a pause's length counts four times its nearness: sentence ends pause longest
_SILENCE_BELOW = 0.06  # of the clip's loud (95th percentile) frame energy: about -24 dB
_FLOOR = 1e-3  # absolute RMS under which a frame is silence whatever the clip
_TAG = re.compile(r"^\[[a-z_ ]+\]$", re.IGNORECASE)
_STRIP = ".,;:!?¡¿—–…\"'()[]«»“”„‘’·、。，！？；：「」『』（）"
_PAUSE_AFTER = set(".,;:!?…—–。，！？；：、")
_DIGIT_WEIGHT = 5.0  # "2026" is spoken as about twenty phonemes' worth
_VOWEL_GROUP = re.compile(r"[aeiouyàâäéèêëîïôöùûüœæ]+")
_CONSONANT = re.compile(r"[bcdfghjklmnpqrstvwxzßçñ]")


def _is_cjk(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK UNIFIED", "HIRAGANA", "KATAKANA", "HANGUL", "CJK COMPATIBILITY IDEOGRAPH"))


def _spoken_length(word: str) -> float:
    """A word's length in rough phoneme units: a consonant one, a vowel group (about a syllable's
    nucleus) one and a half, a half for the transition into it; a digit for the words it becomes.
    Other scripts' letters count one each."""
    lower = word.lower()
    digits = sum(c.isdigit() for c in lower)
    groups = _VOWEL_GROUP.findall(lower)
    consonants = len(_CONSONANT.findall(lower))
    other = sum(c.isalpha() for c in lower) - consonants - sum(len(g) for g in groups)
    return max(1.0, consonants + 1.5 * len(groups) + other + _DIGIT_WEIGHT * digits + 0.5)


def spoken_words(text: str) -> list[tuple[str, float, bool]]:
    """(word, weight, pause likely after) for each item that takes time, in order; a tag's word is
    ``""`` (it is spoken, not shown). Text without spaces (Chinese, Japanese) counts each
    character as a word, as their word timings usually do."""
    out: list[tuple[str, float, bool]] = []
    for raw in text.split():
        if _TAG.match(raw):
            out.append(("", 5.0, False))
            continue
        pause = raw[-1] in _PAUSE_AFTER
        if any(_is_cjk(c) for c in raw):
            for i, c in enumerate(raw):
                if c.isalnum():
                    after = raw[i + 1] if i + 1 < len(raw) else ""
                    out.append((c, 2.0, after in _PAUSE_AFTER and after != ""))
            continue
        word = raw.strip(_STRIP)
        if not any(c.isalnum() for c in word):
            continue
        out.append((word, _spoken_length(word), pause))
    return out


def _frame_energy(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    hop = max(1, int(round(sample_rate * FRAME_S)))
    n = samples.size // hop
    if n == 0:
        return np.zeros(0, dtype=np.float64), hop
    frames = samples[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt(np.mean(frames * frames, axis=1)), hop


def _silences(rms: np.ndarray) -> tuple[int, int, list[tuple[int, int]]]:
    """The first and last speech frame (end exclusive) and the [start, end) silences of at least
    ``MIN_PAUSE_S`` between them."""
    if rms.size == 0:
        return 0, 0, []
    loud = float(np.percentile(rms, 95))
    idx = np.flatnonzero(rms > max(loud * _SILENCE_BELOW, _FLOOR))
    if idx.size == 0:
        return 0, 0, []
    min_pause = int(round(MIN_PAUSE_S / FRAME_S))
    gaps = np.flatnonzero(np.diff(idx) - 1 >= min_pause)
    return int(idx[0]), int(idx[-1]) + 1, [(int(idx[g]) + 1, int(idx[g + 1])) for g in gaps]


def _pauses_at_punctuation(shares: list[float], silences: list[tuple[int, int]], first: int, last: int
                           ) -> list[tuple[int, tuple[int, int]]]:
    """Pairs (punctuation boundary index, silence): each silence goes to at most one boundary
    after punctuation and the other way round, in order, each within ``_REACH_S`` of where the
    words' shares of speech time put that boundary; longer and nearer pairs score higher (an
    alignment by dynamic programming). Unpaired silences are stop closures and quiet sounds
    inside the words."""
    if not shares or not silences:
        return []
    silent = sum(b - a for a, b in silences)
    speech = max(1, last - first - silent)
    # each silence's place on the speech-time axis (the silences before it taken out)
    at, gone = [], 0
    for a, b in silences:
        at.append((a - first - gone) / speech)
        gone += b - a
    reach = _REACH_S / FRAME_S / speech
    p, q = len(shares), len(silences)
    score = np.zeros((p + 1, q + 1))
    took = np.zeros((p + 1, q + 1), dtype=np.int8)  # 0 skip boundary, 1 skip silence, 2 pair
    for i in range(1, p + 1):
        for j in range(1, q + 1):
            best, how = score[i - 1, j], 0
            if score[i, j - 1] > best:
                best, how = score[i, j - 1], 1
            off = abs(shares[i - 1] - at[j - 1])
            if off < reach:
                pair = score[i - 1, j - 1] + (1 - off / reach) + _LEN_WEIGHT * (silences[j - 1][1] - silences[j - 1][0]) * FRAME_S
                if pair > best:
                    best, how = pair, 2
            score[i, j], took[i, j] = best, how
    pairs = []
    i, j = p, q
    while i > 0 and j > 0:
        how = took[i, j]
        if how == 2:
            pairs.append((i - 1, silences[j - 1]))
            i, j = i - 1, j - 1
        elif how == 1:
            j -= 1
        else:
            i -= 1
    return pairs[::-1]


def _snap(boundary: float, rms: np.ndarray, low: int, high: int) -> int:
    reach = int(round(SNAP_S / FRAME_S))
    centre = int(round(boundary))
    a, b = max(low + 1, centre - reach), min(high - 1, centre + reach)
    if a > b:
        return min(max(centre, low), high)
    return a + int(np.argmin(rms[a: b + 1]))


def word_times(text: str, samples: np.ndarray, sample_rate: int) -> list[tuple[str, float, float]]:
    """(word, start_s, end_s) for the words of ``text`` in ``samples``, from its first sample."""
    items = spoken_words(text)
    if not items or samples.size == 0:
        return []
    rms, hop = _frame_energy(samples, sample_rate)
    first, last, silences = _silences(rms)
    if last <= first:  # nothing audible: spread the words over the clip
        first, last, rms = 0, max(1, rms.size), np.ones(max(1, rms.size))
    weights = np.array([w for _, w, _ in items], dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    punctuated = [k for k in range(1, len(items)) if items[k - 1][2]]
    pairs = _pauses_at_punctuation([float(cumulative[k]) for k in punctuated], silences, first, last)
    # stretches between the paired pauses, each with its words spread by weight
    cuts = [(0, first)] + [(punctuated[i], -1) for i, _ in pairs] + [(len(items), last)]
    spans = [(first, None)] + [(a, b) for _, (a, b) in pairs] + [(None, last)]
    frame_s = hop / sample_rate
    out: list[tuple[str, float, float]] = []
    for n in range(len(cuts) - 1):
        lo, hi = cuts[n][0], cuts[n + 1][0]
        a = spans[n][1] if spans[n][1] is not None else spans[n][0]
        b = spans[n + 1][0] if spans[n + 1][0] is not None else spans[n + 1][1]
        if hi <= lo or b is None or a is None:
            continue
        group = weights[lo:hi]
        edges = a + (b - a) * np.concatenate([[0.0], np.cumsum(group)]) / group.sum()
        frames = [a]
        for e in edges[1:-1]:
            frames.append(max(frames[-1], _snap(e, rms, frames[-1], b)))
        frames.append(b)
        if any(y <= x for x, y in zip(frames, frames[1:])):
            frames = list(edges)  # more words than frames: unsnapped, between frames
        for i in range(hi - lo):
            word = items[lo + i][0]
            if word:
                out.append((word, frames[i] * frame_s, frames[i + 1] * frame_s))
    return out
