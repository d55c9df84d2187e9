"""Text + conditionals -> speech tokens on the multilingual T3 (Llama 520M, CFG, alignment guard).

This is ``T3.inference`` (chatterbox-tts 0.1.7) re-stated, as ``chatterbox_turbo.tokens`` does
for Turbo, so that the caller bounds the number of tokens, the request's cancel event is checked
between steps and sampling draws from the request's own ``torch.Generator``. The model's own
modules do the work: ``T3HuggingfaceBackend`` and upstream's ``AlignmentStreamAnalyzer`` (which
suppresses the stop token until the text is read and forces it on a repeated token or a long
tail), with the same processors in the same order. Upstream leaves the analyzer's attention
hooks on the model after every call; here they are removed when the call ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from voxgate_server.engines.base import Cancelled
from voxgate_server.engines.chatterbox_turbo.tokens import SPEECH_VOCAB


@dataclass(frozen=True)
class MtlSamplingParams:
    temperature: float = 0.8
    top_p: float = 1.0
    min_p: float = 0.05
    repetition_penalty: float = 2.0
    cfg_weight: float = 0.5
    max_tokens: int = 1000


def _hooked_layers(tfmr: Any) -> list[Any]:
    from chatterbox.models.t3.inference.alignment_stream_analyzer import LLAMA_ALIGNED_HEADS

    return [tfmr.layers[layer].self_attn for layer, _ in LLAMA_ALIGNED_HEADS]


class MtlTokenGenerator:
    def __init__(self, t3: Any) -> None:
        self.t3 = t3

    def generate(self, text_tokens: Any, t3_cond: Any, params: MtlSamplingParams, generator: Any,
                 cancel: threading.Event) -> Any:
        """``text_tokens``: (2, L) with start/stop text tokens (the CFG pair). Returns the 1-D
        LongTensor of at most ``params.max_tokens`` tokens before the stop token, as upstream
        (``speech_tokens_only`` keeps those S3Gen can voice)."""
        import torch
        from chatterbox.models.t3.inference.alignment_stream_analyzer import AlignmentStreamAnalyzer
        from chatterbox.models.t3.inference.t3_hf_backend import T3HuggingfaceBackend
        from transformers.generation.logits_process import (
            MinPLogitsWarper,
            RepetitionPenaltyLogitsProcessor,
            TopPLogitsWarper,
        )

        t3 = self.t3
        hp = t3.hp
        layers = _hooked_layers(t3.tfmr)
        before = [set(layer._forward_hooks) for layer in layers]
        try:
            with torch.inference_mode():
                start = hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
                embeds, len_cond = t3.prepare_input_embeds(t3_cond=t3_cond, text_tokens=text_tokens,
                                                           speech_tokens=start, cfg_weight=params.cfg_weight)
                analyzer = AlignmentStreamAnalyzer(
                    t3.tfmr, None, text_tokens_slice=(len_cond, len_cond + text_tokens.size(-1)),
                    alignment_layer_idx=9, eos_idx=hp.stop_speech_token)
                backend = T3HuggingfaceBackend(config=t3.cfg, llama=t3.tfmr, speech_enc=t3.speech_emb,
                                               speech_head=t3.speech_head, alignment_stream_analyzer=analyzer)
                bos = torch.tensor([[hp.start_speech_token]], dtype=torch.long, device=embeds.device)
                bos_embed = t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)
                bos_embed = torch.cat([bos_embed, bos_embed])
                top_p = TopPLogitsWarper(top_p=params.top_p)
                min_p = MinPLogitsWarper(min_p=params.min_p)
                repetition = RepetitionPenaltyLogitsProcessor(penalty=float(params.repetition_penalty))
                output = backend(inputs_embeds=torch.cat([embeds, bos_embed], dim=1), past_key_values=None,
                                 use_cache=True, output_attentions=True, output_hidden_states=True,
                                 return_dict=True)
                past = output.past_key_values
                generated_ids = bos.clone()
                predicted: list[Any] = []
                for i in range(params.max_tokens):
                    if cancel.is_set():
                        raise Cancelled()
                    step = output.logits[:, -1, :]
                    cond, uncond = step[0:1, :], step[1:2, :]
                    cfg = torch.as_tensor(params.cfg_weight, device=cond.device, dtype=cond.dtype)
                    logits = cond + cfg * (cond - uncond)
                    logits = analyzer.step(logits, next_token=generated_ids[0, -1].item())
                    ids = generated_ids[:1, ...]
                    logits = repetition(ids, logits)
                    if params.temperature != 1.0:
                        logits = logits / params.temperature
                    logits = top_p(ids, min_p(ids, logits))
                    token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1, generator=generator)
                    predicted.append(token)
                    generated_ids = torch.cat([generated_ids, token], dim=1)
                    if token.view(-1) == hp.stop_speech_token:
                        break
                    embed = t3.speech_emb(token) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
                    output = backend(inputs_embeds=torch.cat([embed, embed]), past_key_values=past,
                                     output_attentions=True, output_hidden_states=True, return_dict=True)
                    past = output.past_key_values
        finally:
            for layer, keep in zip(layers, before):
                for key in set(layer._forward_hooks) - keep:
                    del layer._forward_hooks[key]
        if not predicted:
            return torch.zeros(0, dtype=torch.long, device=text_tokens.device)
        tokens = torch.cat(predicted, dim=1)[0]
        return tokens[tokens != hp.stop_speech_token]


def speech_tokens_only(tokens: Any) -> Any:
    """The tokens S3Gen can voice. The multilingual speech head has 8194 outputs, 6561 of them
    speech codes; upstream hands S3Gen everything before the stop token (real weights make no
    others; random ones do), voxgate drops the rest."""
    return tokens[tokens < SPEECH_VOCAB]
