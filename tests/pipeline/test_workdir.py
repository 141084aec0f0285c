"""The work directory owner: the one reuse rule, stage records, markers, and the stage runner."""

from __future__ import annotations

import json
import pickle

import pytest

from pipeline.config import IngestConfig
from pipeline.errors import StageError
from pipeline.records import SourceResult
from pipeline.sources import SourceDefaults, SourceItem
from pipeline.video.fetch import FetchError
from pipeline.workdir import DONE_MARKER, FAILED_MARKER, SourceRun, SourceWork, Stage

ITEM = SourceItem(source_id="src", input="http://x/v.mp4", kind="video", url="http://x/v.mp4")


def _first(cfg: IngestConfig, item) -> dict:
    return {"max_height": cfg.fetch.max_height}


def _second(cfg: IngestConfig, item) -> dict:
    return {"threshold": cfg.keyframes.page_change_threshold}


def _third(cfg: IngestConfig, item) -> dict:
    return {"quality": cfg.shards.jpeg_quality, "title": item.title}


STAGES = (
    Stage("first", 1, _first, outputs=("first.txt", "first-*")),
    Stage("second", 1, _second, outputs=("second",), after=("first",)),
    Stage("third", 1, _third, outputs=("third.txt",), after=("second",)),
)


class Pipeline:
    """Three chained stages writing files, counting how often each one computes."""

    def __init__(self, directory):
        self.directory = directory
        self.computed: list[str] = []

    def run(self, cfg: IngestConfig, item=ITEM) -> tuple[SourceWork, str]:
        work = SourceWork(self.directory, STAGES, cfg, item)
        a = work.run("first", lambda: self._write(work, "first.txt", f"A{cfg.fetch.max_height}"),
                     lambda: (work.dir / "first.txt").read_text())
        b = work.run("second", lambda: self._write(work, "second/out.txt", a + f"B{cfg.keyframes.page_change_threshold}"),
                     lambda: (work.dir / "second" / "out.txt").read_text())
        c = work.run("third", lambda: self._write(work, "third.txt", b + f"C{cfg.shards.jpeg_quality}{item.title}"),
                     lambda: (work.dir / "third.txt").read_text())
        return work, c

    def _write(self, work: SourceWork, name: str, text: str) -> str:
        self.computed.append(name.split("/")[0].split(".")[0])
        path = work.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return text


def cfg(**sections) -> IngestConfig:
    return IngestConfig.from_dict(sections)


def test_each_stage_reuses_only_what_its_own_settings_made(tmp_path):
    pipe = Pipeline(tmp_path / "w")
    work, out = pipe.run(cfg())
    assert out == "A480B3.0C90None" and pipe.computed == ["first", "second", "third"] and work.reused == []
    pipe.computed.clear()

    work, again = pipe.run(cfg())
    assert again == out and pipe.computed == [] and work.reused == ["first", "second", "third"]

    # a setting only the last stage reads: only it recomputes
    work, out = pipe.run(cfg(shards={"jpeg_quality": 70}))
    assert out == "A480B3.0C70None" and pipe.computed == ["third"] and work.reused == ["first", "second"]
    pipe.computed.clear()

    # a setting of the middle stage: it and everything after it recompute, the first is reused
    work, out = pipe.run(cfg(shards={"jpeg_quality": 70}, keyframes={"page_change_threshold": 1000.0}))
    assert out == "A480B1000.0C70None" and pipe.computed == ["second", "third"] and work.reused == ["first"]
    pipe.computed.clear()

    # a source-entry field the last stage reads (the title override)
    titled = SourceItem(**{**ITEM.__dict__, "title": "Fox"})
    work, out = pipe.run(cfg(shards={"jpeg_quality": 70}, keyframes={"page_change_threshold": 1000.0}), titled)
    assert out.endswith("C70Fox") and pipe.computed == ["third"]


def test_recomputed_upstream_output_makes_downstream_recompute_even_with_the_same_key(tmp_path):
    pipe = Pipeline(tmp_path / "w")
    pipe.run(cfg())
    pipe.computed.clear()
    (tmp_path / "w" / "first.txt").unlink()  # its output is gone: recomputed, with a new serial
    work, _ = pipe.run(cfg())
    assert pipe.computed == ["first", "second", "third"] and work.reused == []


def test_a_key_change_clears_the_stage_outputs_first(tmp_path):
    pipe = Pipeline(tmp_path / "w")
    pipe.run(cfg())
    (tmp_path / "w" / "first-leftover.bin").write_text("made with 480p")
    (tmp_path / "w" / "unrelated.txt").write_text("not the stage's")
    seen = {}
    work = SourceWork(tmp_path / "w", STAGES, cfg(fetch={"max_height": 720}), ITEM)
    work.run("first", lambda: seen.setdefault("files", sorted(p.name for p in work.dir.iterdir())), lambda: None)
    assert "first.txt" not in seen["files"] and "first-leftover.bin" not in seen["files"]
    assert "unrelated.txt" in seen["files"] and "second" in seen["files"]  # other stages' outputs stay


def test_a_stage_killed_while_computing_is_computed_again(tmp_path):
    pipe = Pipeline(tmp_path / "w")
    work = SourceWork(tmp_path / "w", STAGES, cfg(), ITEM)

    def crash():
        (work.dir / "first.txt").write_text("half")
        raise KeyboardInterrupt  # a kill, as far as the record is concerned

    with pytest.raises(KeyboardInterrupt):
        work.run("first", crash, lambda: "never")
    assert work.record("first")["status"] == "started" and not work.is_current("first")
    _, out = pipe.run(cfg())
    assert out.startswith("A480") and pipe.computed == ["first", "second", "third"]


def test_an_unreadable_stored_output_is_computed_again(tmp_path):
    pipe = Pipeline(tmp_path / "w")
    pipe.run(cfg())
    pipe.computed.clear()
    work = SourceWork(tmp_path / "w", STAGES, cfg(), ITEM)
    value = work.run("first", lambda: "fresh", lambda: json.loads("{broken"))
    assert value == "fresh" and work.computed == ["first"]


def test_markers_name_the_source_key(tmp_path):
    defaults = SourceDefaults(license_allow=("CC0",))
    work = SourceWork(tmp_path / "w", STAGES, cfg(), ITEM, defaults.policy())
    assert work.finished() is None
    result = SourceResult.for_item(ITEM)
    work.reused = ["first"]
    work.finish(result, permanent=False)
    assert (tmp_path / "w" / DONE_MARKER).is_file()
    assert SourceWork(tmp_path / "w", STAGES, cfg(), ITEM, defaults.policy()).finished() == result
    assert result.reused == ["first"]
    # any change (a stage's setting, the run's config hash, the policy, the entry) re-opens the source
    assert SourceWork(tmp_path / "w", STAGES, cfg(shards={"jpeg_quality": 70}), ITEM, defaults.policy()).finished() is None
    assert SourceWork(tmp_path / "w", STAGES, cfg(run={"decode_workers": 1}), ITEM, defaults.policy()).finished() == result
    assert SourceWork(tmp_path / "w", STAGES, cfg(clean={"edge_window_s": 3.0}), ITEM, defaults.policy()).finished() is None
    assert SourceWork(tmp_path / "w", STAGES, cfg(), ITEM, SourceDefaults().policy()).finished() is None
    titled = SourceItem(**{**ITEM.__dict__, "title": "Fox"})
    assert SourceWork(tmp_path / "w", STAGES, cfg(), titled, defaults.policy()).finished() is None

    failed = SourceResult.for_item(ITEM)
    failed.status, failed.error = "failed", "HTTP 503"
    work.finish(failed, permanent=False)  # transient: no marker, the next run tries again
    assert not (tmp_path / "w" / DONE_MARKER).exists() and not (tmp_path / "w" / FAILED_MARKER).exists()
    work.finish(failed, permanent=True)
    assert (tmp_path / "w" / FAILED_MARKER).is_file() and work.finished().error == "HTTP 503"


def test_stages_must_name_known_upstream_stages(tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        SourceWork(tmp_path, (Stage("a", 1, _first, ("a",), after=("nope",)),), cfg(), ITEM)


def test_step_times_stages_and_turns_stage_errors_into_values(tmp_path):
    run = SourceRun.start(ITEM, SourceWork(tmp_path, STAGES, cfg(), ITEM))
    assert run.step("first", lambda r, x: x * 2, 21) == 42 and run.outputs["first"] == 42
    assert run.step("second", lambda r: (_ for _ in ()).throw(FetchError("video is 40 s long", skipped=True))) is None
    assert (run.result.status, run.result.stage, run.result.error, run.permanent) == (
        "skipped", "second", "video is 40 s long", True)
    calls = []
    assert run.step("third", lambda r: calls.append(1)) is None and calls == []  # an earlier stage failed
    assert set(run.result.timings) == {"first", "second"}
    with pytest.raises(ZeroDivisionError):  # a bug is not a value
        SourceRun.start(ITEM, SourceWork(tmp_path, STAGES, cfg(), ITEM)).step("first", lambda r: 1 / 0)
    transient = SourceRun.start(ITEM, SourceWork(tmp_path / "t", STAGES, cfg(), ITEM))
    transient.step("first", lambda r: (_ for _ in ()).throw(FetchError("HTTP 503", permanent=False)))
    assert transient.result.status == "failed" and not transient.permanent
    transient.finish()
    assert transient.work.finished() is None


def test_stage_errors_keep_their_fields_across_processes():
    error = FetchError("gone", permanent=True, url="http://x")
    error.subtitle_only = True
    back = pickle.loads(pickle.dumps(error))
    assert (type(back), str(back), back.permanent, back.skipped, back.url, back.subtitle_only) == (
        FetchError, "gone", True, False, "http://x", True)
    skip = pickle.loads(pickle.dumps(StageError("not allowed", skipped=True)))
    assert skip.skipped and skip.permanent and skip.status == "skipped"
    assert StageError("x", permanent=False).status == "failed"


def test_a_finished_run_lets_go_of_its_stage_outputs(tmp_path):
    """The orchestrator may keep every task's returned run until the flow ends (Prefect does, for its
    dependency graph): once the marker is written the run must not keep what its stages made."""
    import gc
    import weakref

    class Keyframes(list):  # stands for a stage's output: keyframes, a transcript, a story
        pass

    run = SourceRun.start(ITEM, SourceWork(tmp_path, STAGES, cfg(), ITEM))
    made = weakref.ref(run.step("first", lambda r: Keyframes(range(1000))))
    assert made() is not None
    result = run.finish()
    gc.collect()
    assert made() is None and run.outputs == {}
    assert result.status == "ok" and (tmp_path / DONE_MARKER).is_file()
