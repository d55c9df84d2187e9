"""Chatterbox Turbo (chatterbox-tts 0.1.7) as a voxgate engine.

Importing this package is cheap; the heavy ``chatterbox`` imports happen in ``engine.load()``
via ``compat.import_chatterbox()``, so a server without the ``chatterbox`` extra still starts.
"""
