"""The filmed-book generator: its truth (pages between turns), files, determinism and checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

av = pytest.importorskip("av")

from pipeline.synthetic import (  # noqa: E402
    FilmedRenderer,
    FilmedSpec,
    PageSpec,
    load_filmed_truth,
    write_filmed_video,
)

TEXTS = ["A kite.", "The wind took it.", "A goat found it."]


def spec(**kw) -> FilmedSpec:
    kw.setdefault("pages", [PageSpec(text, 2.0) for text in TEXTS])
    kw.setdefault("width", 192)
    kw.setdefault("height", 108)
    kw.setdefault("seed", 4)
    return FilmedSpec(**kw)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("filmed")
    return write_filmed_video(out, "kite", spec(intro=True, resting_hands=[(1, 0.2, 1.6)]))


def test_pages_lie_between_turns(written):
    truth = written
    fps, turn = truth.spec.fps, truth.spec.turn_s
    assert [s.kind for s in truth.segments] == ["intro", "page", "page", "page"]
    pages = truth.pages()
    assert [p.text for p in pages] == TEXTS
    assert [p.transition_in for p in pages] == ["cut", "turn", "turn"]
    for a, b in zip(pages, pages[1:]):  # a turn belongs to no segment
        assert b.t_start - a.t_end == pytest.approx(turn, abs=1 / fps)
    assert truth.turns() == [(a.t_end, b.t_start) for a, b in zip(pages, pages[1:])]
    for page in pages:
        assert page.t_end - page.t_start == pytest.approx(2.0, abs=1 / fps)
        assert page.t_start < page.speech_start < page.speech_end <= page.t_end
    assert truth.n_frames == round(sum(s.t_end - s.t_start for s in truth.segments) * fps + 2 * turn * fps)


def test_files_and_truth_round_trip(written):
    truth = written
    for key in ("video", "subtitles", "html", "truth"):
        assert truth.files[key].is_file(), key
    data = json.loads(truth.files["truth"].read_text(encoding="utf-8"))
    assert data["style"] == "filmed" and data["generator"]["filmed_version"]
    loaded = load_filmed_truth(truth.files["truth"])
    assert loaded.spec == truth.spec
    assert [(s.kind, s.page, s.t_start, s.t_end, s.text) for s in loaded.segments] == \
        [(s.kind, s.page, s.t_start, s.t_end, s.text) for s in truth.segments]
    for a, b in zip(loaded.pages(), truth.pages()):  # the printed page, flat, as a PNG
        assert np.array_equal(a.picture, b.picture)
    n = truth.n_frames // 2
    assert np.array_equal(loaded.renderer.rgb(n), truth.renderer.rgb(n))
    with av.open(str(truth.video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (192, 108)
        assert sum(1 for _ in container.decode(stream)) == truth.n_frames


def test_frames_are_what_was_drawn_and_reproducible(written):
    truth = written
    again = FilmedRenderer(truth.spec)
    fps = truth.spec.fps
    page = truth.pages()[2]
    n = int((page.t_start + page.t_end) / 2 * fps)
    assert np.array_equal(truth.renderer.rgb(n), again.rgb(n))
    with av.open(str(truth.video)) as container:
        decoded = next(f for i, f in enumerate(container.decode(video=0)) if i == n).to_ndarray(format="rgb24")
    # noise, 4:2:0 chroma and CRF 27 between them; a frame of another page is much further away
    near = float(np.abs(decoded.astype(np.float32) - again.rgb(n).astype(np.float32)).mean())
    other = truth.pages()[0]
    far = float(np.abs(decoded.astype(np.float32) - again.view(truth.segments.index(other), n).astype(np.float32)).mean())
    assert near < 8.0 and far > near + 2.0, (near, far)


def test_a_resting_hand_and_a_turning_leaf_change_the_picture(written):
    truth = written
    r = truth.renderer
    fps = truth.spec.fps
    page = truth.pages()[1]
    index = truth.segments.index(page)
    n = int((page.t_start + 0.9) * fps)  # the hand rests from 0.2 + 0.4 s to 1.6 - 0.4 s

    def diff(a: np.ndarray, b: np.ndarray) -> float:  # at 48x27: sensor noise averages out, a hand does not
        import cv2

        small = [cv2.resize(x, (48, 27), interpolation=cv2.INTER_AREA).astype(np.float32) for x in (a, b)]
        return float(np.abs(small[0] - small[0].mean() - small[1] + small[1].mean()).mean())

    assert diff(r.rgb(n), r.view(index, n)) > 2 * diff(r.rgb(n + int(0.9 * fps)), r.view(index, n + int(0.9 * fps)))
    start, end = truth.turns()[0]
    middle = int((start + end) / 2 * fps)
    assert diff(r.rgb(middle), r.view(index, middle)) > 4


@pytest.mark.parametrize("bad, message", [
    (dict(style="cut"), "style 'filmed'"),
    (dict(turn_s=0.1), "turn_s"),
    (dict(table="glass"), "table"),
    (dict(resting_hands=[(5, 0.0, 1.0)]), "resting hand"),
    (dict(resting_hands=[(0, 1.5, 1.9)]), "resting hand"),
    (dict(pages=[PageSpec("Short.", 0.4, speech=(0.0, 0.3))]), "0.5 s at least"),
    (dict(width=95), "even"),
])
def test_bad_specs_say_why(bad, message):
    with pytest.raises(ValueError, match=message):
        spec(**bad)
