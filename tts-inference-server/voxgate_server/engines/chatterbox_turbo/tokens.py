"""Text + conditionals -> speech tokens: Turbo's T3 sampling loop with a cap and cancellation.

This is ``T3.inference_turbo`` (chatterbox-tts 0.1.7) re-stated so that (a) the number of
tokens is bounded by the caller, (b) the request's cancel event is checked between steps,
(c) sampling draws from the request's own ``torch.Generator`` (same seed, same tokens, however
many requests run at once). Everything else is the model's own modules. A faster generator
(CUDA graphs, static KV cache) can replace ``T3TokenGenerator`` behind the same ``generate``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from voxgate_server.engines.base import Cancelled

TOKENS_PER_SECOND = 25  # one S3 speech token = 40 ms of audio
SPEECH_VOCAB = 6561  # tokens >= this are start/stop and never reach S3Gen


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 1000
    repetition_penalty: float = 1.2
    max_tokens: int = 1000


def logits_processors(params: SamplingParams) -> Any:
    """The same processors, in the same order, as upstream's ``inference_turbo``."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if params.temperature > 0 and params.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k > 0:
        procs.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        procs.append(TopPLogitsWarper(params.top_p))
    if params.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    return procs


class T3TokenGenerator:
    """Autoregressive speech-token sampling on the model's T3 (GPT-2 medium) with a KV cache."""

    def __init__(self, t3: Any) -> None:
        self.t3 = t3

    def generate(
        self,
        text_tokens: Any,
        t3_cond: Any,
        params: SamplingParams,
        generator: Any,
        cancel: threading.Event,
    ) -> Any:
        """Return a 1-D LongTensor of at most ``params.max_tokens`` speech tokens (< 6561)."""
        import torch
        import torch.nn.functional as F

        t3 = self.t3
        procs = logits_processors(params)
        stop = t3.hp.stop_speech_token
        with torch.inference_mode():
            start = torch.full_like(text_tokens[:, :1], t3.hp.start_speech_token)
            embeds, _ = t3.prepare_input_embeds(
                t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start, cfg_weight=0.0)
            out = t3.tfmr(inputs_embeds=embeds, use_cache=True)
            past = out.past_key_values
            logits = t3.speech_head(out[0][:, -1:])[:, -1, :].float()
            history = start
            generated: list[Any] = []
            while True:
                if cancel.is_set():
                    raise Cancelled()
                scores = procs(history, logits)
                if torch.all(scores == -float("inf")):
                    break
                token = torch.multinomial(F.softmax(scores, dim=-1), 1, generator=generator)
                # Upstream never checks the first sampled token for stop; neither do we.
                if generated and int(token) == stop:
                    break
                generated.append(token)
                if len(generated) >= params.max_tokens:
                    break
                history = token if len(generated) == 1 else torch.cat([history, token], dim=1)
                out = t3.tfmr(inputs_embeds=t3.speech_emb(token), past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = t3.speech_head(out[0])[:, -1, :].float()
        if not generated:
            return torch.zeros(0, dtype=torch.long, device=text_tokens.device)
        tokens = torch.cat(generated, dim=1)[0]
        return tokens[tokens < SPEECH_VOCAB]
