"""Knobs bench, ``mem``: where the VRAM goes after loading (parameters per module, allocated)."""

from __future__ import annotations

from typing import Any

from bench.knobs.knobs_common import emit


def section_mem(model: Any, torch: Any, rows: list) -> None:
    def gib(mod: Any) -> float:
        return round(sum(p.numel() * p.element_size() for p in mod.parameters()) / 2**30, 3)

    s3 = model.s3gen
    emit({"section": "mem", "allocated_gib": round(torch.cuda.memory_allocated() / 2**30, 3),
          "t3_gib": gib(model.t3), "t3_tfmr_gib": gib(model.t3.tfmr) if model.t3.tfmr is not None else 0,
          "s3gen_flow_gib": gib(s3.flow), "s3gen_hift_gib": gib(s3.mel2wav),
          "s3gen_tokenizer_gib": gib(s3.tokenizer), "s3gen_speaker_gib": gib(s3.speaker_encoder),
          "ve_gib": gib(model.ve)}, rows)
