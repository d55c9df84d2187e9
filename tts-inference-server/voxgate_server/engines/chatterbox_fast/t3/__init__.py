"""The fast path's T3 half: continuous batching over a static KV cache (``decoder``), GPT-2 with
that cache (``gpt2_static``), the decode step as Triton kernels (``fused_step``,
``fused_kernels``) and batched sampling (``sampling``, ``sampling_kernel``).

Importing the package imports none of them: the Triton modules load only on CUDA.
"""
