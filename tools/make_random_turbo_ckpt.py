#!/usr/bin/env python3
"""Write a random-weight Chatterbox-Turbo checkpoint that the real loaders accept.

No model hub is reachable from CI, yet the engine must run the real chatterbox-tts code. This
tool instantiates exactly the modules ``ChatterboxTurboTTS.from_local`` builds, saves their
seeded random weights under the real file names (strict ``load_state_dict`` passes), writes a
GPT-2-layout tokenizer with the real vocabulary size (50276, the nine paralinguistic tags as
single tokens) and a built-in voice (``conds.pt``) computed by the project's own conditioning
code. The audio it makes is noise; what it exercises is every code path and tensor shape.

    python tools/make_random_turbo_ckpt.py OUT_DIR [--dtype bf16] [--eos-logit-bias -10000]
        [--seed 0] [--no-conds] [--hf-cache-layout HF_HOME]

--eos-logit-bias B adds B to the speech head's bias for the start and stop tokens. A large
negative B means generation never stops on its own, so the number of speech tokens equals
the cap exactly (deterministic lengths for tests and benchmarks); a large positive B makes it
stop after the first token.

--hf-cache-layout HF_HOME also lays the files out as Hugging Face's cache for the real repo id
(``HF_HOME/hub/models--ResembleAI--chatterbox-turbo``), so that ``from_pretrained`` loads them
with ``HF_HOME=HF_HOME HF_HUB_OFFLINE=1`` (blobs are hard links where possible, else copies).

Prints one JSON line with the files written and the time taken.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tts-inference-server"))

HF_REPO_ID = "ResembleAI/chatterbox-turbo"
TEXT_VOCAB_SIZE = 50276  # what from_local() expects (GPT-2's 50257 + 19 added tokens)
GPT2_BASE_VOCAB = 50257
START_SPEECH_TOKEN, STOP_SPEECH_TOKEN = 6561, 6562
DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}

# A few hundred words of ordinary English so the trained merges cover common words; the
# exact text only changes how many text tokens a sentence becomes.
_CORPUS = """
Good morning, and welcome to the weekly update from the operations team.
The server handled more requests this week than last week, and nobody noticed the upgrade.
Please remember that the office will be closed on Monday for the public holiday.
She said the train would arrive at half past nine, but it was twenty minutes late again.
Could you read the last paragraph aloud, slowly, so that everyone can follow along?
Numbers like 42, 1999 and 3.14 appear in speech more often than you might expect.
It was a bright cold day in April, and the clocks were striking thirteen.
I think we should test the system with short sentences, long sentences, and questions.
Why does the kettle always boil over when you turn around to answer the phone?
Thank you for your patience; your call is important to us and will be answered shortly.
The children laughed, the dog barked, and somewhere in the distance a bell rang twice.
If you can hear this message clearly, the audio path from text to speech is working.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16",
                    help="storage dtype of the .safetensors files (the loader casts to float32)")
    ap.add_argument("--eos-logit-bias", type=float, default=None,
                    help="added to the speech head bias of the start/stop tokens")
    ap.add_argument("--no-conds", action="store_true", help="write no built-in voice (conds.pt)")
    ap.add_argument("--ref-seconds", type=float, default=15.0,
                    help="length of the synthetic clip the built-in voice is computed from")
    ap.add_argument("--hf-cache-layout", type=Path, default=None, metavar="HF_HOME",
                    help="also write the offline Hugging Face cache layout under this HF_HOME")
    ap.add_argument("--revision", default=None, help="40-hex commit id for the cache layout")
    return ap.parse_args(argv)


def turbo_t3_config():
    """The hyper-parameters from_local() sets for Turbo (kept in one place: the engine's)."""
    from voxgate_server.engines.chatterbox_turbo.checkpoint import turbo_t3_config as cfg

    return cfg()


def save_state(module, path: Path, dtype, bias_edit: float | None = None) -> int:
    """Save a module's full state dict (persistent buffers too) so strict loading passes."""
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    if bias_edit is not None:
        state["speech_head.bias"][START_SPEECH_TOKEN] += bias_edit
        state["speech_head.bias"][STOP_SPEECH_TOKEN] += bias_edit
    if dtype is not None:
        torch_dtype = getattr(torch, dtype)
        state = {k: v.to(torch_dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(path))
    # Keep the in-memory module identical to what the loader will see (rounded weights,
    # edited bias), so conds.pt is computed by the same network that will later use it.
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return sum(v.numel() for v in state.values())


def write_tokenizer(out_dir: Path, tags: tuple[str, ...]) -> None:
    """GPT-2's file layout (vocab.json, merges.txt, added tokens; no tokenizer.json, like the
    real repo), with a small byte-level BPE trained here and padded to GPT-2's id space."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    lines = [line for line in _CORPUS.strip().splitlines() if line]
    bpe.train_from_iterator(lines * 8, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    filler = 0
    while len(vocab) < GPT2_BASE_VOCAB - 1:  # ids nothing maps to, so <|endoftext|> is 50256
        vocab[f"<|filler_{filler}|>"] = len(vocab)
        filler += 1
    eot = "<|endoftext|>"
    vocab[eot] = GPT2_BASE_VOCAB - 1

    extra = list(tags) + [f"[reserved_{i}]" for i in range(TEXT_VOCAB_SIZE - GPT2_BASE_VOCAB - len(tags))]
    added = {tok: GPT2_BASE_VOCAB + i for i, tok in enumerate(extra)}
    decoder = {str(GPT2_BASE_VOCAB - 1): {"content": eot, "special": True, "lstrip": False,
                                           "rstrip": False, "normalized": False, "single_word": False}}
    for tok, idx in added.items():
        decoder[str(idx)] = {"content": tok, "special": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "single_word": False}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (out_dir / "added_tokens.json").write_text(json.dumps(added, indent=1))
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": eot, "eos_token": eot, "unk_token": eot}, indent=1))
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024, "add_prefix_space": False,
        "bos_token": eot, "eos_token": eot, "unk_token": eot, "errors": "replace",
        "added_tokens_decoder": decoder,
    }, indent=1))


def check_tokenizer(out_dir: Path, tags: tuple[str, ...]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out_dir))
    if len(tok) != TEXT_VOCAB_SIZE:
        raise SystemExit(f"tokenizer has {len(tok)} entries, expected {TEXT_VOCAB_SIZE}")
    for tag in tags:
        ids = tok(tag, add_special_tokens=False).input_ids
        if len(ids) != 1 or ids[0] < GPT2_BASE_VOCAB:
            raise SystemExit(f"tag {tag!r} is not one added token: {ids}")


def synthetic_voice(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A speech-like clip: a gliding harmonic tone with syllable-rate bursts and breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = 120.0 + 25.0 * np.sin(2 * np.pi * 0.7 * t) + 8.0 * np.sin(2 * np.pi * 5.0 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voiced = sum(np.cos(k * phase) * (0.8 ** k) for k in range(1, 15))
    syllables = np.clip(np.sin(2 * np.pi * 3.2 * t), 0.0, None) ** 0.5
    clip = 0.25 * syllables * voiced / np.max(np.abs(voiced)) + 0.005 * rng.standard_normal(t.size)
    return clip.astype(np.float32)


def write_builtin_voice(out_dir: Path, t3, s3gen, ve, seconds: float, seed: int) -> None:
    from voxgate_server.engines.chatterbox_turbo.conditioning import conditionals_from_wave

    from chatterbox.models.s3gen import S3GEN_SR

    wave = synthetic_voice(seconds, S3GEN_SR, seed)
    conds = conditionals_from_wave(wave, S3GEN_SR, t3=t3, s3gen=s3gen, ve=ve, device="cpu")
    conds.save(out_dir / "conds.pt")


def write_hf_cache(ckpt_dir: Path, hf_home: Path, revision: str | None, repo_id: str = HF_REPO_ID) -> Path:
    """Lay the checkpoint out as huggingface_hub's cache: blobs by hash, snapshot links, ref."""
    repo_dir = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in ckpt_dir.iterdir() if p.is_file())
    digest = hashlib.sha1()
    blobs: dict[str, str] = {}
    for path in files:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        blobs[path.name] = h.hexdigest()
        digest.update(f"{path.name}:{blobs[path.name]}\n".encode())
    revision = revision or digest.hexdigest()
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    snapshot = repo_dir / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    snapshot.mkdir(parents=True)
    for path in files:
        blob = repo_dir / "blobs" / blobs[path.name]
        if not blob.exists():
            try:
                os.link(path, blob)
            except OSError:
                shutil.copyfile(path, blob)
        (snapshot / path.name).symlink_to(Path("..") / ".." / "blobs" / blobs[path.name])
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.voice_encoder import VoiceEncoder

    from voxgate_server.engines.chatterbox_turbo.checkpoint import PARALINGUISTIC_TAGS

    started = time.monotonic()
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    dtype = DTYPES[args.dtype]
    torch.manual_seed(args.seed)
    counts: dict[str, int] = {}

    ve = VoiceEncoder().eval()
    counts["ve.safetensors"] = save_state(ve, out / "ve.safetensors", dtype)
    t3 = T3(turbo_t3_config()).eval()
    counts["t3_turbo_v1.safetensors"] = save_state(t3, out / "t3_turbo_v1.safetensors", dtype,
                                                   bias_edit=args.eos_logit_bias)
    s3gen = S3Gen(meanflow=True).eval()
    counts["s3gen_meanflow.safetensors"] = save_state(s3gen, out / "s3gen_meanflow.safetensors", dtype)

    write_tokenizer(out, PARALINGUISTIC_TAGS)
    check_tokenizer(out, PARALINGUISTIC_TAGS)
    if args.no_conds:
        (out / "conds.pt").unlink(missing_ok=True)
    else:
        with torch.inference_mode():
            write_builtin_voice(out, t3, s3gen, ve, args.ref_seconds, args.seed)
    del t3, s3gen, ve

    report: dict[str, object] = {
        "out_dir": str(out), "dtype": args.dtype, "seed": args.seed,
        "eos_logit_bias": args.eos_logit_bias, "values": counts,
        "files": sorted(p.name for p in out.iterdir()),
    }
    if args.hf_cache_layout is not None:
        report["hf_snapshot"] = str(write_hf_cache(out, args.hf_cache_layout, args.revision))
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
