"""Story shards -> training windows: up to k context frames plus a target, as tensors.

The input is the shard contract (``pipeline/docs/contracts.md``): one sample per story,
``{key}.json`` with the frames, ``{key}.{i:03d}.jpg`` per frame and an optional
``{key}.{i:03d}.mask.png`` (255 where the loss must ignore pixels), named through
:mod:`pipeline.output.contract`. Shards are read from any fsspec URL (local paths,
``s3://``, ``gs://``, ``https://``, ...), listed explicitly, by brace pattern, by glob, or from a
storyloom output directory's ``manifest-{split}.json``.

The stream is a chain of small generator stages (webdataset style):

    shard urls -> split by node and worker (or resampled) -> tar members -> stories
      -> shuffle stories -> sliding windows -> shuffle windows -> decode, resize, crop -> tensors

A window for target frame ``i`` holds frames ``i-1, i-2, ... i-k`` as context, nearest first, so
that context slot ``j`` is the frame ``d = j + 1`` steps back. Stories shorter than the window
give windows with fewer context frames, padded and flagged in ``context_valid``. Stage 1 uses
``max_context=0`` (every frame is a target on its own); stage 2 keeps targets with at least one
earlier frame.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from pipeline.output.contract import JSON_MEMBER, image_member, mask_member, member_name

log = logging.getLogger(__name__)

PROMPT_MODES = ("caption_or_text", "text", "caption")


# ----------------------------------------------------------------------------- shard lists


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def expand_shard_urls(patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Brace patterns and globs -> a sorted, de-duplicated list of shard URLs."""
    import braceexpand
    import fsspec

    urls: list[str] = []
    for pattern in patterns:
        for url in braceexpand.braceexpand(pattern):
            if re.search(r"[*?\[]", url):
                fs, path = fsspec.core.url_to_fs(url)
                found = sorted(fs.glob(path))
                if not found:
                    raise FileNotFoundError(f"no shards match {url!r}")
                protocol = url.split("://", 1)[0] + "://" if _is_remote(url) else ""
                urls.extend(protocol + p if protocol and not p.startswith(protocol) else p for p in found)
            else:
                urls.append(url)
    seen: set[str] = set()
    return [u for u in urls if not (u in seen or seen.add(u))]


def manifest_shard_urls(dataset: str, split: str) -> list[str]:
    """Shard URLs of one split, read from ``{dataset}/manifest-{split}.json``."""
    import fsspec

    root = dataset.rstrip("/")
    path = f"{root}/manifest-{split}.json"
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path} not found: is {dataset!r} a storyloom output directory "
                                f"(made by `storyloom ingest`) with a {split!r} split?") from exc
    return [u["url"] if "://" in u["url"] or u["url"].startswith("/") else f"{root}/{u['url']}"
            for u in manifest.get("shardlist", [])]


def resolve_shards(shards: tuple[str, ...], dataset: str | None, split: str) -> list[str]:
    """The shard URLs a config names (explicit shards win over the dataset manifest)."""
    if shards:
        urls = expand_shard_urls(shards)
    elif dataset:
        urls = manifest_shard_urls(dataset, split)
    else:
        raise ValueError("no shards: set data.shards (URLs or patterns) or data.dataset (a storyloom output directory)")
    if not urls:
        raise ValueError(f"no shards found for split {split!r} in {dataset or shards}")
    return urls


def open_url(url: str):
    """A binary stream for a local path or any fsspec URL."""
    if _is_remote(url):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url.removeprefix("file://"), "rb")


# ----------------------------------------------------------------------------- stories


@dataclass(frozen=True)
class FrameBytes:
    """One frame as stored: encoded image, optional encoded mask, and the prompt chosen for it."""

    image: bytes
    mask: bytes | None
    prompt: str
    text: str
    caption: str | None


@dataclass(frozen=True)
class StorySample:
    story_id: str
    frames: tuple[FrameBytes, ...]


def choose_prompt(frame: dict[str, Any], mode: str) -> str:
    """The frame's caption when present, else its narrative text (``caption_or_text``), or one of them."""
    caption = (frame.get("caption") or "").strip()
    text = (frame.get("text") or "").strip()
    if mode == "caption_or_text":
        return caption or text
    if mode == "caption":
        return caption
    if mode == "text":
        return text
    raise ValueError(f"prompt mode must be one of {', '.join(PROMPT_MODES)}, got {mode!r}")


def tar_samples(urls: Iterator[str], handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """Shard URLs -> webdataset samples (one dict of members per story key)."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    def streams():
        for url in urls:
            try:
                yield {"url": url, "stream": open_url(url)}
            except Exception as exc:  # noqa: BLE001 - the handler decides (warn and go on, or raise)
                exc.args = exc.args + (url,)
                if not handler(exc):
                    return

    yield from group_by_keys(tar_file_expander(streams(), handler=handler), handler=handler)


def parse_story(sample: dict[str, Any], prompt_mode: str) -> StorySample:
    """A webdataset sample -> :class:`StorySample`; raises ValueError naming what is missing."""
    key = sample.get("__key__", "?")
    if JSON_MEMBER not in sample:
        raise ValueError(f"story {key} in {sample.get('__url__')} has no .{JSON_MEMBER} member")
    story = json.loads(sample[JSON_MEMBER])
    frames = []
    for frame in story.get("frames", []):
        image_name = frame.get("image") or image_member(frame["index"])
        data = sample.get(image_name)
        if data is None:
            raise ValueError(f"story {key}: frame {frame.get('index')} has no member {member_name(key, image_name)}")
        mask_name = mask_member(frame["index"])
        frames.append(FrameBytes(image=data, mask=sample.get(mask_name), prompt=choose_prompt(frame, prompt_mode),
                                 text=frame.get("text") or "", caption=frame.get("caption")))
    return StorySample(story_id=story.get("story_id", key), frames=tuple(frames))


def iter_stories(urls: list[str], prompt_mode: str = "caption_or_text",
                 handler: Callable[[Exception], bool] | None = None) -> Iterator[StorySample]:
    """Every story of the shards in order (evaluation, sampling): no splitting, no shuffling."""
    import webdataset as wds

    handler = handler or wds.warn_and_continue
    for sample in tar_samples(iter(urls), handler):
        try:
            yield parse_story(sample, prompt_mode)
        except (ValueError, KeyError) as exc:
            if not handler(exc):
                return


def story_windows(stories: Iterator[StorySample], max_context: int, min_context: int) -> Iterator[dict[str, Any]]:
    """Each target frame with up to ``max_context`` earlier frames, nearest first."""
    for story in stories:
        for i in range(min_context, len(story.frames)):
            context = [story.frames[i - d] for d in range(1, min(max_context, i) + 1)]
            yield {"__key__": f"{story.story_id}/{i:03d}", "target": story.frames[i], "context": context}


# ----------------------------------------------------------------------------- pixels


def load_rgb(data: bytes, resolution: int | None = None):
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    if resolution is not None and img.format == "JPEG":
        img.draft("RGB", (resolution, resolution))  # DCT scaling: decodes big JPEGs faster
    return img.convert("RGB")


def resize_crop(img, resolution: int, crop: str, rng: random.Random | None, resample=None):
    """Shorter side to ``resolution``, then a centre (or random) square crop."""
    from PIL import Image

    w, h = img.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    img = img.resize((nw, nh), resample=Image.BICUBIC if resample is None else resample, reducing_gap=3.0)
    if crop == "random" and rng is not None:
        left, top = rng.randint(0, nw - resolution), rng.randint(0, nh - resolution)
    else:
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return img.crop((left, top, left + resolution, top + resolution))


def to_tensor(img) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float in [-1, 1]."""
    import numpy as np

    array = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())  # (H, W, 3)
    return array.permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def frame_tensor(frame: FrameBytes, resolution: int, crop: str, rng: random.Random | None) -> torch.Tensor:
    return to_tensor(resize_crop(load_rgb(frame.image, resolution), resolution, crop, rng))


def target_tensors(frame: FrameBytes, resolution: int, crop: str,
                   rng: random.Random | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The target image (3, H, W) in [-1, 1] and its loss mask (1, H, W), 1 where the loss ignores
    pixels; the mask is resized and cropped exactly like the image."""
    import numpy as np
    from PIL import Image

    img = load_rgb(frame.image, resolution)
    state = rng.getstate() if rng is not None else None
    image = to_tensor(resize_crop(img, resolution, crop, rng))
    if frame.mask is None:
        return image, torch.zeros(1, resolution, resolution)
    mask = Image.open(io.BytesIO(frame.mask)).convert("L")
    if mask.size != img.size:
        mask = mask.resize(img.size, Image.NEAREST)
    if rng is not None:
        rng.setstate(state)  # the same draws give the same crop box
    mask = resize_crop(mask, resolution, crop, rng, resample=Image.NEAREST)
    return image, torch.from_numpy((np.asarray(mask, dtype=np.uint8) >= 128).astype("float32"))[None]


def decode_window(window: dict[str, Any], resolution: int, max_context: int, crop: str = "center",
                  rng: random.Random | None = None) -> dict[str, Any]:
    """A window of encoded frames -> tensors; context padded to ``max_context`` slots."""
    target: FrameBytes = window["target"]
    image, mask = target_tensors(target, resolution, crop, rng)
    context = torch.zeros(max_context, 3, resolution, resolution)
    valid = torch.zeros(max_context, dtype=torch.bool)
    prompts = [""] * max_context
    for j, frame in enumerate(window["context"][:max_context]):
        context[j] = frame_tensor(frame, resolution, crop, rng)
        valid[j] = True
        prompts[j] = frame.prompt
    return {"key": window["__key__"], "image": image, "mask": mask, "prompt": target.prompt,
            "context": context, "context_valid": valid, "context_prompts": prompts}


def collate_windows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of decoded windows; ``context_prompts`` becomes a list per context slot."""
    k = items[0]["context"].shape[0]
    return {
        "key": [it["key"] for it in items],
        "image": torch.stack([it["image"] for it in items]),  # (B, 3, H, W)
        "mask": torch.stack([it["mask"] for it in items]),  # (B, 1, H, W)
        "prompt": [it["prompt"] for it in items],
        "context": torch.stack([it["context"] for it in items]),  # (B, K, 3, H, W)
        "context_valid": torch.stack([it["context_valid"] for it in items]),  # (B, K)
        "context_prompts": [[it["context_prompts"][j] for it in items] for j in range(k)],  # K x B
    }


# ----------------------------------------------------------------------------- the dataset


def _buffer_shuffle(items: Iterator[Any], bufsize: int, rng: random.Random) -> Iterator[Any]:
    if bufsize <= 1:
        yield from items
        return
    buf: list[Any] = []
    for item in items:
        buf.append(item)
        if len(buf) >= bufsize:
            i = rng.randrange(len(buf))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


class StoryWindows(IterableDataset):
    """Decoded training windows from story shards, split by node and worker or resampled.

    ``repeat=True`` (training) loops over epochs forever, reshuffling the shard order each epoch
    with a seed shared by all ranks (so the split by node stays a partition); ``repeat=False``
    (evaluation) reads every shard once. ``shard_mode="auto"`` splits when every rank and worker
    gets at least one shard, else resamples shards with replacement.
    """

    def __init__(self, urls: list[str], *, resolution: int, max_context: int, min_context: int,
                 prompt_mode: str = "caption_or_text", crop: str = "center", story_shuffle: int = 0,
                 window_shuffle: int = 0, shard_mode: str = "auto", repeat: bool = True, seed: int = 0,
                 handler: Callable[[Exception], bool] | None = None):
        super().__init__()
        if not urls:
            raise ValueError("StoryWindows needs at least one shard URL")
        if min_context > max_context:
            raise ValueError(f"min_context {min_context} > max_context {max_context}")
        self.urls = list(urls)
        self.resolution, self.max_context, self.min_context = resolution, max_context, min_context
        self.prompt_mode, self.crop = prompt_mode, crop
        self.story_shuffle, self.window_shuffle = story_shuffle, window_shuffle
        self.repeat, self.seed = repeat, seed
        if shard_mode not in ("auto", "split", "resampled"):
            raise ValueError(f"shard_mode must be auto, split or resampled, got {shard_mode!r}")
        self.requested_mode = shard_mode
        self.handler = handler
        self.epoch = 0

    @staticmethod
    def choose_shard_mode(mode: str, n_shards: int, world_size: int, num_workers: int, repeat: bool) -> str:
        readers = world_size * max(1, num_workers)
        if mode == "auto":
            chosen = "split" if (n_shards >= readers or not repeat) else "resampled"
            return chosen
        if mode == "split" and repeat and n_shards < readers:
            raise ValueError(f"{n_shards} shard(s) cannot be split over {world_size} rank(s) x {max(1, num_workers)} "
                             "worker(s): some would get no data; set data.shard_mode=resampled (or auto), "
                             "fewer data.num_workers, or write smaller shards")
        return mode

    def _worker_urls(self, epoch: int, mode: str) -> Iterator[str]:
        from webdataset.utils import pytorch_worker_info

        rank, world_size, worker, num_workers = pytorch_worker_info()
        if mode == "resampled":
            rng = random.Random(f"{self.seed}/{epoch}/{rank}/{worker}/shards")
            for _ in range(max(1, len(self.urls) // max(1, world_size * num_workers))):
                yield rng.choice(self.urls)
            return
        urls = list(self.urls)
        if self.repeat:  # same order on every rank: the split stays a partition
            random.Random(f"{self.seed}/{epoch}/order").shuffle(urls)
        yield from urls[rank * num_workers + worker::world_size * num_workers]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import webdataset as wds
        from webdataset.utils import pytorch_worker_info

        handler = self.handler or wds.warn_and_continue
        rank, world_size, worker, num_workers = pytorch_worker_info()
        mode = self.choose_shard_mode(self.requested_mode, len(self.urls), world_size, num_workers, self.repeat)
        if rank == 0 and worker == 0:
            log.info("reading %d shard(s) over %d rank(s) x %d worker(s): %s", len(self.urls), world_size,
                     num_workers, mode)
        empty_epochs = 0
        while True:
            epoch = self.epoch
            self.epoch += 1
            rng = random.Random(f"{self.seed}/{epoch}/{rank}/{worker}")
            stories = self._stories(self._worker_urls(epoch, mode), handler)
            if self.story_shuffle and self.repeat:
                stories = _buffer_shuffle(stories, self.story_shuffle, rng)
            windows = story_windows(stories, self.max_context, self.min_context)
            if self.window_shuffle and self.repeat:
                windows = _buffer_shuffle(windows, self.window_shuffle, rng)
            produced = 0
            for window in windows:
                try:
                    item = decode_window(window, self.resolution, self.max_context, self.crop, rng)
                except Exception as exc:  # noqa: BLE001 - a broken image is data, the handler decides
                    exc.args = exc.args + (window["__key__"],)
                    if handler(exc):
                        continue
                    raise
                produced += 1
                yield item
            if not self.repeat:
                return
            empty_epochs = empty_epochs + 1 if produced == 0 else 0
            if empty_epochs >= (3 if mode == "split" else 50):  # never spin on shards that cannot feed this stage
                raise RuntimeError(f"shards {self.urls[:3]}... gave no windows with >= {self.min_context} context "
                                   "frame(s): stories too short for this stage?")

    def _stories(self, urls: Iterator[str], handler) -> Iterator[StorySample]:
        for sample in tar_samples(urls, handler):
            try:
                yield parse_story(sample, self.prompt_mode)
            except (ValueError, KeyError) as exc:
                if not handler(exc):
                    raise


def make_loader(dataset: StoryWindows, batch_size: int, num_workers: int,
                multiprocessing_context: str | None = None) -> DataLoader:
    """A DataLoader over the windows; workers persist across epochs and prefetch ahead."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4, multiprocessing_context=multiprocessing_context)
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_windows,
                      pin_memory=torch.cuda.is_available(), drop_last=True, **kwargs)
