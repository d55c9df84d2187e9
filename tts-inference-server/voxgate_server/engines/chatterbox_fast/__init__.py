"""Fast path for Chatterbox Turbo: batched static-cache T3 decoding and streaming S3Gen.

- ``t3/``: ``BatchedT3Decoder`` (t3/decoder.py): continuous batching, static KV cache, CUDA
  graphs, bf16; its decode step as Triton kernels (t3/fused_step.py, t3/fused_kernels.py) where
  Triton can compile.
- ``s3gen/``: ``StreamingVocoder`` (s3gen/vocoder.py): tokens -> audio chunks with overlap while
  T3 generates, through one worker that batches every request's S3Gen pieces as CUDA graphs.
- ``FastTurbo`` (pipeline.py): the two over a loaded upstream ``ChatterboxTurboTTS``;
  ``engine.py`` the voxgate engine on top.

Everything runs on CPU in float32 without graphs too (that is what CI tests).
"""

from voxgate_server.engines.chatterbox_fast.pipeline import FastTurbo
from voxgate_server.engines.chatterbox_fast.s3gen.vocoder import StreamingVocoder
from voxgate_server.engines.chatterbox_fast.t3.decoder import BatchedT3Decoder, DecodeCancelled, TokenStream
from voxgate_server.engines.chatterbox_fast.t3.sampling import SamplingParams

__all__ = ["BatchedT3Decoder", "DecodeCancelled", "FastTurbo", "SamplingParams", "StreamingVocoder", "TokenStream"]
