"""The fast path's S3Gen half: the streaming vocoder (``vocoder``), the worker that batches every
request's pieces (``s3gen_worker``), the flow and HiFT stages as CUDA graphs (``flow_graph``,
``hift_graph``, ``graph_cache``) and their kernels (``flow_attention``, ``snake_kernel``,
``s3gen_syncfree``).

Importing the package imports none of them: the Triton modules load only on CUDA.
"""
