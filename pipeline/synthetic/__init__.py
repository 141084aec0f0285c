"""Synthetic read-aloud story videos with exact ground truth, for tests, examples and benchmarks.

A :class:`VideoSpec` describes a "storytime" upload the way real ones are made: an optional
channel intro card, one illustrated page on screen while its narration plays, transitions
between pages (hard cuts, cross-fades, fades through black, a slow Ken Burns zoom, or a mix),
an optional outro card, and subtitles timed to the narration. :func:`write_story_video` renders
it with PIL + numpy, encodes H.264/AAC mp4 with PyAV (no ffmpeg binary needed), and writes the
WebVTT subtitles, a small HTML page that yt-dlp's generic extractor understands, the page
pictures and a ``truth.json`` in the format of the real samples in ``shared/samples/readaloud``.

Timing conventions (the same as the real samples):

- segment boundaries fall on frames; a segment is on screen from ``t_start`` to ``t_end``;
- a cut shows the new page from its boundary frame; a cross-fade is centred on the boundary
  (half done there); a fade goes to black over ``transition_s``, is black on the boundary frame
  and comes back over ``transition_s``;
- a page's speech runs, by default, from 0.3 s after its ``t_start`` to 0.5 s before ``t_end``.

Everything is deterministic for a spec: the same spec gives the same pixels, samples and (with
this PyAV/x264 build, one encoder thread) the same mp4 bytes.

Bad inputs for the error-path tests come from :func:`write_truncated_mp4`,
:func:`write_zero_length`, :func:`write_corrupt_mp4`, :func:`write_garbage_subtitles` and
``VideoSpec(audio=False)``. :func:`write_example_sources` writes the bundled example dataset.

The package, one module per role:

- ``spec``: :class:`VideoSpec`, :class:`PageSpec`, the truth records :class:`Segment` and
  :class:`Truth`, :func:`load_truth`;
- ``drawing``: the page illustrations and intro/outro cards;
- ``timeline``: :class:`FrameRenderer` (segments, transitions, frames) and :func:`word_timings`;
- ``audio``: the synthetic narration;
- ``encode``: H.264/AAC mp4 encoding with PyAV;
- ``subtitles``: WebVTT/SRT text, YouTube-style auto captions (with inline word timings) and the HTML page;
- ``writer``: :func:`write_story_video`, which puts the above together;
- ``bad_media``: broken files for the error-path tests;
- ``examples``: the bundled example dataset;
- ``animated``: animated clips (moving shots, hard cuts, dissolves) with shot truth, for shot mode:
  :class:`AnimatedSpec`, :func:`write_animated_video`, :func:`sample_animated_spec`;
- ``filmed``: filmed picture books (a book open on a table: perspective, drift and shake, exposure
  flicker, noise, hands, animated page turns) with page truth: :class:`FilmedSpec`,
  :func:`write_filmed_video`, :func:`load_filmed_truth`.
"""

from pipeline.synthetic.spec import (
    GENERATOR_VERSION,
    SPEECH_LEAD_S,
    SPEECH_TAIL_S,
    STYLES,
    PageSpec,
    Segment,
    Truth,
    VideoSpec,
    load_truth,
)
from pipeline.synthetic.drawing import draw_card, draw_page
from pipeline.synthetic.timeline import FrameRenderer, word_timings
from pipeline.synthetic.audio import synth_audio
from pipeline.synthetic.subtitles import (
    LANGUAGE_NAMES,
    auto_caption_vtt,
    caption_word,
    html_page,
    srt_text,
    vtt_text,
    write_auto_caption_vtt,
)
from pipeline.synthetic.writer import write_story_video
from pipeline.synthetic.bad_media import (
    write_corrupt_mp4,
    write_garbage_subtitles,
    write_truncated_mp4,
    write_zero_length,
)
from pipeline.synthetic.examples import EXAMPLE_STORIES, example_specs, write_example_sources
from pipeline.synthetic.animated import (
    AnimatedRenderer,
    AnimatedSpec,
    AnimatedTruth,
    ShotSpec,
    load_animated_truth,
    sample_animated_spec,
    write_animated_video,
)
from pipeline.synthetic.filmed import FilmedRenderer, FilmedSpec, FilmedTruth, load_filmed_truth, write_filmed_video

__all__ = [
    "AnimatedRenderer",
    "AnimatedSpec",
    "AnimatedTruth",
    "EXAMPLE_STORIES",
    "FilmedRenderer",
    "FilmedSpec",
    "FilmedTruth",
    "FrameRenderer",
    "GENERATOR_VERSION",
    "LANGUAGE_NAMES",
    "PageSpec",
    "SPEECH_LEAD_S",
    "SPEECH_TAIL_S",
    "STYLES",
    "Segment",
    "ShotSpec",
    "Truth",
    "VideoSpec",
    "auto_caption_vtt",
    "caption_word",
    "draw_card",
    "draw_page",
    "example_specs",
    "html_page",
    "load_animated_truth",
    "load_filmed_truth",
    "load_truth",
    "srt_text",
    "sample_animated_spec",
    "synth_audio",
    "vtt_text",
    "word_timings",
    "write_animated_video",
    "write_auto_caption_vtt",
    "write_corrupt_mp4",
    "write_example_sources",
    "write_filmed_video",
    "write_garbage_subtitles",
    "write_story_video",
    "write_truncated_mp4",
    "write_zero_length",
]
