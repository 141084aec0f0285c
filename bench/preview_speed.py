"""``storyloom preview`` speed against reading the same shards alone, and the weight of its pages.

Usage: python bench/preview_speed.py [--stories 1000] [--repeat 3] [--index-stories 100000] [--no-browser]

1. A synthetic dataset of --stories stories (3-12 frames each, small JPEGs of varied content,
   mixed languages, licences, flags, videos and books) is written through the real writers
   (finished stories -> ``write_shards`` -> ``write_catalog``), no ingest.
2. In this one process, best of --repeat: reading every shard with its media
   (``Dataset.iter_stories()``), the reference; a full preview build into an empty folder; a
   rebuild over an unchanged preview (nothing to write). The ratios build/read are printed.
3. Page weight: the index as first opened (index.html, CSS, JS, facets.js, the first row file), a
   filtered index page (plus its bitset and the row files its stories fall in) and a median story
   page with its images.
4. The index alone at --index-stories (a synthetic catalog, no shards): build time, file sizes and,
   when playwright and chromium are there, the time to open it and apply filters in headless
   Chromium over file:// and the bytes each step loads.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import ShardConfig
from pipeline.dataset.preview import (
    PreviewConfig,
    PreviewWriter,
    build_preview,
    index_entries,
    write_assets,
    write_index,
)
from pipeline.dataset.reader import Dataset, open_dataset
from pipeline.output.catalog import CATALOG_SCHEMA, write_catalog
from pipeline.output.contract import (
    Frame,
    SourceInfo,
    Story,
    image_member,
    write_finished_story,
)
from pipeline.output.shards import write_shards
from pipeline.storage import OutputLayout

LANGUAGES = ["en", "en", "en", "de", "fr", "es", None]
LICENCES = ["CC-BY", "CC-BY-SA", "CC0", "public-domain", "CC-BY-NC"]
FLAGS = ["no_speech", "no_text_source", "repeated_image", "spread", "cover", "text_over_picture"]
WORDS = ["the", "fox", "looked", "for", "a", "home", "under", "rock", "tree", "hill", "moon", "boat", "star",
         "song", "mia", "kite", "red", "seed"]


def _jpeg(rng: random.Random, width: int, height: int) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        draw.ellipse([x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 120)],
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    out = BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _story(rng: random.Random, n: int) -> tuple[Story, dict[str, bytes]]:
    video = rng.random() < 0.6
    language = rng.choice(LANGUAGES)
    source = SourceInfo(kind="video" if video else "ebook",
                        url=f"https://www.youtube.com/watch?v=v{n:07d}" if video else f"https://example.org/b{n}.pdf",
                        title=" ".join(rng.choice(WORDS) for _ in range(4)).title(), creator="Someone",
                        license=rng.choice(LICENCES), language=language, duration_s=120.0 if video else None)
    frames, media = [], {}
    width, height = (512, 288) if video else (400, 512)
    for i in range(rng.randrange(3, 13)):
        flags = sorted(rng.sample(FLAGS, k=rng.choice([0, 0, 0, 1, 2])))
        frames.append(Frame(index=i, image=image_member(i), width=width, height=height,
                            t_start=10.0 * i if video else None, t_end=10.0 * i + 9.5 if video else None,
                            page=None if video else i + 1,
                            text=" ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 30))).capitalize() + ".",
                            scores={"align": round(rng.random(), 3) if video else None, "clip": None},
                            flags=flags, text_assignment="sentences" if video else None))
        media[image_member(i)] = _jpeg(rng, width, height)
    return Story(story_id=f"bench-{n:06d}", source=source, frames=frames), media


def make_dataset(root: Path, stories: int) -> Path:
    rng = random.Random(11)
    work = root / "finished"
    dirs = []
    for n in range(stories):
        story, media = _story(rng, n)
        folder = work / story.story_id
        write_finished_story(folder, story, media)
        dirs.append(folder)
    layout = OutputLayout(root / "dataset")
    summary = write_shards(dirs, layout, ShardConfig(max_stories_per_shard=100, test_fraction=0.1), "bench", "0")
    write_catalog(summary, layout.catalog)
    shutil.rmtree(work)
    return layout.root


def _best(fn, repeat: int, before=None) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _size(path: Path) -> int:
    return path.stat().st_size


def _kb(n: float) -> str:
    return f"{n / 1024:.1f} kB"


def _first_screen(config: PreviewConfig) -> list[str]:
    files = ["index.html", "assets/style.css", "assets/index.js", "index/facets.js"]
    return files + [f"index/rows-{n:05d}.js" for n in range(1, -(-config.page_size // config.rows_per_file) + 1)]


def page_weight(site: Path, dataset: Path, config: PreviewConfig) -> None:
    entries = index_entries(open_dataset(dataset))
    first = _first_screen(config)
    opened = sum(_size(site / f) for f in first if (site / f).is_file())
    print(f"index as first opened ({len(first)} files): {_kb(opened)}")
    # a filtered view: German stories, first screen of results
    ordinals = [n for n, e in enumerate(entries) if e.language == "de"][:config.page_size]
    row_files = sorted({n // config.rows_per_file + 1 for n in ordinals})
    set_file = next(site.glob("index/sets/language-*.js"))  # every bitset has the same size
    extra = _size(set_file) + sum(_size(site / f"index/rows-{n:05d}.js") for n in row_files)
    print(f"filter language=de ({len(ordinals)} on the first screen): + 1 bitset ({_kb(_size(set_file))}) "
          f"+ {len(row_files)} row file(s) = + {_kb(extra)}")
    rows = sorted(_size(p) for p in site.glob("index/rows-*.js"))
    print(f"row files: {len(rows)} of {config.rows_per_file} stories, median {_kb(statistics.median(rows))}")
    pages = sorted(site.glob("stories/*.html"), key=_size)
    median = pages[len(pages) // 2]
    images = sorted((site / "frames" / median.stem).glob("*.jpg"))
    print(f"median story page {median.name}: html {_kb(_size(median))} + css {_kb(_size(site / 'assets/style.css'))} + "
          f"{len(images)} images {_kb(sum(_size(p) for p in images))}")


def index_at_scale(root: Path, stories: int, config: PreviewConfig, browser: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(5)
    rows = []
    for n in range(stories):
        language, licence = rng.choice(LANGUAGES), rng.choice(LICENCES)
        video = rng.random() < 0.6
        for i in range(rng.randrange(3, 13)):
            rows.append({"story_id": f"s-{n:07d}", "frame": i, "shard": "shards/x.tar", "split": "test" if n % 10 == 0 else "train",
                         "image": f"s-{n:07d}.{i:03d}.jpg", "mask": None, "width": 512, "height": 288,
                         "t_start": None, "t_end": None, "page": None, "text": "t", "caption": None,
                         "score_align": None, "score_clip": None,
                         "flags": sorted(rng.sample(FLAGS, k=rng.choice([0, 0, 0, 0, 0, 0, 1]))),
                         "source_kind": "video" if video else "ebook", "source_url": None,
                         "title": f"Story number {n}", "creator": None, "license": licence, "language": language,
                         "duration_s": None})
    folder = root / f"catalog-{stories}"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA), folder / "catalog.parquet")
    print(f"\nindex alone, {stories} stories ({len(rows)} catalog rows):")
    site = root / f"site-{stories}"
    t0 = time.perf_counter()
    entries = index_entries(Dataset(OutputLayout(folder)))
    t1 = time.perf_counter()
    writer = PreviewWriter(site)
    write_assets(writer, "bench")
    files = write_index(writer, entries, config.page_size, config.rows_per_file)
    t2 = time.perf_counter()
    sets = sorted(_size(p) for p in site.glob("index/sets/*.js"))
    rows_sizes = [_size(p) for p in site.glob("index/rows-*.js")]
    print(f"  catalog -> entries {t1 - t0:.2f} s, writing {len(files)} index files {t2 - t1:.2f} s; "
          f"bitsets {len(sets)} x {_kb(sets[-1])}, row files {len(rows_sizes)} x median "
          f"{_kb(statistics.median(rows_sizes))}, total {_kb(sum(sets) + sum(rows_sizes))}")
    first = sum(_size(site / f) for f in _first_screen(config))
    print(f"  index as first opened: {_kb(first)}")
    if browser:
        _browse(site)


def _browse(site: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("  (playwright missing: no browser timings)")
        return
    executable = shutil.which("chromium")
    if not executable:
        print("  (no chromium: no browser timings)")
        return
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        loaded: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: loaded.append(r.url))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))

        def step(label: str, action) -> None:
            loaded.clear()
            ready = page.evaluate("document.body ? document.body.getAttribute('data-ready') : null")
            t0 = time.perf_counter()
            action()
            page.wait_for_function(f"document.body.getAttribute('data-ready') !== {ready!r}".replace("None", "null"))
            took = time.perf_counter() - t0
            weight = sum(_size(Path(unquote(urlsplit(u).path))) for u in loaded if u.startswith("file://"))
            print(f"  chromium {label}: {took * 1000:.0f} ms, {len(loaded)} files, {_kb(weight)}; "
                  f"{page.locator('#count').text_content()}, {page.locator('#page-info').text_content()}")

        step("open index", lambda: page.goto((site / "index.html").as_uri()))
        step("language=de", lambda: page.select_option("#filter-language", "de"))
        step("+ flag=cover", lambda: page.select_option("#filter-flag", "cover"))
        step("last page", lambda: page.click("#last"))
        step("language=de, flag=cover, opened from a link", lambda: page.goto(
            (site / "index.html").as_uri() + "?again#flag=cover&language=de"))
        step("no filters, last page", lambda: page.goto((site / "index.html").as_uri() + "?again#page=999999"))
        browser.close()
        print(f"  console errors: {len(errors)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--index-stories", type=int, default=100_000, help="0 to skip the index-at-scale part")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="preview-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        dataset = make_dataset(root, args.stories)
        ds = open_dataset(dataset)
        frames = ds.catalog(columns=["frame"]).num_rows
        shard_bytes = sum(_size(p) for p in (dataset / "shards").glob("*.tar"))
        print(f"dataset: {args.stories} stories, {frames} frames, {_kb(shard_bytes)} of shards "
              f"(made in {time.perf_counter() - t0:.1f} s)")

        def read_all() -> int:
            return sum(len(r.media) for r in open_dataset(dataset).iter_stories())

        site = root / "site"
        config = PreviewConfig(page_size=args.page_size)
        read_s, members = _best(read_all, args.repeat)
        build_s, summary = _best(lambda: build_preview(dataset, site, config, progress=False), args.repeat,
                                 before=lambda: shutil.rmtree(site, ignore_errors=True))
        rebuild_s, again = _best(lambda: build_preview(dataset, site, config, progress=False), args.repeat)
        assert again.written == 0 and members == frames
        print(f"read shards alone: {read_s:.2f} s ({args.stories / read_s:.0f} stories/s)")
        print(f"preview build (empty folder): {build_s:.2f} s ({args.stories / build_s:.0f} stories/s, "
              f"{summary.written} files) = {build_s / read_s:.1f}x reading")
        print(f"preview rebuild (unchanged): {rebuild_s:.2f} s = {rebuild_s / read_s:.1f}x reading")
        page_weight(site, dataset, config)
        if args.index_stories:
            index_at_scale(root, args.index_stories, config, not args.no_browser)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
