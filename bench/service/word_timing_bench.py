"""CPU benchmark: how accurate Chatterbox's word timings are, on speech whose word times are known.

Chatterbox places words on its clip's frames (voxgate_server.engines.chatterbox_turbo.word_timing):
nothing in the model says which speech token speaks which word. No real Chatterbox weights are
reachable here (tests and benchmarks run a random-weight checkpoint, which speaks noise), so the
method is measured where ground truth exists: on Piper's speech against Piper's phoneme alignment,
and on Kokoro's speech against its predicted durations. The same clip goes through two aligners:

- ``baseline``: the words split the whole clip by the same length estimate, without looking at
  the audio (what a timing from the text and the clip's length alone gives);
- ``token_timeline``: ``word_times``, the function the Chatterbox engines use.

Reported per engine and aligner: the absolute error of word starts and ends against the reference
(mean, median, 90th percentile, share within 50 and 100 ms), over every word of every sentence.
Writes JSON (and prints it):

    python bench/service/word_timing_bench.py --out bench/results/word_timing_bench.json
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tts-inference-server"))

from voxgate_server.engines.base import Engine, SynthesisRequest  # noqa: E402
from voxgate_server.engines.chatterbox_turbo.word_timing import spoken_words, word_times  # noqa: E402
from voxgate_server.settings import Settings  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.common.report import write_report  # noqa: E402

# Harvard sentences (IEEE 1969), some as pairs so that a clip holds a pause between sentences
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish, and rice is often served in round bowls.",
    "The juice of lemons makes fine punch. The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage. Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose; a rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring. Kick the ball straight and follow through.",
    "Help the woman get back to her feet. A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat. The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea, and the girl at the booth sold fifty bonds.",
]


def baseline(text: str, samples: np.ndarray, sample_rate: int) -> list[tuple[str, float, float]]:
    items = [(w, weight) for w, weight, _ in spoken_words(text) if w]
    total = sum(weight for _, weight in items)
    duration = samples.size / sample_rate
    out, at = [], 0.0
    for word, weight in items:
        step = duration * weight / total
        out.append((word, at, at + step))
        at += step
    return out


def reference_clips(engine: Engine, voice: str) -> list[tuple[str, np.ndarray, int, list]]:
    """(text, samples, rate, reference words) per sentence, each sentence one clip."""
    clips = []
    for text in SENTENCES:
        pieces, words, offset = [], [], 0.0
        rate = 0
        request = SynthesisRequest(chunks=[text], voice=voice, options={"timestamps": "word"})
        for chunk in engine.synthesize(request):
            rate = chunk.sample_rate
            words.extend((w, offset + s, offset + e) for w, s, e in (chunk.words or []))
            pieces.append(chunk.samples)
            offset += chunk.samples.size / chunk.sample_rate
        clips.append((text, np.concatenate(pieces), rate, words))
    return clips


def errors(reference: list, guess: list) -> list[float] | None:
    if [w for w, _, _ in reference] != [w for w, _, _ in guess]:
        return None
    out = []
    for (_, rs, re_), (_, gs, ge) in zip(reference, guess):
        out += [abs(rs - gs), abs(re_ - ge)]
    return out


def summary(errs: list[float]) -> dict[str, float]:
    ms = np.array(errs) * 1000
    return {"boundaries": int(ms.size), "mean_ms": round(float(ms.mean()), 1),
            "median_ms": round(float(np.median(ms)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "within_50ms": round(float(np.mean(ms <= 50)), 3), "within_100ms": round(float(np.mean(ms <= 100)), 3)}


def bench_engine(engine: Engine) -> dict[str, object]:
    engine.load()
    voice = getattr(engine, "openai_voice_map", dict)().get("alloy") or engine.default_voice()  # as the tests ask
    clips = reference_clips(engine, voice)
    engine.close()
    result: dict[str, object] = {"voice": voice, "sentences": len(clips),
                                 "audio_s": round(sum(s.size / r for _, s, r, _ in clips), 2)}
    for name, aligner in (("baseline", baseline), ("token_timeline", word_times)):
        errs: list[float] = []
        mismatched = 0
        for text, samples, rate, ref in clips:
            e = errors(ref, aligner(text, samples, rate))
            if e is None:
                mismatched += 1
            else:
                errs += e
        result[name] = {**summary(errs), "sentences_with_other_words": mismatched}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from voxgate_server.engines.kokoro.engine import KokoroEngine
    from voxgate_server.engines.piper import PiperEngine

    # Piper without its sampling noise: the same clips every run
    settings = Settings(piper_noise_scale=0.0, piper_noise_w_scale=0.0)
    report = {"machine": platform.machine(), "python": platform.python_version(),
              "piper": bench_engine(PiperEngine(settings)), "kokoro": bench_engine(KokoroEngine(Settings()))}
    write_report(report, args.out, indent=1)


if __name__ == "__main__":
    main()
