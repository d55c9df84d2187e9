"""Chatterbox Turbo on a GPU: the fast path against upstream in-process and over HTTP, and the
parts it is made of (T3 step, S3Gen call, Multilingual); the clip every GPU bench speaks."""
