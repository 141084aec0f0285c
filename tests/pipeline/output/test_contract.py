"""The shard contract: member names, story ids, and finished stories in a work directory."""

from __future__ import annotations

import pytest

from pipeline.output.contract import (
    MAX_STORY_ID,
    Frame,
    SourceInfo,
    Story,
    image_member,
    make_story_id,
    mask_member,
    member_name,
    read_finished_story,
    write_finished_story,
)
from tests.pipeline.output.test_shards import make_story_dir


def test_member_names():
    assert image_member(7) == "007.jpg" and mask_member(7) == "007.mask.png"
    assert member_name("yt-abc", image_member(0)) == "yt-abc.000.jpg"
    frame = Frame(index=3, image=image_member(3), width=4, height=4, has_mask=True)
    assert frame.members == ["003.jpg", "003.mask.png"]
    assert Frame(index=3, image=image_member(3), width=4, height=4).members == ["003.jpg"]


def test_story_ids_are_safe_keys():
    assert make_story_id("YouTube", "Ab.C d") == "youtube-ab-c-d"
    long = make_story_id("generic", "x" * 200)
    assert len(long) == MAX_STORY_ID
    with pytest.raises(ValueError):
        make_story_id("", "...")
    with pytest.raises(ValueError, match="must match"):
        Story(story_id="has.dot", source=SourceInfo(kind="video"), frames=[])


def test_written_story_reads_back(tmp_path):
    frames = [Frame(index=i, image=image_member(i), width=2, height=2, text=f"t{i}", has_mask=i == 1) for i in range(2)]
    story = Story(story_id="book-x", source=SourceInfo(kind="ebook", title="X"), frames=frames)
    media = {"000.jpg": b"\xff\xd8\xff0", "001.jpg": b"\xff\xd8\xff1", "001.mask.png": b"\x89PNG\r\n\x1a\nm"}
    write_finished_story(tmp_path, story, media)
    back, back_media = read_finished_story(tmp_path)
    assert back.to_json() == story.to_json() and back_media == media
    with pytest.raises(ValueError, match="do not match"):
        write_finished_story(tmp_path, story, {"000.jpg": media["000.jpg"]})


def test_read_finished_story_returns_story_and_media(tmp_path):
    source_dir = make_story_dir(tmp_path, "yt-one", 3, masks=(1,))
    story, media = read_finished_story(source_dir)
    assert story.story_id == "yt-one" and [f.index for f in story.frames] == [0, 1, 2]
    assert sorted(media) == ["000.jpg", "001.jpg", "001.mask.png", "002.jpg"]
    assert media["002.jpg"] == (source_dir / "frames" / "002.jpg").read_bytes()


def test_read_finished_story_rejects_broken_dirs(tmp_path):
    missing = make_story_dir(tmp_path, "yt-missing", 2)
    (missing / "frames" / "001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="frame 1"):
        read_finished_story(missing)
    not_jpeg = make_story_dir(tmp_path, "yt-png", 1)
    (not_jpeg / "frames" / "000.jpg").write_bytes(b"\x89PNG\r\n\x1a\nrest")
    with pytest.raises(ValueError, match="not a JPG"):
        read_finished_story(not_jpeg)
    with pytest.raises(FileNotFoundError, match="story.json"):
        read_finished_story(tmp_path / "nowhere")
