"""``storyloom export --format hf``: a Hugging Face dataset as Parquet shards with a dataset card.

One row per story (:data:`HF_SCHEMA`): the story id, split and source fields, its frames as a
``List(Image())`` (the shard's JPEG bytes unchanged, so they round-trip byte for byte), their
texts and captions, masks (a ``List(Image())``, null for a frame without a mask) and the frames'
metadata as lists. Files: ``data/{split}-{i:05d}-of-{n:05d}.parquet`` (at most about
:data:`MAX_SHARD_BYTES` of media each) whose schema carries the ``datasets`` features (the
``huggingface`` schema metadata), so ``load_dataset("parquet", ...)`` gets ``Image`` features, and
``README.md``, a dataset card whose YAML header names the splits' files, so ``load_dataset(DIR)``
(or the directory pushed to the Hub) works too. ``load_from_disk`` reads only what
``save_to_disk`` wrote (Arrow files and their JSON state), which this export is not:
``load_dataset(DIR).save_to_disk(...)`` makes one.

The native shards themselves do not load with ``load_dataset("webdataset")`` alone: it takes the
first samples' member names as the columns and refuses samples whose names differ, and stories
of different lengths have different members (``{key}.000.jpg`` ... ``{key}.{n}.jpg``). Given the
columns (:func:`webdataset_features`: the story JSON, one image column per frame position, one
per mask position), it reads them, a frame per column rather than a list of frames.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.dataset.export_common import (
    ROW_GROUP_BYTES,
    ExportResult,
    SplitParquetWriter,
    iter_stories_with_progress,
    relative_files,
)
from pipeline.dataset.reader import Dataset, StoryRecord
from pipeline.output.contract import JSON_MEMBER, image_member, mask_member, member_name

log = logging.getLogger(__name__)

MAX_SHARD_BYTES = 500 * 1024 * 1024  # the Hub's advice: Parquet files of a few hundred MB
DATA_DIR = "data"
CARD = "README.md"
LICENSE_FILE = "LICENSE.md"  # the card's license_link: every story's licence and whom to credit
SOURCE_FIELDS = ("source_kind", "source_url", "title", "creator", "license", "language")
_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def _value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


def _list(feature: dict[str, Any]) -> dict[str, Any]:
    # "Sequence" rather than datasets 4's "List": every datasets version reads it (4+ as List)
    return {"feature": feature, "_type": "Sequence"}


_IMAGE = {"_type": "Image"}
_IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # how datasets stores an Image
_STRING = (pa.string(), _value("string"))
_COLUMNS: list[tuple[str, pa.DataType, dict[str, Any]]] = [
    ("story_id", *_STRING),
    ("split", *_STRING),
    *((name, *_STRING) for name in SOURCE_FIELDS),
    ("frames", pa.list_(_IMAGE_STRUCT), _list(_IMAGE)),
    ("texts", pa.list_(pa.string()), _list(_value("string"))),
    ("captions", pa.list_(pa.string()), _list(_value("string"))),
    ("masks", pa.list_(_IMAGE_STRUCT), _list(_IMAGE)),
    ("frame_index", pa.list_(pa.int32()), _list(_value("int32"))),
    ("width", pa.list_(pa.int32()), _list(_value("int32"))),
    ("height", pa.list_(pa.int32()), _list(_value("int32"))),
    ("t_start", pa.list_(pa.float64()), _list(_value("float64"))),
    ("t_end", pa.list_(pa.float64()), _list(_value("float64"))),
    ("page", pa.list_(pa.int32()), _list(_value("int32"))),
    ("score_align", pa.list_(pa.float64()), _list(_value("float64"))),
    ("score_clip", pa.list_(pa.float64()), _list(_value("float64"))),
    ("flags", pa.list_(pa.list_(pa.string())), _list(_list(_value("string")))),
    ("text_assignment", pa.list_(pa.string()), _list(_value("string"))),
    ("story_json", *_STRING),  # the shard's story JSON member: every field, source extras included
]
HF_SCHEMA = pa.schema(
    [pa.field(name, arrow_type) for name, arrow_type, _ in _COLUMNS],
    # what datasets writes into a Parquet schema so that readers get its features (Image, lists)
    metadata={"huggingface": json.dumps({"info": {"features": {name: feature for name, _, feature in _COLUMNS}}},
                                        sort_keys=True, separators=(",", ":"))},
)
"""One row per story; the ``huggingface`` metadata gives ``datasets`` the features (``frames`` and
``masks`` a ``List(Image())``). Written with pyarrow alone: the export does not need ``datasets``."""


def story_row(record: StoryRecord) -> dict[str, Any]:
    """The row of one story, images and masks as ``{"bytes", "path"}`` (path: the shard member name)."""
    story, key = record.story, record.story.story_id
    frames = story.frames
    source = story.source

    def image(suffix: str) -> dict[str, Any]:
        return {"bytes": record.media[suffix], "path": member_name(key, suffix)}

    return {
        "story_id": key,
        "split": story.split,
        "source_kind": source.kind, "source_url": source.url, "title": source.title,
        "creator": source.creator, "license": source.license, "language": source.language,
        "frames": [image(f.image) for f in frames],
        "texts": [f.text for f in frames],
        "captions": [f.caption for f in frames],
        "masks": [image(mask_member(f.index)) if f.has_mask else None for f in frames],
        "frame_index": [f.index for f in frames],
        "width": [f.width for f in frames],
        "height": [f.height for f in frames],
        "t_start": [f.t_start for f in frames],
        "t_end": [f.t_end for f in frames],
        "page": [f.page for f in frames],
        "score_align": [f.scores.get("align") for f in frames],
        "score_clip": [f.scores.get("clip") for f in frames],
        "flags": [list(f.flags) for f in frames],
        "text_assignment": [f.text_assignment for f in frames],
        "story_json": story.to_json(),
    }


def export_hf(dataset: Dataset, out_dir: Path, max_shard_bytes: int = MAX_SHARD_BYTES,
              row_group_bytes: int = ROW_GROUP_BYTES) -> ExportResult:
    """Write ``data/*.parquet`` and ``README.md`` under ``out_dir`` (see the module docstring)."""
    out_dir = Path(out_dir)
    writer = SplitParquetWriter(HF_SCHEMA, lambda split, n: out_dir / DATA_DIR / f"{split}-{n:05d}.partial",
                                row_group_bytes, max_shard_bytes)
    summary: dict[str, Counter] = {}
    stories: list[dict[str, Any]] = []
    try:
        for record in iter_stories_with_progress(dataset, "export hf"):
            row = story_row(record)
            nbytes = sum(len(m["bytes"]) for m in row["frames"] + row["masks"] if m is not None)
            writer.add(row["split"], [row], nbytes)
            counts = summary.setdefault(row["split"], Counter())
            counts["stories"] += 1
            counts["frames"] += len(row["frames"])
            stories.append({name: row[name] for name in ("story_id", "split", *SOURCE_FIELDS)})
    finally:
        files = writer.close()
    for split, paths in files.items():  # the Hub's shard names say how many shards there are
        for n, path in enumerate(paths):
            path.rename(path.with_name(f"{split}-{n:05d}-of-{len(paths):05d}.parquet"))
    (out_dir / CARD).write_text(dataset_card(dataset, stories, summary), encoding="utf-8")
    (out_dir / LICENSE_FILE).write_text(license_file(stories), encoding="utf-8")
    frames = sum(c["frames"] for c in summary.values())
    return ExportResult(len(stories), frames, relative_files(out_dir))


def _yaml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def dataset_card(dataset: Dataset, stories: list[dict[str, Any]], summary: dict[str, Counter]) -> str:
    """``README.md``: the Hub's YAML header (files per split, licence, languages, task) and a short card."""
    splits = sorted(summary, key=lambda split: (split != "train", split))  # train first, as the Hub lists them
    languages = sorted({s["language"] for s in stories if s["language"]})
    licenses = Counter(s["license"] or "unknown" for s in stories)
    size = next((name for limit, name in _SIZE_CATEGORIES if len(stories) < limit), "n>1M")
    header = ["---", "license: other", "license_name: per-story", f"license_link: {LICENSE_FILE}",
              "license_details: " + _yaml_str("Each story carries its own licence (column `license`): "
                                              + ", ".join(f"{name} ({n})" for name, n in sorted(licenses.items())))]
    if languages:
        header += ["language:"] + [f"- {_yaml_str(lang)}" for lang in languages]
    header += ["task_categories:", "- text-to-image", "tags:", "- story-visualization", "- storyloom",
               "size_categories:", f"- {_yaml_str(size)}",
               "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        header += [f"  - split: {_yaml_str(split)}", f"    path: {_yaml_str(f'{DATA_DIR}/{split}-*.parquet')}"]
    header.append("---")
    config = dataset.config()
    counts = "\n".join(f"| {split} | {summary[split]['stories']} | {summary[split]['frames']} |" for split in splits)
    return "\n".join(header) + f"""

# Story dataset (storyloom)

Stories for story visualization: each row is one story, an ordered list of illustrations
(`frames`, images) with the narrative text of each (`texts`), made by storyloom
{config.get('version', '')} (config hash `{config.get('config_hash', '')}`).

| split | stories | frames |
| --- | --- | --- |
{counts}

## Loading

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/directory")          # or the Hub repository it is pushed to
ds = load_dataset("parquet", data_files={{"train": "data/train-*.parquet"}})
story = ds["train"][0]; story["frames"][0]           # a PIL image; story["texts"][0] its text
```

Columns: `story_id`, `split`, `source_kind`, `source_url`, `title`, `creator`, `license`,
`language`; per frame (lists in frame order): `frames` (JPEG images), `texts`, `captions`,
`masks` (PNG, 255 where a training loss should ignore pixels such as burnt-in text; null without
one), `frame_index`, `width`, `height`, `t_start`, `t_end` (seconds, videos), `page` (books),
`score_align`, `score_clip`, `flags`, `text_assignment`; `story_json` is the whole story record.

## Licences

Every story keeps the licence of its source (column `license`); [LICENSE.md](LICENSE.md) lists
each story's licence, title, creator and source, for the credit the licences ask for.
"""


def license_file(stories: list[dict[str, Any]]) -> str:
    """``LICENSE.md``: the licence, title, creator and source of every story."""
    rows = "\n".join(
        f"| {s['story_id']} | {_cell(s['license'])} | {_cell(s['title'])} | {_cell(s['creator'])} | {_cell(s['source_url'])} |"
        for s in sorted(stories, key=lambda s: s["story_id"]))
    return f"""# Licences

The stories of this dataset come from different sources under different licences: each story
keeps its source's licence. Credit the creator and link the source where the licence asks for it
(CC-BY and its variants); respect NC (no commercial use) and SA (share alike) terms.

| story | licence | title | creator | source |
| --- | --- | --- | --- | --- |
{rows}
"""


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def webdataset_features(dataset: Dataset):
    """The columns that let ``load_dataset("webdataset", features=...)`` read the native shards:
    the story JSON (``json``), then an image per frame position (``000.jpg`` ...) and per mask
    position the dataset has (``001.mask.png`` ...); a story without one gets null there."""
    from datasets import Features, Image, Json

    catalog = dataset.catalog(columns=["frame", "mask"]).to_pydict()
    frames = sorted(set(catalog["frame"]))
    masked = {frame for frame, mask in zip(catalog["frame"], catalog["mask"]) if mask}
    columns: dict[str, Any] = {JSON_MEMBER: Json()}
    for index in frames:
        columns[image_member(index)] = Image()
        if index in masked:
            columns[mask_member(index)] = Image()
    return Features(columns)
