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

    if not staged_watermark(watermarker):
        with torch.inference_mode():
            out = watermarker.apply_watermark(samples, sample_rate=sample_rate)
        return np.ascontiguousarray(out, dtype=np.float32)
    signal = watermark_input(watermarker, samples, sample_rate)
    return watermark_output(watermarker, watermark_network(watermarker, signal), sample_rate)


# Perth's ``PerthImplicitWatermarker.apply_watermark`` in its three parts, so that a server can
# run only the network's part on a thread of its own (chatterbox_fast.pipeline: a thread that
# runs GPU kernels keeps library handles for good) and the resampling on the request's thread.


def staged_watermark(watermarker: Any) -> bool:
    """Whether ``watermarker`` is Perth's implicit one, which the three parts below restate."""
    net = getattr(watermarker, "perth_net", None)
    return net is not None and hasattr(net, "ap") and hasattr(net, "encoder")


def watermark_input(watermarker: Any, samples: np.ndarray, sample_rate: int) -> Any:
    """``samples`` at the network's rate, as float32 on its device (CPU work, and the copy)."""
    import torch
    from librosa import resample

    rate = watermarker.perth_net.hp.sample_rate
    signal = resample(samples, orig_sr=sample_rate, target_sr=rate) if sample_rate != rate else samples
    return torch.from_numpy(np.array(signal)).to(dtype=torch.float, device=watermarker.perth_net.device)


def watermark_network(watermarker: Any, signal: Any) -> Any:
    """The watermarked signal at the network's rate, on its device: STFT, encoder, inverse STFT,
    under inference mode (see ``apply_watermark``). On a GPU the kernels are only queued."""
    import torch

    net = watermarker.perth_net
    with torch.inference_mode():
        magspec, phase = net.ap.signal_to_magphase(signal)
        marked, _mask = net.encoder(magspec[None])
        return net.ap.magphase_to_signal(marked[0], phase)


def watermark_output(watermarker: Any, signal: Any, sample_rate: int) -> np.ndarray:
    """Back to the host (waiting for the network) and to ``sample_rate``, as float32."""
    from librosa import resample

    rate = watermarker.perth_net.hp.sample_rate
    out = signal.cpu().numpy()
    if sample_rate != rate:
        out = resample(out, orig_sr=rate, target_sr=sample_rate)
    return np.ascontiguousarray(out, dtype=np.float32)


class Vocoder:
    def __init__(self, s3gen: Any, watermarker: Any | None, sample_rate: int, *,
                 cfm_timesteps: int | None = 2, silence_tokens: int = SILENCE_TOKENS) -> None:
        # Turbo: meanflow decoder, 2 steps, three silence tokens appended (its generate()).
        # Multilingual: the 10-step decoder (None = S3Gen's default) and no silence tokens.
        self.cfm_timesteps = cfm_timesteps
        self.silence_tokens = silence_tokens
        self.s3gen = s3gen
        self.watermarker = watermarker
        self.sample_rate = sample_rate

    def synthesize(self, tokens: Any, gen_conds: dict, generator: Any) -> np.ndarray:
        """Float32 mono samples; ``gen_conds`` must be a private dict (S3Gen writes into it)."""
        import torch
        from chatterbox.models.s3gen.const import S3GEN_SIL

        device = self.s3gen.device
        tokens = tokens.to(device)
        silence = torch.full((self.silence_tokens,), S3GEN_SIL, dtype=torch.long, device=device)
        tokens = torch.cat([tokens, silence])
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        devices = [device] if device.type == "cuda" else []
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            wav, _ = self.s3gen.inference(speech_tokens=tokens, ref_dict=gen_conds,
                                           n_cfm_timesteps=self.cfm_timesteps)
        samples = wav.squeeze(0).detach().float().cpu().numpy()
        if self.watermarker is not None:
            samples = apply_watermark(self.watermarker, samples, self.sample_rate)
        return np.ascontiguousarray(samples, dtype=np.float32)
