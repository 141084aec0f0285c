"""Narration as timed text: subtitles, Whisper transcripts, and their alignment to frames (by time,
and by time plus CLIP evidence)."""
