"""Batched speech-token sampling with per-row parameters, graph-capturable.

Same processors in the same order as upstream ``T3.inference_turbo`` (Hugging Face's
Temperature -> TopK -> TopP -> RepetitionPenalty, then sampling from the softmax), but each row
of the batch has its own temperature, top_k, top_p, penalty and seed, all held in device
tensors so a CUDA graph can replay the whole step. Randomness is a counter-based hash of
(seed, step, token id) turned into Gumbel noise: ``argmax(scores + gumbel)`` samples exactly
from ``softmax(scores)``, needs no ``torch.Generator`` (none can live inside a graph per row),
and makes a seeded request reproducible whatever else shares its batch. With ``top_k == 1``
only one score is finite, so the result is upstream's greedy token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)


def _lsr(x: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def hashed_uniform(seed: Tensor, step: Tensor, vocab: int) -> Tensor:
    """splitmix64 of (seed, step*vocab + id) -> float32 uniform in (0, 1), shape [B, vocab]."""
    ids = torch.arange(vocab, device=seed.device, dtype=torch.int64)
    z = seed[:, None] + (step[:, None] * vocab + ids[None, :]) * _GOLDEN
    z = (z ^ _lsr(z, 30)) * _M1
    z = (z ^ _lsr(z, 27)) * _M2
    z = z ^ _lsr(z, 31)
    return (_lsr(z, 40).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


@dataclass(frozen=True)
class SamplingParams:
    """One request's sampling controls (upstream ``generate()`` defaults)."""

    temperature: float = 0.8
    top_k: int = 1000
    top_p: float = 0.95
    repetition_penalty: float = 1.2
    seed: int = 0

    @classmethod
    def greedy(cls) -> "SamplingParams":
        return cls(temperature=1.0, top_k=1, top_p=1.0, repetition_penalty=1.0)


class SamplingState:
    """Per-slot sampling parameters and token history, resident on the device."""

    def __init__(self, max_batch: int, vocab: int, device: torch.device) -> None:
        self.vocab = vocab
        self.temperature = torch.ones(max_batch, device=device)
        self.top_k = torch.full((max_batch,), vocab, device=device, dtype=torch.int64)
        self.top_p = torch.ones(max_batch, device=device)
        self.penalty = torch.ones(max_batch, device=device)
        self.seed = torch.zeros(max_batch, device=device, dtype=torch.int64)
        self.step = torch.zeros(max_batch, device=device, dtype=torch.int64)
        self.history = torch.zeros(max_batch, vocab, device=device, dtype=torch.bool)
        self._true = torch.ones((), device=device, dtype=torch.bool)  # no host copy inside a graph

    def set_slot(self, slot: int, p: SamplingParams) -> None:
        greedy = p.temperature <= 0
        self.temperature[slot] = 1.0 if greedy else p.temperature
        k = 1 if greedy else (p.top_k if p.top_k > 0 else self.vocab)
        self.top_k[slot] = min(k, self.vocab)
        self.top_p[slot] = p.top_p
        self.penalty[slot] = p.repetition_penalty
        self.seed[slot] = _signed(p.seed & _MASK64)
        self.step[slot] = 0
        self.history[slot] = False


def processed_scores(logits: Tensor, st: SamplingState, rows: Tensor) -> Tensor:
    """Upstream's processor chain, row-wise: what ``softmax`` is taken of before sampling."""
    V = logits.shape[-1]
    temp = st.temperature[rows][:, None]
    scores = logits / temp
    # top-k (HF: remove scores below the k-th largest; ties kept)
    sorted_asc, order = torch.sort(scores, dim=-1)
    kth = sorted_asc.gather(1, (V - st.top_k[rows]).clamp(0, V - 1)[:, None])
    scores = scores.masked_fill(scores < kth, float("-inf"))
    # top-p (HF: ascending cumulative probability, keep at least the best token)
    sorted_asc = sorted_asc.masked_fill(sorted_asc < kth, float("-inf"))
    cum = sorted_asc.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cum <= (1.0 - st.top_p[rows])[:, None]
    drop_sorted[:, -1] = False
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    scores = scores.masked_fill(drop, float("-inf"))
    # repetition penalty on tokens already in the row's history
    pen = st.penalty[rows][:, None]
    penalised = torch.where(scores < 0, scores * pen, scores / pen)
    return torch.where(st.history[rows], penalised, scores)


def sample(logits: Tensor, st: SamplingState, rows: Tensor) -> Tensor:
    """Next token for each row in ``rows`` from float32 ``logits`` [len(rows), V]; updates the
    rows' history and step counters in place."""
    scores = processed_scores(logits, st, rows)
    # Gumbel-max sampling: argmax(scores + Gumbel noise) ~ softmax(scores)
    u = hashed_uniform(st.seed[rows], st.step[rows], logits.shape[-1])
    gumbel = -torch.log(-torch.log(u))
    tokens = torch.argmax(scores + gumbel, dim=-1)
    st.history.index_put_((rows, tokens), st._true)
    st.step[rows] += 1
    return tokens
