"""The clip every Chatterbox Turbo bench speaks, so that their figures compare.

101 characters, about the length the first-audio target names (100); 24 kHz: S3Gen's output
rate. A module of its own (no imports) so that any bench can take the clip without importing
another bench.
"""

from __future__ import annotations

TEXT = "Good morning, and welcome to the weekly update. The server handled more requests than ever this week."
SR = 24000
