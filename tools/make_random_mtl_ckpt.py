#!/usr/bin/env python3
"""Write a random-weight Chatterbox Multilingual checkpoint that upstream's loader accepts.

The multilingual sibling of ``make_random_turbo_ckpt.py`` (whose weight saving, synthetic
voice and Hugging Face cache layout it reuses). It instantiates exactly the modules
``ChatterboxMultilingualTTS.from_local`` builds (``VoiceEncoder()``, ``T3(T3Config.multilingual())``
= Llama 520M with a 2454-entry text vocabulary, ``S3Gen()`` with the 10-step decoder), saves
seeded random weights under upstream's file names and formats (``ve.pt`` and ``s3gen.pt`` with
``torch.save``, ``t3_mtl23ls_v2.safetensors``; strict loading passes), a grapheme tokenizer
``grapheme_mtl_merged_expanded_v1.json`` with the special tokens and the 23 language tags
``MTLTokenizer`` needs, and a built-in voice (``conds.pt``) computed by voxgate's own
conditioning code with the multilingual prompt length (6 s). No ``Cangjie5_TC.json``: Chinese
then has no Cangjie mapping, which the engine reports as an unavailable language.

    python tools/make_random_mtl_ckpt.py OUT_DIR [--dtype bf16] [--seed 0] [--ref-seconds 6]
        [--no-conds] [--hf-cache-layout HF_HOME]

The Llama speech head has no bias, so there is no ``--eos-logit-bias``: with random weights
upstream's alignment analyzer decides when generation stops (it forces the stop token after a
repeated token); tests and benchmarks bound the length with the engine's token cap.

Prints one JSON line with the files written and the time taken.
"""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import make_random_turbo_ckpt as turbo  # noqa: E402 - the shared helpers

HF_REPO_ID = "ResembleAI/chatterbox"
TEXT_VOCAB_SIZE = 2454  # T3Config.multilingual()
TOKENIZER_FILE = "grapheme_mtl_merged_expanded_v1.json"
START_TEXT, STOP_TEXT = 255, 0  # T3Config's start_text_token / stop_text_token


def _graphemes() -> list[str]:
    """Characters after MTLTokenizer's lower-casing and NFKD: Latin, Greek, Cyrillic, Arabic,
    Hebrew, Devanagari, Hangul jamo, kana, combining marks, digits and punctuation."""
    ranges = [(0x21, 0x7E), (0xA1, 0xFF), (0x0300, 0x036F), (0x0370, 0x03FF), (0x0400, 0x04FF),
              (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0900, 0x097F), (0x1100, 0x11FF),
              (0x3040, 0x30FF), (0x3000, 0x303F)]
    seen: dict[str, None] = {}
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if unicodedata.category(ch).startswith("C"):
                continue
            for piece in unicodedata.normalize("NFKD", ch.lower()):
                if piece.strip():
                    seen.setdefault(piece, None)
    return list(seen)


def write_tokenizer(out_dir: Path, languages: list[str]) -> Path:
    """A ``tokenizers`` JSON: specials and language tags as single tokens, one id per grapheme,
    padded with unreachable entries to exactly the text vocabulary T3 embeds."""
    from tokenizers import AddedToken, Tokenizer, models

    from chatterbox.models.tokenizers.tokenizer import SPECIAL_TOKENS, SOT, EOT, UNK

    vocab: dict[str, int] = {EOT: STOP_TEXT}
    fixed = [t for t in SPECIAL_TOKENS if t not in (SOT, EOT)] + [f"[{lang}]" for lang in languages]
    for tok in fixed:
        vocab[tok] = len(vocab)
    for ch in _graphemes():
        if len(vocab) == START_TEXT:
            vocab[SOT] = START_TEXT
        vocab.setdefault(ch, len(vocab))
    vocab.setdefault(SOT, len(vocab))
    filler = 0
    while len(vocab) < TEXT_VOCAB_SIZE:
        vocab[f"[filler_{filler}]"] = len(vocab)
        filler += 1
    if len(vocab) > TEXT_VOCAB_SIZE or vocab[SOT] != START_TEXT:
        raise SystemExit(f"tokenizer layout wrong: {len(vocab)} entries, [START]={vocab[SOT]}")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in [SOT, EOT, *fixed]])
    path = out_dir / TOKENIZER_FILE
    tok.save(str(path))
    return path


def check_tokenizer(path: Path) -> None:
    from chatterbox.models.tokenizers import MTLTokenizer

    tok = MTLTokenizer(str(path))
    ids = tok.encode("Bonjour à tous, ça va?", language_id="fr")
    if not ids or max(ids) >= TEXT_VOCAB_SIZE or tok.tokenizer.get_vocab_size() != TEXT_VOCAB_SIZE:
        raise SystemExit(f"tokenizer check failed: {ids}")


def save_torch(module, path: Path, dtype) -> int:
    """``torch.save`` of the full state dict (upstream's .pt files), in the storage dtype."""
    import torch

    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    if dtype is not None:
        torch_dtype = getattr(torch, dtype)
        state = {k: v.to(torch_dtype) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, path)
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return sum(v.numel() for v in state.values())


def main(argv: list[str] | None = None) -> int:
    args = turbo.parse_args(argv)
    if args.eos_logit_bias is not None:
        raise SystemExit("--eos-logit-bias: the multilingual speech head has no bias")
    import torch

    from chatterbox.models.s3gen import S3GEN_SR, S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES

    from voxgate_server.engines.chatterbox_turbo.conditioning import conditionals_from_wave

    started = time.monotonic()
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    dtype = turbo.DTYPES[args.dtype]
    torch.manual_seed(args.seed)
    counts: dict[str, int] = {}

    ve = VoiceEncoder().eval()
    counts["ve.pt"] = save_torch(ve, out / "ve.pt", dtype)
    t3 = T3(T3Config.multilingual()).eval()
    counts["t3_mtl23ls_v2.safetensors"] = turbo.save_state(t3, out / "t3_mtl23ls_v2.safetensors", dtype)
    s3gen = S3Gen().eval()
    counts["s3gen.pt"] = save_torch(s3gen, out / "s3gen.pt", dtype)
    check_tokenizer(write_tokenizer(out, sorted(SUPPORTED_LANGUAGES)))

    if args.no_conds:
        (out / "conds.pt").unlink(missing_ok=True)
    else:
        wave = turbo.synthetic_voice(args.ref_seconds, S3GEN_SR, args.seed)
        with torch.inference_mode():
            conds = conditionals_from_wave(wave, S3GEN_SR, t3=t3, s3gen=s3gen, ve=ve, device="cpu",
                                           enc_cond_seconds=6.0, exaggeration=0.5)
        conds.save(out / "conds.pt")
    del t3, s3gen, ve

    report: dict[str, object] = {
        "out_dir": str(out), "dtype": args.dtype, "seed": args.seed, "values": counts,
        "files": sorted(p.name for p in out.iterdir()),
    }
    if args.hf_cache_layout is not None:
        report["hf_snapshot"] = str(turbo.write_hf_cache(out, args.hf_cache_layout, args.revision, HF_REPO_ID))
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
