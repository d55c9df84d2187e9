"""Chatterbox Multilingual (chatterbox-tts 0.1.7, ``ChatterboxMultilingualTTS``, 23 languages).

A sibling of ``chatterbox_turbo``: the same voice library, conditioning cache, token budget and
vocoder wrapper, with upstream's multilingual loader, its grapheme tokenizer with a language
tag, and its Llama T3 decoded with classifier-free guidance and the alignment analyzer.
Importing this package is cheap; ``chatterbox`` is imported in ``engine.load()``.
"""
