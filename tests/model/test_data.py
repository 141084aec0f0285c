"""Story shards from the real ingest -> training windows (model/data.py)."""

from __future__ import annotations

import io
import itertools
import random

import pytest
import torch

from model.data import (
    FrameBytes,
    StoryWindows,
    choose_prompt,
    collate_windows,
    expand_shard_urls,
    frame_tensor,
    iter_stories,
    make_loader,
    resolve_shards,
    target_tensors,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

RES = 32


@pytest.fixture(scope="module")
def urls(story_dataset):
    return resolve_shards((), str(story_dataset), "train")


@pytest.fixture(scope="module")
def stories(urls):
    return {s.story_id: s for s in iter_stories(urls)}


def windows(urls, **kw):
    options = dict(resolution=RES, max_context=3, min_context=1, repeat=False)
    options.update(kw)
    return list(StoryWindows(urls, **options))


def test_dataset_is_what_ingest_wrote(story_dataset, urls, stories):
    assert len(urls) == 3 and all(u.startswith(str(story_dataset)) for u in urls)
    assert sorted(len(s.frames) for s in stories.values()) == [2, 6, 7]
    assert all(f.prompt == f.text and f.prompt for s in stories.values() for f in s.frames)


def test_windows_hold_nearest_context_first(urls, stories):
    items = windows(urls)
    assert len(items) == sum(len(s.frames) - 1 for s in stories.values())
    for item in items:
        story_id, index = item["key"].rsplit("/", 1)
        i = int(index)
        frames = stories[story_id].frames
        assert item["prompt"] == frames[i].prompt
        n = min(3, i)
        assert item["context_valid"].tolist() == [True] * n + [False] * (3 - n)
        for j in range(n):  # slot j is the frame j + 1 steps back
            assert item["context_prompts"][j] == frames[i - 1 - j].prompt
            assert torch.equal(item["context"][j], frame_tensor(frames[i - 1 - j], RES, "center", None))
        assert torch.equal(item["image"], frame_tensor(frames[i], RES, "center", None))
        assert item["image"].shape == (3, RES, RES) and -1 <= item["image"].min() and item["image"].max() <= 1


def test_short_story_gives_one_padded_window(urls, stories):
    (short,) = [s for s in stories.values() if len(s.frames) == 2]
    items = [w for w in windows(urls) if w["key"].startswith(short.story_id + "/")]
    assert len(items) == 1
    assert items[0]["context_valid"].tolist() == [True, False, False]
    assert items[0]["context"][1:].abs().sum() == 0 and items[0]["context_prompts"][1:] == ["", ""]


def test_stage1_windows_are_single_frames(urls, stories):
    items = windows(urls, max_context=0, min_context=0)
    assert len(items) == sum(len(s.frames) for s in stories.values())
    batch = collate_windows(items[:4])
    assert batch["image"].shape == (4, 3, RES, RES) and batch["context"].shape == (4, 0, 3, RES, RES)


def keys_for(urls, monkeypatch, rank, world, worker=0, workers=1, **kw):
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("WORKER", str(worker))
    monkeypatch.setenv("NUM_WORKERS", str(workers))
    return {w["key"] for w in windows(urls, **kw)}


def test_split_by_node_partitions_the_stories(urls, monkeypatch):
    everything = keys_for(urls, monkeypatch, 0, 1)
    parts = [keys_for(urls, monkeypatch, r, 3) for r in range(3)]
    assert all(parts) and set().union(*parts) == everything
    assert sum(len(p) for p in parts) == len(everything)  # disjoint


def test_split_by_worker_partitions_within_a_node(urls, monkeypatch):
    node0 = keys_for(urls, monkeypatch, 0, 1)
    parts = [keys_for(urls, monkeypatch, 0, 1, worker=w, workers=2) for w in range(2)]
    assert set().union(*parts) == node0 and not parts[0] & parts[1]


def test_training_with_more_readers_than_shards(urls, monkeypatch):
    assert StoryWindows.choose_shard_mode("auto", 3, 2, 1, repeat=True) == "split"
    assert StoryWindows.choose_shard_mode("auto", 3, 2, 2, repeat=True) == "resampled"
    with pytest.raises(ValueError, match="shard_mode=resampled"):
        StoryWindows.choose_shard_mode("split", 3, 2, 2, repeat=True)
    # resampled: every rank still gets windows, forever
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    stream = StoryWindows(urls, resolution=RES, max_context=3, min_context=1, shard_mode="resampled", seed=1)
    got = list(itertools.islice(iter(stream), 40))
    assert len(got) == 40 and len({w["key"].split("/")[0] for w in got}) >= 2


def test_training_order_is_seeded(urls):
    def first(seed):
        ds = StoryWindows(urls, resolution=RES, max_context=3, min_context=1, story_shuffle=3, window_shuffle=8,
                          seed=seed)
        return [w["key"] for w in itertools.islice(iter(ds), 12)]

    assert first(0) == first(0)
    assert first(0) != first(1)


def test_any_fsspec_url(urls):
    import fsspec

    fs = fsspec.filesystem("memory")
    for url in urls:
        with open(url, "rb") as src:
            fs.pipe(f"/storyloom-test/{url.rsplit('/', 1)[1]}", src.read())
    remote = expand_shard_urls(["memory://storyloom-test/train-*.tar"])
    assert len(remote) == 3 and all(u.startswith("memory://") for u in remote)
    assert {w["key"] for w in windows(remote)} == {w["key"] for w in windows(urls)}


def test_a_missing_shard_is_skipped_with_a_warning(urls):
    with pytest.warns(UserWarning):
        items = windows(urls + ["/nonexistent/train-999999.tar"])
    assert len(items) == len(windows(urls))


def test_loader_workers_and_batches(urls):
    ds = StoryWindows(urls, resolution=RES, max_context=3, min_context=1, window_shuffle=4)
    # spawned workers: forked ones would inherit the Prefect test server's threads
    batch = next(iter(make_loader(ds, batch_size=3, num_workers=2, multiprocessing_context="spawn")))
    assert batch["image"].shape == (3, 3, RES, RES) and batch["mask"].shape == (3, 1, RES, RES)
    assert batch["context"].shape == (3, 3, 3, RES, RES) and batch["context_valid"].shape == (3, 3)
    assert len(batch["context_prompts"]) == 3 and all(len(p) == 3 for p in batch["context_prompts"])


def test_prompt_modes():
    frame = {"text": " Pip ran home. ", "caption": "a fox running"}
    assert choose_prompt(frame, "caption_or_text") == "a fox running"
    assert choose_prompt({**frame, "caption": None}, "caption_or_text") == "Pip ran home."
    assert choose_prompt(frame, "text") == "Pip ran home."
    assert choose_prompt({**frame, "caption": None}, "caption") == ""


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_mask_is_cropped_with_its_image():
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    mask = (rng.random((60, 100)) < 0.3).astype(np.uint8) * 255
    mask = np.kron(mask[::6, ::6], np.ones((6, 6), dtype=np.uint8))[:60, :100]  # 6 px blocks survive resizing
    pixels = np.zeros((60, 100, 3), dtype=np.uint8)
    pixels[..., 0] = mask  # red exactly where the loss must ignore pixels
    pixels[..., 2] = 255 - mask
    frame = FrameBytes(image=_png(Image.fromarray(pixels)), mask=_png(Image.fromarray(mask)), prompt="", text="",
                       caption=None)
    for seed in range(5):
        image, m = target_tensors(frame, 30, "random", random.Random(seed))
        red = image[0] > 0
        assert m.shape == (1, 30, 30) and 0 < m.sum() < 900
        assert (red == m[0].bool()).float().mean() > 0.95  # only resampling seams may differ
    _, none = target_tensors(FrameBytes(frame.image, None, "", "", None), 30, "center", None)
    assert none.sum() == 0
