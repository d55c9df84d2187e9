"""Speech tokens + conditionals -> 24 kHz waveform (S3Gen meanflow + HiFT), then the watermark.

S3Gen draws its flow-matching noise and the vocoder's excitation noise from torch's global
generator. To keep a seeded request reproducible while other requests run, the global state is
forked, seeded from the request's own generator and restored, under one process-wide lock.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

SILENCE_TOKENS = 3  # upstream appends three S3GEN_SIL tokens so speech does not end abruptly
_GLOBAL_RNG_LOCK = threading.Lock()


def apply_watermark(watermarker: Any, samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Perth's watermark on ``samples``, without autograd.

    resemble-perth 1.0.1 runs its network with gradients on (and upstream's ``generate()`` calls
    it so): each call builds an autograd graph, and on the fast path the saved activations of
    one call per clip stayed alive after the clip ended, beyond ``gc.collect()`` (CPU: 16
    tensors a clip, tests/chatterbox/test_watermark_memory.py). Inference mode builds no graph;
    the samples are the same.
    """
    import torch

    with torch.inference_mode():
        out = watermarker.apply_watermark(samples, sample_rate=sample_rate)
    return np.ascontiguousarray(out, dtype=np.float32)


class Vocoder:
    def __init__(self, s3gen: Any, watermarker: Any | None, sample_rate: int) -> None:
        self.s3gen = s3gen
        self.watermarker = watermarker
        self.sample_rate = sample_rate

    def synthesize(self, tokens: Any, gen_conds: dict, generator: Any) -> np.ndarray:
        """Float32 mono samples; ``gen_conds`` must be a private dict (S3Gen writes into it)."""
        import torch
        from chatterbox.models.s3gen.const import S3GEN_SIL

        device = self.s3gen.device
        tokens = tokens.to(device)
        silence = torch.full((SILENCE_TOKENS,), S3GEN_SIL, dtype=torch.long, device=device)
        tokens = torch.cat([tokens, silence])
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        devices = [device] if device.type == "cuda" else []
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            wav, _ = self.s3gen.inference(speech_tokens=tokens, ref_dict=gen_conds, n_cfm_timesteps=2)
        samples = wav.squeeze(0).detach().float().cpu().numpy()
        if self.watermarker is not None:
            samples = apply_watermark(self.watermarker, samples, self.sample_rate)
        return np.ascontiguousarray(samples, dtype=np.float32)
