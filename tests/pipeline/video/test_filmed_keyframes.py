"""Keyframes on generated filmed books: one frame per page through camera drift and shake, exposure
flicker, sensor noise, resting hands and page turns; never a frame from a turn; optional rectification."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import KeyframeConfig
from pipeline.synthetic import (
    FilmedSpec,
    PageSpec,
    VideoSpec,
    draw_page,
    write_filmed_video,
    write_story_video,
)
from pipeline.text.align import align_by_time
from pipeline.text.subtitles import parse_subtitles
from pipeline.video.keyframes import BOUNDARY_TURN, detect_keyframes
from pipeline.video.rectify import FLAG_RECTIFIED, rectify_page

TEXTS = [
    "The fox woke up early.",
    "She looked for a new home.",
    "The hill was too windy.",
    "The river was too wet.",
    "Under the old oak she found a den.",
    "It was just right.",
]

BOOKS = {
    # a phone on a tripod: slow drift, flicker, noise; a hand lifts every leaf it turns
    "tripod": dict(intro=True, outro=True, seed=1),
    # handheld: drift and shake, stronger flicker and noise; a hand rests on pages 1 and 2, on page 2
    # for all but its last 0.6 s
    "handheld": dict(drift_px=4.0, shake_px=2.0, flicker=0.06, noise=4.0, seed=2,
                     resting_hands=[(1, 0.4, 2.6), (2, 0.2, 3.0)]),
    # pages 2 and 3 show the same picture: only the turn between them says they are two pages
    "repeat": dict(table="grey", turn_hand=False, seed=3, repeat=True, resting_hands=[(4, 0.3, 2.8)]),
}


def grey(image: np.ndarray, size=(64, 36)) -> np.ndarray:
    import cv2

    small = cv2.resize(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    return (small - small.mean()) / (small.std() + 1e-6) * 40.0  # exposure flicker is not what these tests measure


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(grey(a) - grey(b)).mean())


def book(name: str) -> FilmedSpec:
    kw = dict(BOOKS[name])
    repeat = kw.pop("repeat", False)
    pages = [PageSpec(text, 2.8 + 0.4 * (i % 3), picture=1 if repeat and i == 2 else None) for i, text in enumerate(TEXTS)]
    return FilmedSpec(pages=pages, width=320, height=180, **kw)


@pytest.fixture(scope="module", params=sorted(BOOKS))
def filmed(request, tmp_path_factory):
    truth = write_filmed_video(tmp_path_factory.mktemp(request.param), request.param, book(request.param))
    return request.param, truth, detect_keyframes(truth.video, KeyframeConfig())


def frame_of(truth, t: float) -> int:
    return int(round(t * truth.spec.fps))


def test_one_keyframe_per_segment_in_order_showing_it(filmed):
    name, truth, result = filmed
    segments = truth.segments
    assert len(result.keyframes) == len(segments), [(k.t_start, k.t_end, k.boundary) for k in result.keyframes]
    pictures = [("card", s.kind) if s.kind != "page" else
                ("page", truth.spec.pages[s.page].picture if truth.spec.pages[s.page].picture is not None else s.page)
                for s in segments]
    for i, key in enumerate(result.keyframes):
        # every segment as the camera saw it at that moment (the camera drifts and shakes)
        n = frame_of(truth, key.frame_time)
        distances = [distance(key.image, truth.renderer.view(j, n)) for j in range(len(segments))]
        # closest to its own segment, or one with the same picture ("repeat": those differ by their text only)
        assert pictures[int(np.argmin(distances))] == pictures[i], (name, i, [round(d, 2) for d in distances])
        assert distances[i] < 2.0, (name, i, distances[i])


def test_spans_and_frames_follow_the_truth_never_a_turn(filmed):
    name, truth, result = filmed
    for key, segment in zip(result.keyframes, truth.segments):
        # the span reaches into the turns on either side; the chosen frame lies still inside the page
        assert key.t_start <= segment.t_start + 0.3 and key.t_end >= segment.t_end - 0.3, (name, key, segment)
        assert segment.t_start + 0.1 <= key.frame_time <= segment.t_end - 0.1, (name, key.frame_time, segment)
    for start, end in truth.turns():
        assert not any(start - 0.05 < key.frame_time < end + 0.05 for key in result.keyframes), (name, start, end)


def test_every_page_after_the_first_begins_with_a_turn(filmed):
    name, truth, result = filmed
    for key, segment in zip(result.keyframes, truth.segments):
        if segment.kind == "page" and segment.page > 0:
            assert key.boundary == BOUNDARY_TURN, (name, segment.page, key.boundary)


def test_texts_land_on_their_pages(filmed):
    name, truth, result = filmed
    cues = parse_subtitles(truth.subtitles.read_text(encoding="utf-8"))
    texts = [frame.text for frame in align_by_time(cues, [(k.t_start, k.t_end) for k in result.keyframes])]
    assert texts == [s.text if s.kind == "page" else "" for s in truth.segments], name


def test_the_frame_of_a_page_with_a_resting_hand_shows_no_hand(filmed):
    name, truth, result = filmed
    pages = truth.pages()
    for page, start, end in truth.spec.resting_hands:
        segment = pages[page]
        index = truth.segments.index(segment)
        n_hand = frame_of(truth, segment.t_start + (start + end) / 2)
        hand_off = distance(truth.renderer.rgb(n_hand), truth.renderer.view(index, n_hand))
        key = result.keyframes[index]
        chosen_off = distance(key.image, truth.renderer.view(index, frame_of(truth, key.frame_time)))
        assert chosen_off < 0.5 * hand_off, (name, page, chosen_off, hand_off)


def test_flicker_and_drift_do_not_split_pages(tmp_path):
    pages = [PageSpec("A long first page, read slowly.", 7.0), PageSpec("And a second one.", 7.0)]
    spec = FilmedSpec(pages=pages, width=320, height=180, flicker=0.1, drift_px=8.0, noise=5.0, seed=5)
    truth = write_filmed_video(tmp_path, "flicker", spec)
    result = detect_keyframes(truth.video, KeyframeConfig())
    assert [k.boundary for k in result.keyframes] == ["start", BOUNDARY_TURN]


def test_hands_passing_over_a_page_do_not_split_it(tmp_path):
    # in and straight out again (0.8 s windows: no rest), twice on the first page, once on the second
    pages = [PageSpec("A page with a hand passing over it.", 5.0), PageSpec("The next page.", 4.0)]
    spec = FilmedSpec(pages=pages, width=320, height=180, shake_px=1.5, seed=11,
                      resting_hands=[(0, 1.0, 1.8), (0, 2.5, 3.5), (1, 0.5, 1.4)])
    truth = write_filmed_video(tmp_path, "passing", spec)
    result = detect_keyframes(truth.video, KeyframeConfig())
    assert [k.boundary for k in result.keyframes] == ["start", BOUNDARY_TURN]


@pytest.fixture(scope="module")
def rectified(tmp_path_factory):
    truth = write_filmed_video(tmp_path_factory.mktemp("rectify"), "rectify", book("tripod"))
    return truth, detect_keyframes(truth.video, KeyframeConfig(rectify=True))


def normalised(image: np.ndarray, size=(32, 40)) -> np.ndarray:
    """Grey at the page's shape, exposure and contrast taken out (lamp, vignette and flicker are not the point)."""
    import cv2

    small = cv2.resize(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    return (small - small.mean()) / (small.std() + 1e-6) * 40.0


def test_rectify_gives_the_flat_page(rectified):
    truth, result = rectified
    assert len(result.keyframes) == len(truth.segments)
    pictures = [s.picture for s in truth.pages()]
    height, width = pictures[0].shape[:2]
    for key, segment in zip(result.keyframes, truth.segments):
        if segment.kind != "page":  # a card has no paper quadrilateral: kept as it is, not flagged
            assert FLAG_RECTIFIED not in key.flags and key.image.shape[:2] == (truth.spec.height, truth.spec.width)
            continue
        assert key.flags == [FLAG_RECTIFIED], segment.page
        # the right-hand page alone (its facing page is blank), upright, about the page's shape
        h, w = key.image.shape[:2]
        assert 0.8 * height / width < h / w < 1.25 * height / width, (segment.page, key.image.shape)
        distances = [float(np.abs(normalised(key.image) - normalised(p)).mean()) for p in pictures]
        assert int(np.argmin(distances)) == segment.page, (segment.page, distances)
        # far closer to the printed page than the frame itself is
        frame = truth.renderer.view(truth.segments.index(segment), frame_of(truth, key.frame_time))
        assert distances[segment.page] < 0.5 * float(np.abs(normalised(frame) - normalised(pictures[segment.page])).mean())
    assert result.stats["rectified"] == len(pictures)


def test_rectify_keeps_frames_without_a_page(tmp_path):
    picture = draw_page(4, 2, 320, 180)
    assert rectify_page(picture) is None  # an illustration filling the frame: no paper on a table
    assert rectify_page(np.full((180, 320, 3), 128, np.uint8)) is None
    pages = [PageSpec("One.", 2.5), PageSpec("Two.", 2.5)]
    truth = write_story_video(tmp_path, "slides", VideoSpec(pages=pages, style="cut", seed=6))
    plain = detect_keyframes(truth.video, KeyframeConfig())
    result = detect_keyframes(truth.video, KeyframeConfig(rectify=True))
    assert [k.flags for k in result.keyframes] == [[], []]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(plain.keyframes, result.keyframes))
