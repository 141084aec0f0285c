"""Tests for the synthetic read-aloud video generator: decoded pixels, audio, subtitles, truth."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from pipeline import synthetic as S  # noqa: E402

SAME = 5.0  # mean abs RGB difference of a decoded frame and what was drawn: 4:2:0 chroma + crf 23
PAGE_TEXTS = [
    "The Red Kite",
    "Ama made a kite. It was red and very light.",
    "The wind pulled it up, up, up over the trees.",
    "The string broke! The kite flew away.",
    "A goat found it in the hills. Now the goat flies it.",
]


def make_spec(style: str, **kw) -> S.VideoSpec:
    pages = [S.PageSpec(text, 2.4) for text in PAGE_TEXTS]
    kw.setdefault("seed", 11)
    return S.VideoSpec(pages=pages, style=style, title=f"Kite ({style})", **kw)


def decode(path: Path) -> tuple[np.ndarray, "av.video.stream.VideoStream"]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, stream


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        return np.concatenate(chunks).astype(np.float64), stream.codec_context.sample_rate


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def mid_frame(seg: S.Segment, fps: int) -> int:
    return int((seg.t_start + seg.t_end) / 2 * fps)


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """A tiny WebVTT reader: (start, end, text) per cue; enough to check what the generator wrote."""
    def sec(ts: str) -> float:
        h, m, s = ts.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    cues, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(\d\d:\d\d:\d\d[.,]\d{3}) --> (\d\d:\d\d:\d\d[.,]\d{3})", line)
        if m:
            body = []
            for nxt in lines[i + 1:]:
                if not nxt.strip() and nxt != " ":
                    break
                body.append(nxt)
            cues.append((sec(m.group(1)), sec(m.group(2)), "\n".join(body)))
    return cues


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[S.Truth, np.ndarray]]:
    out = tmp_path_factory.mktemp("synthetic")
    specs = {
        "cut": make_spec("cut", intro=True, outro=True),
        "lineart": make_spec("cut", line_art=True, seed=12),
        "crossfade": make_spec("crossfade", outro=True),
        "fade": make_spec("fade", intro=True, outro=True),
        "kenburns": make_spec("kenburns", intro=True, pillarbox=True),
        "mixed": make_spec("mixed", audio=False, seed=5),
    }
    result = {}
    for name, spec in specs.items():
        truth = S.write_story_video(out, name, spec, srt=(name == "cut"))
        frames, _ = decode(truth.video)
        result[name] = (truth, frames)
    return result


def test_streams_and_frame_count(videos):
    truth, frames = videos["cut"]
    spec = truth.spec
    # 2 s intro + 5 pages x 2.4 s + 3 s outro at 25 fps
    assert truth.n_frames == 50 + 5 * 60 + 75 == len(frames)
    assert frames.shape[1:] == (spec.height, spec.width, 3)
    with av.open(str(truth.video)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert v.average_rate == 25
        assert float(v.duration * v.time_base) == pytest.approx(truth.duration_s, abs=0.05)
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.codec_context.sample_rate == 16000
        assert a.codec_context.layout.nb_channels == 1
        keyframes = [float(p.pts * v.time_base) for p in c.demux(v) if p.is_keyframe and p.pts is not None]
    assert 0.0 in keyframes and max(np.diff(keyframes)) <= 2.0 + 1e-6  # keyint 2 s
    segs = truth.segments
    assert [s.kind for s in segs] == ["intro"] + ["page"] * 5 + ["outro"]
    assert segs[0].t_start == 0 and segs[-1].t_end == pytest.approx(truth.duration_s)
    assert all(a.t_end == b.t_start for a, b in zip(segs, segs[1:]))


@pytest.mark.parametrize("name", ["cut", "crossfade", "fade"])
def test_mid_page_frame_shows_its_picture(videos, name):
    truth, frames = videos[name]
    segs = truth.segments
    for i, seg in enumerate(segs):
        frame = frames[mid_frame(seg, truth.spec.fps)]
        assert mad(frame, seg.picture) < SAME, (name, i)
        if i:
            assert mad(frame, segs[i - 1].picture) > 30.0, (name, i)  # consecutive pictures differ a lot


def test_cut_switches_on_the_boundary_frame(videos):
    truth, frames = videos["cut"]
    fps = truth.spec.fps
    for prev, seg in zip(truth.segments, truth.segments[1:]):
        b = round(seg.t_start * fps)
        assert mad(frames[b - 1], prev.picture) < SAME and mad(frames[b], seg.picture) < SAME


def test_line_art_is_the_hard_case(videos):
    truth, frames = videos["lineart"]
    pages = truth.pages()
    for prev, page in zip(pages, pages[1:]):
        own, other = frames[mid_frame(page, 25)], frames[mid_frame(prev, 25)]
        assert mad(own, page.picture) < 3.0  # about 2 of it is 8-bit limited-range rounding of the paper
        assert mad(own, other) > 2 * mad(own, page.picture) and mad(own, other) > 6.0
        assert abs(own.mean() - other.mean()) < SAME  # the mean grey level hardly moves at a cut
        assert own.mean() > 225  # near-white paper
    colour = videos["cut"][1]
    assert colour[::25].std() > 2 * frames[::25].std()  # little fill: line art is much flatter


def test_fade_goes_through_black(videos):
    truth, frames = videos["fade"]
    T = round(truth.spec.transition_s * 25)
    for prev, seg in zip(truth.segments, truth.segments[1:]):
        b = round(seg.t_start * 25)
        assert frames[b].mean() < 3.0  # black on the boundary frame
        assert frames[b - T // 2].mean() < 0.7 * prev.picture.mean()  # half way down
        assert frames[b + T // 2].mean() < 0.7 * seg.picture.mean()  # half way up
        assert mad(frames[b + T + 2], seg.picture) < SAME


def test_crossfade_mid_frames_are_blends(videos):
    truth, frames = videos["crossfade"]
    T = round(truth.spec.transition_s * 25)
    for prev, seg in zip(truth.segments, truth.segments[1:]):
        b = round(seg.t_start * 25)
        a_img, b_img = prev.picture.astype(np.float32), seg.picture.astype(np.float32)
        f = frames[b].astype(np.float32)
        d = (b_img - a_img).ravel()
        alpha = float((f - a_img).ravel() @ d / (d @ d))
        assert 0.4 < alpha < 0.65  # half done at the page's t_start
        assert mad(f, (1 - alpha) * a_img + alpha * b_img) < SAME
        assert mad(f, a_img) > 10 and mad(f, b_img) > 10
        assert mad(frames[b - T // 2 - 1], prev.picture) < SAME  # untouched outside the blend
        assert mad(frames[b + T // 2 + 1], seg.picture) < SAME


def test_kenburns_zooms_within_pages_and_cuts_between(videos):
    truth, frames = videos["kenburns"]
    renderer = S.FrameRenderer(truth.spec)
    pages = truth.pages()
    for page in pages:
        f0, f1 = round(page.t_start * 25), round(page.t_end * 25)
        assert page.kenburns
        steps = [mad(frames[n], frames[n + 1]) for n in range(f0 + 5, f0 + 10)]
        assert min(steps) > 0.05  # it keeps moving
        assert mad(frames[f0 + 1], frames[f1 - 2]) > 3.0  # 8-15 % zoom over the page
        mid = frames[mid_frame(page, 25)]
        assert mad(mid, renderer.rgb(mid_frame(page, 25))) < SAME
        others = [mad(mid, p.picture) for p in pages if p is not page]
        assert mad(mid, page.picture) < min(others) / 2  # still clearly its own page
    # the pillarbox bars stay light grey
    assert np.abs(frames[mid_frame(pages[0], 25)][:, :8].astype(int) - (243, 244, 242)).mean() < 6


def test_decoded_frames_match_the_renderer(videos):
    truth, frames = videos["mixed"]
    renderer = S.FrameRenderer(truth.spec)
    assert {s.transition_in for s in truth.segments[1:]} <= {"cut", "crossfade", "fade"}
    for n in range(0, truth.n_frames, 7):
        assert mad(frames[n], renderer.rgb(n)) < SAME, n


@pytest.mark.parametrize("name", ["cut", "fade"])
def test_audio_speech_spans_and_silence(videos, name):
    truth, _ = videos[name]
    audio, sr = decode_audio(truth.video)
    assert len(audio) == pytest.approx(truth.duration_s * sr, abs=2048)

    def rms(t0: float, t1: float) -> float:
        seg = audio[int(t0 * sr):int(t1 * sr)]
        return float(np.sqrt(np.mean(seg ** 2)))

    silent = [(0.0, truth.pages()[0].speech_start)]
    for page in truth.pages():
        assert page.speech_start == pytest.approx(page.t_start + 0.3, abs=1e-3)
        assert page.speech_end == pytest.approx(page.t_end - 0.5, abs=1e-3)
        assert rms(page.speech_start + 0.1, page.speech_end - 0.1) > 0.03
        silent.append((page.speech_end, page.t_end + 0.3))
    silent[-1] = (truth.pages()[-1].speech_end, truth.duration_s)
    for t0, t1 in silent:
        assert rms(t0 + 0.1, t1 - 0.1) < 0.002, (t0, t1)
    # syllable-rate amplitude modulation: the 50 ms envelope swings within a span
    page = truth.pages()[1]
    hop = sr // 20
    env = [rms(t, t + hop / sr) for t in np.arange(page.speech_start, page.speech_end - 0.05, hop / sr)]
    assert max(env) > 4 * min(env)


def test_audio_false_has_no_audio_stream(videos):
    truth, _ = videos["mixed"]
    with av.open(str(truth.video)) as c:
        assert len(c.streams.audio) == 0 and len(c.streams.video) == 1


def test_vtt_srt_and_html(videos):
    truth, _ = videos["cut"]
    cues = parse_vtt(truth.subtitles.read_text(encoding="utf-8"))
    assert truth.subtitles.name == "cut.en.vtt"
    assert truth.subtitles.read_text(encoding="utf-8").startswith("WEBVTT\n")
    pages = truth.pages()
    assert [c[2] for c in cues] == PAGE_TEXTS
    for (start, end, _), page in zip(cues, pages):
        assert start == pytest.approx(page.speech_start, abs=1e-3) and end == pytest.approx(page.speech_end, abs=1e-3)
    srt = parse_vtt(truth.files["srt"].read_text(encoding="utf-8"))
    assert srt == cues
    page_html = truth.files["html"].read_text(encoding="utf-8")
    assert "<title>Kite (cut)</title>" in page_html
    assert '<source src="cut.mp4" type="video/mp4">' in page_html
    assert 'srclang="en"' in page_html and 'src="cut.en.vtt"' in page_html


def test_truth_json_round_trip(videos):
    truth, _ = videos["fade"]
    data = json.loads(truth.files["truth"].read_text(encoding="utf-8"))
    assert data["key"] == "fade" and data["lang"] == "en" and data["fps"] == 25
    intro, first = data["segments"][0], data["segments"][1]
    assert intro["page"] is None and intro["kind"] == "intro" and "text" not in intro
    assert first["page"] == 0 and "kind" not in first and first["text"] == PAGE_TEXTS[0]  # the real samples' format
    loaded = S.load_truth(truth.files["truth"])
    assert loaded.spec == truth.spec and loaded.n_frames == truth.n_frames
    for a, b in zip(loaded.segments, truth.segments):
        assert a == b
        assert np.array_equal(a.picture, b.picture)
    words = [w for w, _, _ in loaded.pages()[1].words]
    assert " ".join(words) == PAGE_TEXTS[1]


def test_same_seed_same_pixels_and_bytes(tmp_path, videos):
    truth, frames = videos["crossfade"]
    again = S.write_story_video(tmp_path, "crossfade", truth.spec)
    assert np.array_equal(decode(again.video)[0], frames)
    assert again.video.read_bytes() == truth.video.read_bytes()
    other = S.write_story_video(tmp_path, "other", S.VideoSpec(**{**truth.spec.to_dict(), "seed": 99}))
    assert mad(other.pages()[1].picture, truth.pages()[1].picture) > 20


def test_generation_is_fast(tmp_path):
    spec = S.VideoSpec(pages=[S.PageSpec(t, 4.0) for t in PAGE_TEXTS], style="cut")  # 20 s
    S.write_story_video(tmp_path, "warm", S.VideoSpec(pages=[S.PageSpec("x", 1.0)]))
    start = time.process_time()
    S.write_story_video(tmp_path, "timed", spec)
    assert time.process_time() - start < 2.0  # about 0.3 s on a 2-core dev box


def test_speech_spans_and_repeated_pictures(tmp_path):
    pages = [S.PageSpec("One.", 3.0, speech=(0.0, 2.0)), S.PageSpec("Two.", 3.0, picture=0), S.PageSpec("Three.", 3.0)]
    spec = S.VideoSpec(pages=pages, style="cut", audio=False)
    truth = S.write_story_video(tmp_path, "rep", spec, save_pictures=False)
    p = truth.pages()
    assert (p[0].speech_start, p[0].speech_end) == (0.0, 2.0)
    assert np.array_equal(p[0].picture, p[1].picture) and mad(p[1].picture, p[2].picture) > 20
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("kwargs, message", [
    ({"style": "wipe"}, "style 'wipe'"),
    ({"style": "fade", "pages": [S.PageSpec("x", 0.8)]}, "page 0 lasts 0.8 s"),
    ({"width": 321}, "must be even"),
    ({"pages": [S.PageSpec("x", 2.0, speech=(1.0, 3.0))]}, "speech"),
])
def test_bad_specs_say_what_is_wrong(kwargs, message):
    kwargs.setdefault("pages", [S.PageSpec("x", 2.0)])
    with pytest.raises(ValueError, match=re.escape(message)):
        S.VideoSpec(**kwargs)


def test_auto_caption_vtt(tmp_path, videos):
    truth, _ = videos["cut"]
    path = S.write_auto_caption_vtt(tmp_path / "cut.en.vtt", truth)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\nKind: captions\nLanguage: en\n")
    cues = parse_vtt(text)
    music = [c for c in cues if c[2] == "[Music]"]
    assert music[0][0] == 0.0 and music[0][1] <= truth.segments[0].t_end  # over the intro
    assert "align:start position:0%" in text and re.search(r"<\d\d:\d\d:\d\d\.\d{3}><c> \w+</c>", text)
    snapshots = [c for c in cues if round(c[1] - c[0], 3) == 0.01]
    rolling = [c for c in cues if c not in snapshots and c not in music]
    assert len(snapshots) == len(rolling) >= 5
    spoken = " ".join(re.sub(r"<[^>]+>", "", c[2].split("\n")[1]) for c in rolling).split()
    expected = re.sub(r"[^\w' ]+", "", " ".join(PAGE_TEXTS).lower()).split()
    assert spoken == expected
    for (s0, _, t0), (s1, _, t1) in zip(rolling, rolling[1:]):  # rolling: the old line moves up
        assert s1 > s0 and t1.split("\n")[0] == re.sub(r"<[^>]+>", "", t0.split("\n")[1])


def test_bad_media(tmp_path, videos):
    src = videos["cut"][0].video
    cut = S.write_truncated_mp4(src, tmp_path / "cut.mp4", 0.4)
    assert cut.stat().st_size == int(src.stat().st_size * 0.4)
    with pytest.raises(av.error.FFmpegError):  # moov is at the end: nothing to open
        av.open(str(cut)).close()
    assert S.write_zero_length(tmp_path / "zero.mp4").stat().st_size == 0
    corrupt = S.write_corrupt_mp4(tmp_path / "corrupt.mp4")
    assert corrupt.read_bytes()[4:8] == b"ftyp"
    try:  # FFmpeg either refuses it or finds no stream in it
        with av.open(str(corrupt)) as c:
            assert not c.streams.video
    except av.error.FFmpegError:
        pass
    garbage = S.write_garbage_subtitles(tmp_path / "bad.en.vtt").read_bytes()
    assert b"\x00" in garbage and not garbage.startswith(b"WEBVTT")
    with pytest.raises(UnicodeDecodeError):
        garbage.decode("utf-8")


def test_example_sources(tmp_path):
    import yaml

    path = S.write_example_sources(tmp_path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    entries = doc["sources"]
    assert len(entries) == 4 and doc["defaults"]["language"] == "en"
    styles = set()
    for entry in entries:
        assert entry["license"] == "CC0" and entry["language"] == "en" and entry["kind"] == "video"
        video = path.parent / entry["path"]
        truth = S.load_truth(video.with_suffix(".truth.json"))
        assert video.exists() and truth.subtitles.exists()
        assert 4 <= len(truth.pages()) <= 7 and (truth.spec.width, truth.spec.height) == (320, 180)
        assert all(2.0 <= p.duration_s <= 4.0 for p in truth.spec.pages)
        styles.add((truth.spec.style, truth.spec.line_art, truth.spec.intro, truth.spec.outro))
    assert {s[0] for s in styles} == {"cut", "crossfade", "fade", "kenburns"}
    assert ("cut", True, False, False) in styles and ("fade", False, True, True) in styles
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    start = time.perf_counter()
    assert S.write_example_sources(tmp_path) == path
    assert time.perf_counter() - start < 0.5  # up to date: nothing is rendered again
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == mtimes
