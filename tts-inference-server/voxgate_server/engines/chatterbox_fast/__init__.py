"""Fast path for Chatterbox Turbo: batched static-cache T3 decoding and streaming S3Gen.

- ``BatchedT3Decoder`` (decoder.py): continuous batching, static KV cache, CUDA graphs, bf16;
  its decode step as Triton kernels (fused_step.py, fused_kernels.py) where Triton can compile.
- ``StreamingVocoder`` (vocoder.py): tokens -> audio chunks with overlap while T3 generates.
- ``FastTurbo`` (pipeline.py): the two over a loaded upstream ``ChatterboxTurboTTS``.

Everything runs on CPU in float32 without graphs too (that is what CI tests).
"""

from voxgate_server.engines.chatterbox_fast.decoder import BatchedT3Decoder, DecodeCancelled, TokenStream
from voxgate_server.engines.chatterbox_fast.pipeline import FastTurbo
from voxgate_server.engines.chatterbox_fast.sampling import SamplingParams
from voxgate_server.engines.chatterbox_fast.vocoder import StreamingVocoder

__all__ = ["BatchedT3Decoder", "DecodeCancelled", "FastTurbo", "SamplingParams", "StreamingVocoder", "TokenStream"]
