"""The ``storyloom`` command line.

    storyloom ingest SOURCES --out DIR|URL [--config FILE]  build a story dataset (Prefect flow; URL: s3://...)
          [--executor dask [--dask-address tcp://HOST:8786]]   ... with its stage tasks on a Dask cluster
    storyloom ingest --from-manifest FILE --out DIR      rebuild a dataset from a shareable manifest
    storyloom examples --out DIR                         write the bundled offline example sources
    storyloom preview OUT [--out DIR]                    a static HTML browser of a dataset
    storyloom export OUT --format F --out DIR            StorySalon folders, HF, Parquet, or a shareable manifest
    storyloom curate IN --out OUT [--where EXPR ...]     a filtered copy of a dataset (IN untouched)
    storyloom train [--config FILE] [--dataset DIR]      train StoryGen on story shards (model/)
    storyloom generate --checkpoint RUN --prompt ...     generate a story frame after frame
    storyloom evaluate --checkpoint RUN --dataset DIR    CLIP-T, CLIP-I and FID on a test split

Config and sources files are validated before any work starts; a mistake there exits with
status 2 and a message saying what is wrong. Problems with individual sources never stop a run:
they end up in ``DIR/sources.parquet``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

from flows.api_server import TemporaryAPI, TemporaryAPIError

log = logging.getLogger("storyloom")


def _prefect_defaults() -> None:
    """Quiet, offline-friendly Prefect settings unless the user set their own."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # For the temporary API server Prefect starts when no PREFECT_API_URL is set (it inherits this
    # environment): record task runs in batches, not one SQLite insert per state change. A run's task
    # runs then appear up to 5 s late; the server writes one last batch when it stops (a backlog of
    # more batches would be lost then, with Prefect's default batch of 1 too; an ingest ends with the
    # dataset task, so there is none: 801 of 801 task runs recorded at 200 sources). This cut the
    # server's CPU in a 200-source run from 66 to 28 CPU-s (bench/scale_ingest.py).
    os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "100")
    # ... and no automations service: it matches every event (three per task run) against the
    # automations in the server's database, and a server that lives for one run has none to act
    # on in time. 3.7 of the server's 23 CPU-s in a 100-source run (bench/scale_ingest.py).
    os.environ.setdefault("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "false")
    # ... and no event history: the event persister writes every event with its related resources
    # (~3.5 CPU-s per 100 sources); flow runs, task runs, their states and logs are still recorded
    # (the task run recorder reads the events as they arrive, not from that table).
    os.environ.setdefault("PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED", "false")


def _ingest(args: argparse.Namespace) -> int:
    if args.from_manifest or not args.sources:
        return _rebuild(args)
    _prefect_defaults()  # before anything reads Prefect's settings
    from pipeline.config import ConfigError, IngestConfig
    from pipeline.video.ffmpeg import FFmpegNotFoundError, find_ffmpeg
    from pipeline.sources import SourcesError, load_sources

    try:
        run_settings = _run_settings(args)
        cfg = IngestConfig.load(args.config).with_run(**run_settings)
        load_sources(args.sources)
        find_ffmpeg(cfg.fetch.ffmpeg)
    except (ConfigError, SourcesError, FFmpegNotFoundError) as exc:
        print(f"storyloom: {exc}", file=sys.stderr)
        return 2
    api = TemporaryAPI.start()  # starts while the checks below, the imports and the flow's set-up run
    try:
        return _run_ingest(args, cfg, run_settings, api)
    finally:
        api.stop()


def _run_ingest(args: argparse.Namespace, cfg, run_settings: dict, api: TemporaryAPI) -> int:
    from pipeline.config import ConfigError
    from pipeline.models.loading import ModelLoadError, load_enabled_models

    from flows.executor import check_executor, task_runner

    try:
        check_executor(cfg)
        load_enabled_models(cfg.models)  # once per process: the flow below finds them loaded
    except (ConfigError, ModelLoadError) as exc:
        print(f"storyloom: {exc}", file=sys.stderr)
        return 2
    try:
        target, options = _output_target(args)
    except (ValueError, OSError) as exc:  # OSError: a local --out that cannot be created
        print(f"storyloom: {exc}", file=sys.stderr)
        return 2

    from flows.ingest import ingest
    from pipeline.objectstore import StorageError

    flow = ingest.with_options(task_runner=task_runner(cfg))
    remote = {"work_dir": str(target.local_root), "storage_options": options} if target.remote else {}
    try:
        with _prefect_api(api):  # Dask workers get its address with the flow's settings: one server for all
            summary = flow(str(Path(args.sources).resolve()), target.url, args.config and str(Path(args.config).resolve()),
                           run_settings=run_settings or None, **remote)
    except StorageError as exc:  # the store kept failing: everything is in the work dir, a rerun finishes
        print(f"storyloom: writing to {target.url} failed: {exc}; rerun the same command to finish", file=sys.stderr)
        return 1
    except TemporaryAPIError as exc:
        print(f"storyloom: {exc}", file=sys.stderr)
        return 1
    for line in book_lines(summary["results"]):
        print(line)
    counts = summary["sources"]
    out = target.url
    published = summary.get("published")
    where = (f"; published: {published['uploaded']} uploaded, {published['unchanged']} unchanged, "
             f"{published['removed']} removed (built in {target.local_root})" if published else "")
    print(
        f"storyloom: {summary['stories']} stories, {summary['frames']} frames in {summary['shards']} shard(s) "
        f"under {out}; sources ok {counts['ok']}, skipped {counts['skipped']}, failed {counts['failed']} "
        f"(details: {out}/sources.parquet, {out}/card.md){where}"
    )
    return 0


@contextlib.contextmanager
def _prefect_api(api: TemporaryAPI) -> Iterator[None]:
    """Run what is inside against ``api``'s temporary server, when the command started one."""
    url = api.url()  # waits for it to answer
    if url is None:
        yield
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield
    finally:
        # what Prefect still has to send (the last logs, the last task runs' events) goes before the
        # server stops, as prefect_test_harness does: afterwards it would retry a missing server for minutes
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)


def _output_target(args: argparse.Namespace):
    """The ingest's :class:`pipeline.objectstore.OutputTarget` and storage options; ValueError
    when the --out cannot be used (a remote one: no bucket, no access), before any work."""
    from pipeline.objectstore import StorageError, parse_storage_options, resolve_output

    options = parse_storage_options(args.storage_option or [])
    target = resolve_output(args.out, args.work_dir, options)
    if not target.remote:
        if options:
            raise ValueError("--storage-option is for a remote --out (an object store URL)")
        target.local_root.mkdir(parents=True, exist_ok=True)
        return target, options
    try:
        target.store(retries=2, backoff_s=0.5).check()  # no bucket or no access: said now, before any work
    except StorageError as exc:
        raise ValueError(f"--out {target.url} cannot be used: {exc}") from exc
    target.local_root.mkdir(parents=True, exist_ok=True)
    return target, options


def _run_settings(args: argparse.Namespace) -> dict:
    """The ``run`` settings given on the command line (--executor, --dask-address, --dask-workers)."""
    from pipeline.config import ConfigError

    settings = {"executor": args.executor, "dask_address": args.dask_address, "dask_workers": args.dask_workers}
    if args.executor is None and (args.dask_address or args.dask_workers is not None):
        settings["executor"] = "dask"  # an address or a worker count only means something on Dask
    if args.executor == "local" and (args.dask_address or args.dask_workers is not None):
        raise ConfigError("--dask-address and --dask-workers need --executor dask, not local")
    return {name: value for name, value in settings.items() if value is not None}


def book_lines(results: list[dict]) -> list[str]:
    """One line per book source: what its pages held, what became frames, what was left out and why."""
    lines = []
    for row in results:
        if row["kind"] != "ebook":
            continue
        name = row.get("title") or row["input"]
        if row["status"] != "ok":
            lines.append(f"book {name}: {row['status']} at {row.get('stage') or '?'}: {row.get('error')}")
            continue
        stats = row.get("stats") or {}
        left_out = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(row["dropped"].items()))
        lines.append(f"book {name}: {stats.get('illustrations', '?')} illustrations found "
                     f"(of {stats.get('pictures', '?')} pictures), {row['frames']} frames, "
                     f"{stats.get('paired', '?')} paired with text; left out: {left_out or 'nothing'}")
    return lines


def _rebuild(args: argparse.Namespace) -> int:
    """``ingest --from-manifest``: fetch every source of a manifest again and remake its frames."""
    from pipeline.config import ConfigError
    from pipeline.dataset.manifest import ManifestError, read_manifest
    from pipeline.dataset.rebuild import manifest_config
    from pipeline.video.ffmpeg import FFmpegNotFoundError, find_ffmpeg

    if not args.from_manifest or args.sources:
        print("storyloom: give either a SOURCES file or --from-manifest FILE", file=sys.stderr)
        return 2
    from pipeline.objectstore import is_store_url

    if is_store_url(args.out) or args.work_dir or args.storage_option:
        print("storyloom: --from-manifest writes to a local --out only (ingest takes object store URLs)", file=sys.stderr)
        return 2
    try:
        cfg = manifest_config(read_manifest(args.from_manifest))  # a bad manifest or config: before any work
        find_ffmpeg(cfg.fetch.ffmpeg)
    except (ManifestError, ConfigError, FFmpegNotFoundError) as exc:
        print(f"storyloom: {exc}", file=sys.stderr)
        return 2
    if args.config:
        print("storyloom: --config is ignored with --from-manifest (the manifest's config made the frames)",
              file=sys.stderr)
    if args.executor or args.dask_address or args.dask_workers is not None:
        print("storyloom: --executor, --dask-address and --dask-workers are ignored with --from-manifest "
              "(a rebuild runs here, on threads and a process pool)", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _prefect_defaults()
    api = TemporaryAPI.start()  # starts while the flow's imports and set-up run
    try:
        from prefect.task_runners import ThreadPoolTaskRunner

        from flows.rebuild import rebuild

        workers = cfg.run.download_workers + cfg.run.decode_workers + 1  # as ingest: chains wait in worker threads
        flow = rebuild.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
        with _prefect_api(api):
            summary = flow(str(Path(args.from_manifest).resolve()), str(out.resolve()))
    except TemporaryAPIError as exc:
        print(f"storyloom: {exc}", file=sys.stderr)
        return 1
    finally:
        api.stop()
    for line in summary["problems"]:
        print(line)
    print(
        f"storyloom: rebuilt {summary['stories_rebuilt']} of {summary['stories_recorded']} stories, "
        f"{summary['frames']} frames in {summary['shards']} shard(s) under {out}: frames identical "
        f"{summary['frames_identical']}, differing {summary['frames_differing']} (kept, flagged rebuild_mismatch), "
        f"missing {summary['frames_missing']} (left out); sources gone {summary['sources_gone']}, "
        f"changed {summary['sources_changed']}, other failures {summary['stories_failed']} "
        f"(details: {out / 'rebuild-report.json'})"
    )
    return 0


def _examples(args: argparse.Namespace) -> int:
    from pipeline.synthetic import write_example_sources

    path = write_example_sources(Path(args.out))
    print(path)
    return 0


EXPORT_FORMATS = ("storysalon", "hf", "parquet", "manifest")  # pipeline.dataset.export.EXPORTERS, without importing it


def _export(args: argparse.Namespace) -> int:
    from pipeline.dataset.export import export_dataset
    from pipeline.dataset.export_common import ExportError
    from pipeline.dataset.reader import DatasetError, open_dataset

    try:
        result = export_dataset(open_dataset(args.dataset), args.format, Path(args.out), overwrite=args.overwrite)
    except (DatasetError, ExportError) as exc:
        print(f"storyloom: {exc}", file=sys.stderr)
        return 2
    print(f"storyloom: exported {result.stories} stories, {result.frames} frames as {args.format} "
          f"to {args.out} ({len(result.files)} files)")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from pipeline.dataset.preview import PreviewConfig, PreviewError, build_preview
    from pipeline.dataset.reader import DatasetError

    try:
        summary = build_preview(args.dataset, args.out, PreviewConfig(page_size=args.page_size))
    except (DatasetError, PreviewError) as exc:
        print(f"storyloom: {exc}", file=sys.stderr)
        return 2
    print(f"storyloom: preview of {summary.stories} stories, {summary.frames} frames "
          f"({summary.index_pages} index pages, {summary.written} files written) -> {summary.out / 'index.html'}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"page size must be a positive integer, got {text!r}")
    return value
def _curate(args: argparse.Namespace) -> int:
    from pipeline.dataset.curate import CurationError, CurationSpec, curate, read_story_ids
    from pipeline.dataset.reader import DatasetError

    try:
        keep = None
        if args.stories or args.story_id:
            keep = tuple(args.story_id) + sum((read_story_ids(f) for f in args.stories), ())
        drop = tuple(args.drop_story_id) + sum((read_story_ids(f) for f in args.drop_stories), ())
        licenses = None if args.license_allow is None else tuple(
            name.strip() for name in args.license_allow.split(",") if name.strip())
        spec = CurationSpec(where=tuple(args.where), license_allow=licenses, keep_story_ids=keep,
                            drop_story_ids=drop, min_frames=args.min_frames, test_fraction=args.test_fraction)
        result = curate(args.input, args.out, spec.validate())
    except (CurationError, DatasetError, OSError) as exc:  # OSError: an --out that cannot be written
        print(f"storyloom: {exc}", file=sys.stderr)
        return 2
    print(result.summary_line())
    return 0


def _add_curate(commands) -> None:
    from pipeline.dataset.conditions import FIELDS

    fields = "\n".join(f"  {name:<12} {spec.level:<6} {spec.help}" for name, spec in FIELDS.items())
    curate = commands.add_parser(
        "curate", help="a new dataset from an existing one: keep/drop stories and frames (IN is not changed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Copy the stories and frames of dataset IN that pass every condition into a new dataset OUT "
                    "(shards, manifests, catalog, sources, card, config.json recording the curation).",
        epilog="conditions (--where, several are ANDed): FIELD OP VALUE\n"
               "  ops: == != < <= > >= (numbers), in [a, b] / not in [a, b], has / lacks (flags),\n"
               "       is null / is not null; values bare or quoted: \"CC BY\"\n"
               "  a comparison on a null value is false (!= and not in too): use `is null` for nulls\n"
               "  story fields drop whole stories, frame fields drop frames (kept frames are renumbered\n"
               "  0..n-1), `frames` counts the frames a story has left after the frame conditions\n"
               f"fields (name, level, meaning):\n{fields}\n"
               "examples:\n"
               "  storyloom curate data --out data-en --where \"language in [en]\" --license-allow CC-BY,CC0\n"
               "  storyloom curate data --out clean --where \"flags lacks repeated_image\" --where \"words >= 3\" "
               "--where \"frames >= 3\"")
    curate.add_argument("input", metavar="IN", help="a dataset directory (the --out of ingest or curate)")
    curate.add_argument("--out", required=True, help="new or empty directory, or an earlier curate output to redo")
    curate.add_argument("--where", action="append", default=[], metavar="EXPR", help="a condition (repeatable)")
    curate.add_argument("--license-allow", metavar="LIST", help="comma-separated licences to keep, e.g. CC-BY,CC0")
    curate.add_argument("--stories", action="append", default=[], metavar="FILE",
                        help="keep only the story ids in FILE (one per line, # comments)")
    curate.add_argument("--story-id", action="append", default=[], metavar="ID", help="keep this story (repeatable)")
    curate.add_argument("--drop-stories", action="append", default=[], metavar="FILE",
                        help="drop the story ids in FILE")
    curate.add_argument("--drop-story-id", action="append", default=[], metavar="ID",
                        help="drop this story (repeatable)")
    curate.add_argument("--min-frames", type=int, default=1, metavar="N",
                        help="drop a story left with fewer frames (default 1)")
    curate.add_argument("--test-fraction", type=float, metavar="F",
                        help="re-split: test share by a stable hash of the story id (default: keep splits)")
    curate.set_defaults(func=_curate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storyloom", description="Build story-visualization datasets and train StoryGen.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="build a story dataset from a sources file")
    ingest.add_argument("sources", nargs="?", help="sources YAML file")
    ingest.add_argument("--out", required=True,
                        help="output directory or object store URL such as s3://bucket/ds (rerun on it to resume)")
    ingest.add_argument("--work-dir", metavar="DIR",
                        help="with a remote --out: the local directory it is built in, work/ included "
                             "(default ~/.cache/storyloom/out/<hash of the URL>)")
    ingest.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                        help="with a remote --out: a filesystem option, e.g. endpoint_url=http://127.0.0.1:9000 "
                             "(repeatable; credentials belong in the environment, e.g. AWS_ACCESS_KEY_ID)")
    ingest.add_argument("--config", help="config YAML file (defaults for everything not given)")
    ingest.add_argument("--from-manifest", metavar="FILE",
                        help="rebuild the dataset a shareable manifest describes (instead of SOURCES)")
    ingest.add_argument("--executor", choices=("local", "dask"),
                        help="where the stage tasks run (run.executor): local threads and processes, or a Dask cluster")
    ingest.add_argument("--dask-address", metavar="ADDR",
                        help="an existing Dask scheduler, e.g. tcp://host:8786 (run.dask_address; implies --executor "
                             "dask); without it a local Dask cluster is started for the run")
    ingest.add_argument("--dask-workers", type=int, metavar="N",
                        help="worker processes of that local cluster (run.dask_workers; default: one per core)")
    ingest.set_defaults(func=_ingest)


    examples = commands.add_parser("examples", help="write the offline example videos and their sources.yaml")
    examples.add_argument("--out", required=True, help="directory for the examples")
    examples.set_defaults(func=_examples)

    export = commands.add_parser(
        "export", help="write a finished dataset in another layout",
        description="Write a finished dataset (the --out of `storyloom ingest`) in another layout: storysalon "
                    "(the folders StoryGen's own dataset.py reads), hf (Hugging Face Parquet shards with a "
                    "dataset card), parquet (one row per frame with its image and mask bytes), manifest.")
    export.add_argument("dataset", help="the dataset directory (the --out of `storyloom ingest`)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the layout to write")
    export.add_argument("--out", required=True, help="directory to write; must be new or empty unless --overwrite")
    export.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")
    export.set_defaults(func=_export)

    preview = commands.add_parser(
        "preview", help="write a static HTML browser of a dataset (no server needed)",
        description="Write a static HTML browser of a finished dataset: an index with filters by language, "
                    "licence, flag, kind and split, and a page per story with its frames, texts, captions, "
                    "flags, scores and source links. Open OUT/preview/index.html in a browser, or serve it with "
                    "`python -m http.server -d OUT/preview`.")
    preview.add_argument("dataset", metavar="OUT", help="the --out directory of `storyloom ingest`")
    preview.add_argument("--out", metavar="DIR", help="where to write the preview (default: OUT/preview)")
    preview.add_argument("--page-size", type=_positive_int, default=100, metavar="N",
                         help="stories per index page (default: 100)")
    preview.set_defaults(func=_preview)
    _add_curate(commands)

    from model.cli import add_commands  # argparse and the config dataclasses only: torch loads later

    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore", "urllib3"):  # one line per Prefect API call otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
