"""``storyloom export``: every format read back by what it is for (StoryGen's loader logic, the
``datasets`` library, pyarrow) gives the shards' frames and texts in order; same input, same bytes."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from flows.cli import EXPORT_FORMATS
from flows.cli import main as storyloom
from pipeline.dataset.export import EXPORTERS, export_dataset
from pipeline.dataset.hf import HF_SCHEMA, export_hf, webdataset_features
from pipeline.dataset.reader import open_dataset
from pipeline.output.contract import mask_member


@pytest.fixture(scope="module")
def stories(mixed_dataset):
    """story id -> (Story, media) straight from the shards."""
    return {r.story.story_id: (r.story, r.media) for r in open_dataset(mixed_dataset).iter_stories()}


@pytest.fixture(scope="module")
def exported(mixed_dataset, tmp_path_factory):
    """Each format exported once through the command line: format -> directory."""
    root = tmp_path_factory.mktemp("exports")
    for fmt in ("storysalon", "hf", "parquet"):
        assert storyloom(["export", str(mixed_dataset), "--format", fmt, "--out", str(root / fmt)]) == 0
    return {fmt: root / fmt for fmt in ("storysalon", "hf", "parquet")}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ storysalon

# What StorySalonDataset in StoryGen's dataset.py (the version train_StorySalon_stage2.py imports)
# does, restated: test folders from two lists (each line's last character cut), six book subsets
# listed under Image_inpainted with Mask and Text/Caption beside them, videos from
# image_inpainted_finally_checked, mask and Text/Caption/Video; files of a story sorted by name
# (books) or naturally (videos); images, masks and texts paired by position.
UPSTREAM_BOOK_SUBSETS = ["African", "Bloom", "Book", "Digital", "Literacy", "StoryWeaver"]


def _natural(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_storysalon_like_storygen(root: Path) -> dict[str, dict[str, list[tuple[str, Path, Path, Path]]]]:
    """split -> story folder -> [(frame name, image, mask, caption)] as StoryGen's loader pairs them."""
    test_sets = {name: [line[:-1] for line in (root / name).open().readlines()]
                 for name in ("PDF_test_set.txt", "video_test_set.txt")}
    groups = [(root / "Image_inpainted" / key, root / "Mask" / key, root / "Text" / "Caption" / key,
               test_sets["PDF_test_set.txt"], sorted) for key in UPSTREAM_BOOK_SUBSETS]
    groups.append((root / "image_inpainted_finally_checked", root / "mask", root / "Text" / "Caption" / "Video",
                   test_sets["video_test_set.txt"], lambda names: sorted(names, key=_natural)))
    out: dict[str, dict] = {"train": {}, "test": {}}
    for image_dir, mask_dir, text_dir, test_set, order in groups:
        for folder in sorted(os.listdir(image_dir)):  # raises if a subset folder is missing, as upstream
            images = order(os.listdir(image_dir / folder))
            masks = order(os.listdir(mask_dir / folder))
            texts = order(os.listdir(text_dir / folder))
            assert len(images) == len(masks) == len(texts), folder  # upstream would silently misalign
            out["test" if folder in test_set else "train"][folder] = [
                (Path(i).stem, image_dir / folder / i, mask_dir / folder / m, text_dir / folder / t)
                for i, m, t in zip(images, masks, texts)]
    return out


def test_storysalon_export_reads_back_through_storygens_loader_logic(exported, stories, mixed_dataset):
    root = exported["storysalon"]
    read = read_storysalon_like_storygen(root)
    catalog = open_dataset(mixed_dataset).catalog().to_pylist()
    assert {sid for split in read.values() for sid in split} == {row["story_id"] for row in catalog}
    assert sum(len(frames) for split in read.values() for frames in split.values()) == len(catalog) == 27
    masked = 0
    for split, by_story in read.items():
        for story_id, files in by_story.items():
            story, media = stories[story_id]
            assert story.split == split
            assert [name for name, *_ in files] == [f"{frame.index:03d}" for frame in story.frames]
            for (name, image, mask, caption), frame in zip(files, story.frames):
                assert image.read_bytes() == media[frame.image]  # the shard's JPEG, unchanged
                assert caption.read_text(encoding="utf-8") == (frame.caption or frame.text)
                narrative = root / "Text" / "Narrative" / caption.parent.relative_to(root / "Text" / "Caption") / caption.name
                assert narrative.read_text(encoding="utf-8") == frame.text
                # StoryGen's loss is mse * (1 - mask): white (1.0 after ToTensor) is ignored, as in ours
                pixels = np.asarray(Image.open(mask).convert("RGB"))[..., 0]
                assert pixels.shape == (frame.height, frame.width)
                if frame.has_mask:
                    masked += 1
                    assert mask.read_bytes() == media[mask_member(frame.index)]
                    ours = np.asarray(Image.open(io.BytesIO(media[mask_member(frame.index)])).convert("L"))
                    assert (pixels == 255).any() and np.array_equal(pixels == 255, ours == 255)
                else:
                    assert not pixels.any(), "a frame without a mask ignores nothing"
    assert masked == sum(1 for row in catalog if row["mask"]) >= 1
    # the loader's windows (three references and a target) per split: stories under four frames give none
    windows = {split: sum(max(0, len(files) - 3) for files in by_story.values()) for split, by_story in read.items()}
    assert windows == {split: sum(max(0, len(s.frames) - 3) for s, _ in stories.values() if s.split == split)
                       for split in ("train", "test")}
    assert windows["train"] > 0 and windows["test"] > 0


# ------------------------------------------------------------------------------------ hf


def _check_hf_split(ds_split, stories, split):
    from datasets import Image as HFImage
    from datasets import List

    assert ds_split.features["frames"] == List(HFImage())
    assert ds_split.features["masks"] == List(HFImage())
    expected = sorted(sid for sid, (story, _) in stories.items() if story.split == split)
    assert ds_split["story_id"] == expected
    raw = ds_split.cast_column("frames", List(HFImage(decode=False))).cast_column("masks", List(HFImage(decode=False)))
    for row in raw:
        story, media = stories[row["story_id"]]
        assert [f["bytes"] for f in row["frames"]] == [media[frame.image] for frame in story.frames]
        assert row["texts"] == [frame.text for frame in story.frames]
        assert row["captions"] == [frame.caption for frame in story.frames]
        assert [m and m["bytes"] for m in row["masks"]] == [
            media[mask_member(frame.index)] if frame.has_mask else None for frame in story.frames]
        assert row["frame_index"] == [frame.index for frame in story.frames]
        assert row["story_json"] == story.to_json()
        assert (row["license"], row["source_kind"]) == (story.source.license, story.source.kind)


def test_hf_export_loads_with_datasets_and_round_trips(exported, stories, tmp_path):
    import datasets

    root = exported["hf"]
    assert sorted(_files(root)) == ["LICENSE.md", "README.md", "data/test-00000-of-00001.parquet",
                                    "data/train-00000-of-00001.parquet"]
    card = (root / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"},
                                                 {"split": "test", "path": "data/test-*.parquet"}]
    assert header["language"] == ["de", "en"] and header["license"] == "other"
    assert "CC-BY-NC (1)" in header["license_details"] and "text-to-image" in header["task_categories"]
    licences = (root / header["license_link"]).read_text(encoding="utf-8")
    for story, _ in stories.values():
        assert f"| {story.story_id} | {story.source.license} | {story.source.title} |" in licences

    by_parquet = datasets.load_dataset("parquet", data_files={split: str(root / "data" / f"{split}-*.parquet")
                                                              for split in ("train", "test")},
                                       cache_dir=str(tmp_path / "cache1"))
    by_card = datasets.load_dataset(str(root), cache_dir=str(tmp_path / "cache2"))
    for ds in (by_parquet, by_card):
        assert sorted(ds) == ["test", "train"]
        assert sum(ds.num_rows.values()) == len(stories)
        for split in ("train", "test"):
            _check_hf_split(ds[split], stories, split)
    first = by_card["train"][0]
    story, _ = stories[first["story_id"]]
    assert first["frames"][0].size == (story.frames[0].width, story.frames[0].height)  # decodes to PIL

    # load_from_disk reads save_to_disk output only (documented): the export is one step from it
    with pytest.raises(FileNotFoundError):
        datasets.load_from_disk(str(root))
    by_card.save_to_disk(str(tmp_path / "arrow"))
    _check_hf_split(datasets.load_from_disk(str(tmp_path / "arrow"))["test"], stories, "test")


def test_hf_schema_is_what_datasets_makes_of_its_features(mixed_dataset, tmp_path):
    from datasets import Features, Image, List, Value

    string = Value("string")
    expected = Features({
        "story_id": string, "split": string, "source_kind": string, "source_url": string, "title": string,
        "creator": string, "license": string, "language": string,
        "frames": List(Image()), "texts": List(string), "captions": List(string), "masks": List(Image()),
        "frame_index": List(Value("int32")), "width": List(Value("int32")), "height": List(Value("int32")),
        "t_start": List(Value("float64")), "t_end": List(Value("float64")), "page": List(Value("int32")),
        "score_align": List(Value("float64")), "score_clip": List(Value("float64")),
        "flags": List(List(string)), "text_assignment": List(string), "story_json": string,
    })
    assert Features.from_arrow_schema(HF_SCHEMA) == expected
    assert expected.arrow_schema.remove_metadata() == HF_SCHEMA.remove_metadata()
    # the export itself needs pyarrow only (datasets is a test dependency)
    script = ("import sys; from pipeline.dataset.reader import open_dataset; from pipeline.dataset.hf import export_hf; "
              f"export_hf(open_dataset({str(mixed_dataset)!r}), {str(tmp_path / 'hf')!r}); "
              "assert 'datasets' not in sys.modules, 'datasets was imported'")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[3])


def test_hf_export_in_many_small_shards_names_them_and_loads_whole(mixed_dataset, stories, tmp_path):
    import datasets

    result = export_hf(open_dataset(mixed_dataset), tmp_path / "hf", max_shard_bytes=1, row_group_bytes=1)
    train = sorted(p.name for p in (tmp_path / "hf" / "data").glob("train-*"))
    n_train = sum(1 for story, _ in stories.values() if story.split == "train")
    assert train == [f"train-{i:05d}-of-{n_train:05d}.parquet" for i in range(n_train)]  # a story per shard
    assert result.stories == len(stories) and result.frames == 27
    ds = datasets.load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache"))
    _check_hf_split(ds["train"], stories, "train")


def test_native_shards_load_with_webdataset_only_given_the_columns(mixed_dataset, stories, tmp_path):
    import datasets

    files = {split: str(mixed_dataset / "shards" / f"{split}-*.tar") for split in ("train", "test")}
    # without columns it fails: how depends on the stories in the first shard (members differ: "don't
    # share the same prefix or the same types"; or JSON fields all null there: a cast error later)
    with pytest.raises((ValueError, datasets.exceptions.DatasetGenerationError)):
        datasets.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "c1"))
    features = webdataset_features(open_dataset(mixed_dataset))
    ds = datasets.load_dataset("webdataset", data_files=files, features=features, cache_dir=str(tmp_path / "c2"))
    assert sum(ds.num_rows.values()) == len(stories)
    for row in ds["train"]:
        story, _ = stories[row["json"]["story_id"]]
        present = [name for name in features if name != "json" and row[name] is not None]
        assert present == [suffix for frame in story.frames for suffix in frame.members]
        assert row[story.frames[-1].image].size == (story.frames[-1].width, story.frames[-1].height)


# ------------------------------------------------------------------------------------ parquet


def test_parquet_export_is_the_catalog_plus_the_media(exported, stories, mixed_dataset):
    root = exported["parquet"]
    assert sorted(_files(root)) == ["test.parquet", "train.parquet"]
    catalog = open_dataset(mixed_dataset).catalog().to_pylist()
    for split in ("train", "test"):
        rows = pq.read_table(root / f"{split}.parquet").to_pylist()
        expected = [row for row in catalog if row["split"] == split]
        assert len(rows) == len(expected) > 0
        for row, cat in zip(rows, expected):
            image, mask = row.pop("image"), row.pop("mask")
            row["image"], row["mask"] = row.pop("image_member"), row.pop("mask_member")
            assert row == cat
            story, media = stories[cat["story_id"]]
            frame = story.frames[cat["frame"]]
            assert image == media[frame.image]
            assert mask == (media[mask_member(frame.index)] if frame.has_mask else None)


# ------------------------------------------------------------------------------------ all formats


def test_the_same_dataset_exports_to_the_same_bytes(mixed_dataset, exported, tmp_path):
    dataset = open_dataset(mixed_dataset)
    for fmt, first in exported.items():
        again = export_dataset(dataset, fmt, tmp_path / fmt)
        assert again.files == sorted(_files(first))
        assert _files(tmp_path / fmt) == _files(first), fmt


def test_bad_input_or_out_exits_2_with_the_reason(mixed_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert storyloom(["export", str(tmp_path / "nothing"), "--format", "hf", "--out", str(out)]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert storyloom(["export", str(tmp_path / "empty"), "--format", "parquet", "--out", str(out)]) == 2
    assert "not a storyloom dataset" in capsys.readouterr().err
    assert storyloom(["export", str(mixed_dataset), "--format", "parquet", "--out", str(mixed_dataset)]) == 2
    assert "holds the dataset" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("x")
    assert storyloom(["export", str(mixed_dataset), "--format", "hf", "--out", str(tmp_path / "a-file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert storyloom(["export", str(mixed_dataset), "--format", "hf", "--out", str(tmp_path / "a-file" / "x")]) == 2
    assert "cannot write" in capsys.readouterr().err
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert storyloom(["export", str(mixed_dataset), "--format", "parquet", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".*export*")), "no staging directory is left behind"
    assert storyloom(["export", str(mixed_dataset), "--format", "parquet", "--out", str(out), "--overwrite"]) == 0
    assert sorted(_files(out)) == ["test.parquet", "train.parquet"]
    with pytest.raises(SystemExit) as exit_info:
        storyloom(["export", str(mixed_dataset), "--format", "zip", "--out", str(out)])
    assert exit_info.value.code == 2
    assert set(EXPORT_FORMATS) == set(EXPORTERS)  # the parser's choices are the formats there are


def test_manifest_format_is_dispatched_or_refused_clearly(mixed_dataset, tmp_path, capsys):
    code = storyloom(["export", str(mixed_dataset), "--format", "manifest", "--out", str(tmp_path / "m")])
    if importlib.util.find_spec("pipeline.dataset.manifest") is None:
        assert code == 2
        assert "manifest format is not available" in capsys.readouterr().err
        assert not (tmp_path / "m").exists()
    else:
        assert code == 0 and any((tmp_path / "m").iterdir())


def test_a_failed_export_leaves_the_old_out_untouched(mixed_dataset, tmp_path):
    target = tmp_path / "ds"
    shutil.copytree(mixed_dataset, target, ignore=shutil.ignore_patterns("work"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    broken = next((target / "shards").glob("train-*.tar"))
    broken.write_bytes(broken.read_bytes()[:5000])  # a truncated shard: the reader fails midway
    assert storyloom(["export", str(target), "--format", "hf", "--out", str(out), "--overwrite"]) == 2
    assert sorted(_files(out)) == ["old.txt"]
    assert not list(tmp_path.glob(".*export*"))


def test_storysalon_frame_names_sort_in_frame_order_past_999_frames():
    from pipeline.dataset.storysalon import frame_stems
    from pipeline.output.contract import Frame, SourceInfo, Story

    story = Story("s", SourceInfo(kind="video"), [Frame(i, f"{i:03d}.jpg", 8, 8) for i in (0, 7, 998, 1000, 1203)])
    stems = frame_stems(story)
    assert stems == ["0000", "0007", "0998", "1000", "1203"]
    assert sorted(stems) == stems == sorted(stems, key=int)
