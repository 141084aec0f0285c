"""Shared test fixtures: a real HTTP server on 127.0.0.1 serving a temp directory, a Prefect API,
story datasets and tiny models, and the files of a dataset that must be reproducible."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest

# Before anything imports torchvision (open_clip, transformers, diffusers): see torch_compat.
try:
    from pipeline.models.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
except ImportError:  # the core install has no torch: model tests skip themselves
    pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


def child_processes(command_part: str) -> set[int]:
    """The pids of this process's descendants whose command line contains ``command_part``."""
    import psutil

    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if command_part in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StaticServer:
    """Serves ``root`` over HTTP on loopback; ``url(name)`` gives the address of a file."""

    def __init__(self, root: Path):
        self.root = Path(root)
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, name: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


DATASET_FILES = ("shards", "manifest.json", "manifest-train.json", "manifest-test.json", "catalog.parquet", "card.md",
                 "card")


def dataset_files(out: Path) -> dict[str, bytes]:
    """The bytes of every file of an output directory that must be reproducible (not sources.parquet:
    it holds timings). A path that does not exist (no card plots in an empty dataset) is left out."""
    files = {}
    for name in DATASET_FILES:
        path = out / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path] if path.exists() else []:
            files[str(file.relative_to(out))] = file.read_bytes()
    return files


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = StaticServer(root)
    yield server
    server.close()


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API (SQLite) shared by every flow test of the session."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(get_current_settings().api.url)


@pytest.fixture(scope="session")
def story_dataset(tmp_path_factory, prefect_harness):
    """Story shards made by the real `storyloom ingest` of generated read-aloud videos.

    Three stories (6 pages, 7 pages with intro/outro cards, and a 2-page short story), one story
    per shard, all in the train split. Used by the StoryGen tests (tests/test_model_*.py).
    """
    from flows.cli import main as storyloom
    from pipeline.synthetic import PageSpec, VideoSpec, example_specs, write_story_video

    root = tmp_path_factory.mktemp("story_videos")
    specs = example_specs()
    specs = {"fox-home": specs["fox-home"], "moon-boat": specs["moon-boat"],
             "kite": VideoSpec(pages=[PageSpec("Ann has a red kite.", 2.4), PageSpec("The kite flies away!", 2.4)],
                               seed=7, title="The Kite")}
    for name, spec in specs.items():
        write_story_video(root, name, spec)
    sources = root / "sources.yaml"
    sources.write_text("defaults:\n  license: CC0\nsources:\n"
                       + "".join(f"  - path: {root / name}.mp4\n" for name in specs), encoding="utf-8")
    config = root / "ingest.yaml"
    config.write_text("shards: {max_stories_per_shard: 1, test_fraction: 0.0}\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("story_dataset")
    assert storyloom(["ingest", str(sources), "--out", str(out), "--config", str(config)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A tiny random Stable Diffusion directory (unet, vae, text_encoder, tokenizer, scheduler)."""
    from model.testing import write_random_sd

    return write_random_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op thread for the tiny-model tests: on a shared 2-core machine, two OpenMP threads
    contending with another process are up to 40x slower than one (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mixed_dataset(tmp_path_factory, prefect_harness):
    """A dataset made by the real `storyloom ingest` of generated videos and books, for the dataset tools.

    Videos: "fox-home" (en, CC0), "moon-boat" (de, CC-BY-NC), "kite" (en, CC-BY, no subtitles:
    its frames carry ``no_text_source``). Books: a PDF with text printed inside vector art (a mask), an
    EPUB 3 and a Gutenberg-style HTML zip (public-domain). One source that does not exist (a
    failed row). Two stories per shard; two stories in test, four in train (3 shards). Read-only for the tests: copy it to change it.
    """
    from flows.cli import main as storyloom
    from pipeline.output.shards import split_position
    from pipeline.sources import local_source_id
    from pipeline.synthetic import PageSpec, VideoSpec, example_specs, write_story_video
    from tests.bookgen.epub import write_epub
    from tests.bookgen.html import write_html, zip_folder
    from tests.bookgen.pdf import write_pdf

    root = tmp_path_factory.mktemp("mixed_sources")
    specs = example_specs()
    specs = {
        "fox-home": specs["fox-home"],
        "moon-boat": replace(specs["moon-boat"], language="de", license="CC-BY-NC"),
        "kite": VideoSpec(pages=[PageSpec("Ann has a red kite.", 2.4), PageSpec("The kite flies away!", 2.4)],
                          seed=7, title="The Kite", license="CC-BY"),
    }
    for name, spec in specs.items():
        write_story_video(root, name, spec)
    for vtt in root.glob("kite.*.vtt"):
        vtt.unlink()
    write_pdf(root / "flat.pdf", "flat_vector", seed=3)
    write_epub(root / "tale.epub", "epub3", seed=21)
    gutenberg = write_html(root / "pg" / "book", "gutenberg", seed=23)
    zip_folder(gutenberg.path.parent, root / "pg-h.zip")
    entries = [f"  - path: {name}.mp4\n    license: {spec.license}\n    language: {spec.language}\n"
               for name, spec in specs.items()]
    entries += ["  - path: flat.pdf\n    license: CC-BY\n", "  - path: tale.epub\n    license: CC-BY-SA\n",
                "  - path: pg-h.zip\n    license: public-domain\n", "  - path: missing-book.pdf\n"]
    sources = root / "sources.yaml"
    sources.write_text("sources:\n" + "".join(entries), encoding="utf-8")
    # story ids hash the sources' absolute paths, so the split of each story changes with the temp dir:
    # a test fraction between the 2nd and 3rd story's split positions puts exactly two stories in test
    positions = sorted(split_position(local_source_id(root / name))
                       for name in [f"{n}.mp4" for n in specs] + ["flat.pdf", "tale.epub", "pg-h.zip"])
    config = root / "ingest.yaml"
    config.write_text(f"shards: {{max_stories_per_shard: 2, test_fraction: {(positions[1] + positions[2]) / 2!r}}}\n",
                      encoding="utf-8")
    out = tmp_path_factory.mktemp("mixed_dataset")
    assert storyloom(["ingest", str(sources), "--out", str(out), "--config", str(config)]) == 0
    return out


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on loopback: moto's, behind a proxy that can fail requests
    (tests/s3server.py). While it runs, every S3 client of the process goes to it through the
    environment, as a user's would (dummy credentials, ``AWS_ENDPOINT_URL``); botocore's own
    retries are off (``AWS_MAX_ATTEMPTS=1``) so that injected errors reach storyloom's retry loop."""
    import os

    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from tests.s3server import S3Server

    server = S3Server()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": server.endpoint, "AWS_MAX_ATTEMPTS": "1"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.close()
