"""Chatterbox's word timings (engines/chatterbox_turbo/word_timing.py) on signals whose layout is
known: bursts of tone for speech, zeros for pauses. The accuracy on real speech is measured by
bench/service/word_timing_bench.py; these pin the rules."""

from __future__ import annotations

import numpy as np

from voxgate_server.engines.chatterbox_turbo.word_timing import spoken_words, word_times

RATE = 24000


def clip(*parts: tuple[str, float]) -> np.ndarray:
    """("s", seconds) of speech-like tone, ("p", seconds) of silence, in order."""
    out = []
    for kind, seconds in parts:
        n = int(RATE * seconds)
        if kind == "s":
            t = np.arange(n) / RATE
            out.append((0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 4 * t))).astype(np.float32))
        else:
            out.append(np.zeros(n, dtype=np.float32))
    return np.concatenate(out)


def test_a_sentence_pause_goes_to_the_full_stop_and_not_to_a_closure() -> None:
    text = "Glue the sheet to the dark blue background. Kick the ball straight and follow through."
    # the first sentence, a 140 ms closure inside it, the 300 ms pause, the second sentence
    audio = clip(("p", 0.1), ("s", 0.9), ("p", 0.14), ("s", 1.1), ("p", 0.3), ("s", 1.9), ("p", 0.2))
    words = word_times(text, audio, RATE)
    assert [w for w, _, _ in words] == [w.strip(".") for w in text.split()]
    ends = {w: (s, e) for w, s, e in words}
    assert abs(ends["background"][1] - 2.24) <= 0.02  # the pause starts at 0.1 + 0.9 + 0.14 + 1.1
    assert abs(ends["Kick"][0] - 2.54) <= 0.02  # and ends 300 ms later
    assert abs(words[0][1] - 0.1) <= 0.02 and abs(words[-1][2] - 4.44) <= 0.02
    for (_, s1, e1), (_, s2, _) in zip(words, words[1:]):
        assert s1 < e1 <= s2  # in order, no overlap, every word has a span


def test_without_punctuation_a_silence_stays_inside_the_words() -> None:
    audio = clip(("s", 0.6), ("p", 0.2), ("s", 0.6))
    words = word_times("one two three four five six", audio, RATE)
    assert len(words) == 6 and words[0][1] == 0.0 and abs(words[-1][2] - 1.4) <= 0.02
    covered = sum(e - s for _, s, e in words)
    assert abs(covered - 1.4) <= 0.02  # the words share all of it, the silence included


def test_longer_words_get_more_time() -> None:
    words = dict((w, e - s) for w, s, e in word_times("a extraordinarily", clip(("s", 2.0)), RATE))
    assert words["extraordinarily"] > 5 * words["a"]


def test_tags_take_time_but_are_not_words_and_digits_count_for_their_words() -> None:
    assert [w for w, _, _ in spoken_words("Well [laugh] that is it.") if w] == ["Well", "that", "is", "it"]
    assert [w for w, _, _ in spoken_words("Well [laugh] that is it.")].count("") == 1
    (_, short, _), = spoken_words("go")
    (_, year, _), = spoken_words("2026")
    assert year > 4 * short
    words = word_times("Well [laugh] that is it.", clip(("s", 2.0)), RATE)
    assert [w for w, _, _ in words] == ["Well", "that", "is", "it"]
    assert words[1][1] - words[0][2] > 0.1  # the laugh's time lies between "Well" and "that"


def test_chinese_characters_are_words_of_their_own() -> None:
    words = word_times("你好，世界。", clip(("s", 0.5), ("p", 0.25), ("s", 0.5)), RATE)
    assert [w for w, _, _ in words] == ["你", "好", "世", "界"]
    assert abs(words[1][2] - 0.5) <= 0.02 and abs(words[2][1] - 0.75) <= 0.02


def test_silence_and_nothing_to_say() -> None:
    assert word_times("...", clip(("s", 1.0)), RATE) == []
    assert word_times("Hello.", np.zeros(0, dtype=np.float32), RATE) == []
    words = word_times("quiet words", np.zeros(RATE, dtype=np.float32), RATE)  # nothing audible
    assert [w for w, _, _ in words] == ["quiet", "words"] and abs(words[-1][2] - 1.0) <= 0.02


def test_more_words_than_frames_still_gives_each_word_a_span() -> None:
    words = word_times("one two three four five six seven eight", clip(("s", 0.1)), RATE)
    assert len(words) == 8 and all(s < e for _, s, e in words)
    assert all(a[2] <= b[1] + 1e-9 for a, b in zip(words, words[1:]))
