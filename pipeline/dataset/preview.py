"""``storyloom preview``: a static HTML browser for a finished dataset (no server needed).

Output (default ``DATASET/preview/``)::

    index.html                  the story index: filters (language, licence, flag, kind, split), paging
    assets/style.css, index.js  shared by every page; no external resources (works offline)
    index/facets.js             story count, page size, every facet value with its story count
    index/rows-00001.js         index rows of stories 1..rows_per_file (sorted by story id), and so on
    index/sets/<facet>-<n>.js   one bitset per facet value: which stories (by position) carry it
    stories/<story_id>.html     one page per story: frames in order, texts, captions, flags, scores,
                                times or pages with a link into the source, prev/next story
    frames/<story_id>/000.jpg   the frame JPEGs copied from the shards as they are (masks as .mask.png)

Why script files and not JSON: browsers refuse ``fetch`` of local files on ``file://``, but they
load ``<script src>`` from the same folder. Every data file calls one registered callback
(``storyloomPreview.rows(n, rows)`` ...), so the index works from a double-click as well as
through ``python -m http.server``.

How filtering scales to 100k stories without loading every row: a story's position in the index
(its ordinal, by story id) is its bit in one bitset per facet value, base64 in a script file of
``N/6`` bytes (17 kB for 100k stories). Choosing filters loads only those bitsets, ANDs them and
lists the matching ordinals; a page of results then loads the row files those ordinals fall in
(each cached once loaded). Row files are small (``rows_per_file``, 25 stories, about 3 kB), apart
from the screen's page size, so that a rare filter whose matches are spread over the whole index
costs at most ``page_size`` small files per screen, while the unfiltered index loads
``facets.js`` and ``page_size / rows_per_file`` row files.

The index rows and facets come from the catalog (a few columns through pyarrow); the story pages
come from the shards themselves, one story at a time (``Dataset.iter_stories``), so memory does not
grow with the media. Every file is written only when its bytes change and holds no timestamp: the
same dataset gives the same preview, byte for byte; files of stories no longer in the dataset are
removed.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dataset.reader import Dataset, open_dataset
from pipeline.output.contract import STORY_ID_RE, Frame, Story

log = logging.getLogger(__name__)

PREVIEW_DIR = "preview"  # default output, inside the dataset directory
NONE_VALUE = "(none)"  # the facet value of a story whose language / licence is null
# index row columns, in the order the page files hold them (index.js reads them by position)
ROW_COLUMNS = ("story_id", "title", "language", "license", "kind", "split", "frames", "flags")
# facets offered as filters: (name, label, row column)
FACETS = (("language", "Language", "language"), ("license", "Licence", "license"), ("flag", "Flag", "flags"),
          ("kind", "Kind", "kind"), ("split", "Split", "split"))
_LINK_SCHEMES = {"http", "https", "file"}  # anything else (javascript:, data:) is shown as text, not linked
_YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}


class PreviewError(Exception):
    """A bad preview setting or a dataset whose catalog and shards disagree; the message says which."""


@dataclass(frozen=True)
class PreviewConfig:
    """Settings of a preview build."""

    page_size: int = 100  # stories per screen of the index
    rows_per_file: int = 25  # stories per index row file (small: a sparse filter loads few bytes per hit)

    def validate(self) -> None:
        for name in ("page_size", "rows_per_file"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000:
                raise PreviewError(f"{name.replace('_', ' ')} must be an integer in 1..10000, got {value!r}")


@dataclass(frozen=True)
class PreviewSummary:
    """What a build wrote."""

    out: Path
    stories: int
    frames: int
    index_pages: int
    written: int  # files whose bytes changed (0 on a rerun over the same dataset)
    removed: int  # stale files of stories no longer in the dataset


@dataclass(frozen=True)
class IndexEntry:
    """One story's row in the index (from the catalog)."""

    story_id: str
    title: str
    language: str
    license: str
    kind: str
    split: str
    frames: int
    flags: tuple[str, ...]

    def row(self) -> list[Any]:
        return [self.story_id, self.title, self.language, self.license, self.kind, self.split, self.frames,
                list(self.flags)]


def build_preview(dataset_dir: str | Path, out_dir: str | Path | None = None,
                  config: PreviewConfig = PreviewConfig(), progress: bool | None = None) -> PreviewSummary:
    """Write the static preview of the dataset at ``dataset_dir`` into ``out_dir`` (default ``DATASET/preview``).

    Raises :class:`~pipeline.dataset.reader.DatasetError` for a directory that is not a dataset and
    :class:`PreviewError` for a bad setting or a catalog that does not match the shards.
    ``progress=None`` shows a progress bar only on a terminal.
    """
    config.validate()
    dataset = open_dataset(dataset_dir)
    out = Path(out_dir) if out_dir is not None else dataset.root / PREVIEW_DIR
    if out.exists() and not out.is_dir():
        raise PreviewError(f"{out}: exists and is not a directory")
    if out.resolve() == dataset.root.resolve():
        raise PreviewError(f"{out}: the preview needs its own directory, not the dataset's root (try {out / PREVIEW_DIR})")

    entries = index_entries(dataset)
    if not entries:
        raise PreviewError(f"{dataset.root}: the catalog lists no stories")
    writer = PreviewWriter(out)
    write_assets(writer, dataset.root.name)
    index_files = write_index(writer, entries, config.page_size, config.rows_per_file)
    frames = _write_stories(writer, dataset, entries, progress)
    removed = _remove_stale(out, {e.story_id for e in entries}, index_files)
    pages = -(-len(entries) // config.page_size)
    log.info("preview: %d stories, %d frames, %d index pages -> %s (%d files written, %d stale removed)",
             len(entries), frames, pages, out, writer.written, removed)
    return PreviewSummary(out=out, stories=len(entries), frames=frames, index_pages=pages,
                          written=writer.written, removed=removed)


# --- the index ---------------------------------------------------------------------------------


def index_entries(dataset: Dataset) -> list[IndexEntry]:
    """One entry per story of the catalog, sorted by story id (columnar: no per-frame Python objects)."""
    table = dataset.catalog(columns=["story_id", "frame", "split", "title", "license", "language",
                                     "source_kind", "flags"])
    # use_threads=False: "first" must mean the first row, so the same catalog gives the same index
    stories = table.group_by("story_id", use_threads=False).aggregate([
        ("frame", "count"), ("title", "first"), ("license", "first"), ("language", "first"),
        ("source_kind", "first"), ("split", "first"),
    ]).sort_by("story_id")
    flat = pa.table({"story_id": pc.take(table["story_id"], pc.list_parent_indices(table["flags"])),
                     "flag": pc.list_flatten(table["flags"])})
    pairs = flat.group_by(["story_id", "flag"], use_threads=False).aggregate([]).to_pydict()
    flags: dict[str, set[str]] = {}
    for story_id, flag in zip(pairs["story_id"], pairs["flag"]):
        flags.setdefault(story_id, set()).add(flag)
    columns = stories.to_pydict()
    return [IndexEntry(story_id=sid, title=title or sid, language=language or NONE_VALUE,
                       license=licence or NONE_VALUE, kind=kind, split=split, frames=count,
                       flags=tuple(sorted(flags.get(sid, ()))))
            for sid, count, title, licence, language, kind, split in zip(
                columns["story_id"], columns["frame_count"], columns["title_first"], columns["license_first"],
                columns["language_first"], columns["source_kind_first"], columns["split_first"])]


def facet_values(entry: IndexEntry, column: str) -> tuple[str, ...]:
    value = getattr(entry, column)
    return tuple(value) if isinstance(value, tuple) else (value,)


def write_assets(writer: PreviewWriter, dataset_name: str) -> None:
    """``index.html`` and the shared CSS and JS."""
    writer.write("assets/style.css", STYLE_CSS)
    writer.write("assets/index.js", INDEX_JS)
    writer.write("index.html", _index_html(dataset_name))


def write_index(writer: PreviewWriter, entries: list[IndexEntry], page_size: int, rows_per_file: int) -> set[str]:
    """Row files, one bitset per facet value and facets.js; returns the files written (relative)."""
    files: set[str] = set()
    for n in range(1, -(-len(entries) // rows_per_file) + 1):
        rows = [e.row() for e in entries[(n - 1) * rows_per_file:n * rows_per_file]]
        name = f"index/rows-{n:05d}.js"
        writer.write(name, f"storyloomPreview.rows({n},{_js(rows)});\n")
        files.add(name)

    facets = []
    for facet, label, column in FACETS:
        members: dict[str, bytearray] = {}
        counts: dict[str, int] = {}
        for ordinal, entry in enumerate(entries):
            for value in facet_values(entry, column):
                bits = members.setdefault(value, bytearray((len(entries) + 7) // 8))
                bits[ordinal >> 3] |= 1 << (ordinal & 7)  # LSB first: index.js reads it the same way
                counts[value] = counts.get(value, 0) + 1
        values = []
        for n, value in enumerate(sorted(members)):
            set_id = f"{facet}-{n}"
            name = f"index/sets/{set_id}.js"
            encoded = base64.b64encode(bytes(members[value])).decode("ascii")
            writer.write(name, f"storyloomPreview.set({_js(set_id)},{_js(encoded)});\n")
            files.add(name)
            values.append({"value": value, "count": counts[value], "set": set_id})
        facets.append({"name": facet, "label": label, "values": values})
    summary = {"stories": len(entries), "page_size": page_size, "rows_per_file": rows_per_file,
               "columns": list(ROW_COLUMNS),
               "facets": facets}
    writer.write("index/facets.js", f"storyloomPreview.facets({_js(summary)});\n")
    files.add("index/facets.js")
    return files


def _js(value: Any) -> str:
    """A JS literal: JSON with ASCII escapes (no charset questions, no U+2028 surprises), fixed order."""
    return json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def _index_html(dataset_name: str) -> str:
    filters = "\n".join(
        f'    <label>{html.escape(label)} <select id="filter-{facet}" data-facet="{facet}">'
        f'<option value="">all</option></select></label>'
        for facet, label, _ in FACETS)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(dataset_name)} · storyloom preview</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/style.css">
</head>
<body>
<header><h1>{html.escape(dataset_name)}</h1><p class="sub">storyloom preview</p></header>
<form id="filters" class="filters" onsubmit="return false">
{filters}
    <button type="button" id="reset">clear filters</button>
</form>
<p><span id="count">loading…</span> · <span id="page-info"></span></p>
<nav class="pager">
  <button type="button" id="first">« first</button>
  <button type="button" id="prev">‹ prev</button>
  <button type="button" id="next">next ›</button>
  <button type="button" id="last">last »</button>
</nav>
<p id="status" class="status" role="status"></p>
<table id="stories" class="stories">
<thead><tr><th>#</th><th>story</th><th>language</th><th>licence</th><th>kind</th><th>split</th><th>frames</th><th>flags</th></tr></thead>
<tbody></tbody>
</table>
<noscript><p>The index needs JavaScript; the story pages are plain HTML under <a href="stories/">stories/</a>.</p></noscript>
<script src="assets/index.js"></script>
</body>
</html>
"""


# --- the story pages ---------------------------------------------------------------------------


def _write_stories(writer: PreviewWriter, dataset: Dataset, entries: list[IndexEntry],
                   progress: bool | None) -> int:
    from tqdm import tqdm

    ordinal = {e.story_id: n for n, e in enumerate(entries)}
    seen = bytearray(len(entries))  # by ordinal: a byte per story, not a set of strings
    frames = 0
    records = tqdm(dataset.iter_stories(), total=len(entries), unit="story", desc="preview",
                   disable=None if progress is None else not progress)
    for record in records:
        story = record.story
        n = ordinal.get(story.story_id)
        if n is None:
            raise PreviewError(f"{record.shard}: story {story.story_id} is not in the catalog "
                               "(catalog.parquet and the shards disagree; rerun the ingest)")
        seen[n] = 1
        frames += len(story.frames)
        prev_id = entries[n - 1].story_id if n > 0 else None
        next_id = entries[n + 1].story_id if n + 1 < len(entries) else None
        kept = set()
        for frame in story.frames:
            for suffix in frame.members:  # the image, and the mask when there is one
                if suffix not in record.media:
                    raise PreviewError(f"{record.shard}: story {story.story_id} has no member {suffix}")
                writer.write(f"frames/{story.story_id}/{suffix}", record.media[suffix])
                kept.add(suffix)
        _remove_other_files(writer.root / "frames" / story.story_id, kept)
        page = story_html(story, record.shard, n + 1, len(entries), prev_id, next_id)
        writer.write(f"stories/{story.story_id}.html", page)
    missing = [e.story_id for e, found in zip(entries, seen) if not found]
    if missing:
        raise PreviewError(f"{len(missing)} story(ies) of the catalog are in no shard: {', '.join(missing[:5])} "
                           "(catalog.parquet and the shards disagree; rerun the ingest)")
    return frames


def story_html(story: Story, shard: str, position: int, total: int, prev_id: str | None,
               next_id: str | None) -> str:
    """The page of one story; every value from the dataset is escaped."""
    e = html.escape
    source = story.source
    title = source.title or story.story_id
    nav = ['<a href="../index.html">index</a>',
           f'<a rel="prev" href="{e(prev_id)}.html">‹ previous</a>' if prev_id else '<span class="off">‹ previous</span>',
           f'<span>story {position} of {total}</span>',
           f'<a rel="next" href="{e(next_id)}.html">next ›</a>' if next_id else '<span class="off">next ›</span>']
    source_link = _anchor(source.url, source.url) if source.url else "—"
    meta = [("story id", e(story.story_id)), ("title", e(title)), ("creator", _text(source.creator)),
            ("kind", e(source.kind)), ("licence", _text(source.license)), ("language", _text(source.language)),
            ("split", _text(story.split)), ("source", source_link),
            ("duration", e(f"{_num(source.duration_s)} s") if source.duration_s is not None else "—"),
            ("frames", str(len(story.frames))), ("shard", e(shard))]
    meta += [(e(key.replace("_", " ")), _text(value)) for key, value in sorted(source.extra.items())]
    meta += [(e(f"pipeline {key.replace('_', ' ')}"), _text(value)) for key, value in sorted(story.pipeline.items())]
    meta_rows = "\n".join(f'<tr><th>{key}</th><td class="meta-{_slug(key)}">{value}</td></tr>' for key, value in meta)
    frames = "\n".join(_frame_html(story, frame) for frame in story.frames)
    return f"""<!doctype html>
<html lang="{e(_lang(source.language))}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · storyloom preview</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="../assets/style.css">
</head>
<body class="story">
<nav class="story-nav">{" ".join(nav)}</nav>
<h1>{e(title)}</h1>
<table class="meta">
{meta_rows}
</table>
<ol class="frames">
{frames}
</ol>
<nav class="story-nav">{" ".join(nav)}</nav>
</body>
</html>
"""


def _frame_html(story: Story, frame: Frame) -> str:
    e = html.escape
    base = f"../frames/{story.story_id}/"
    if frame.t_start is not None:
        span = f"{_num(frame.t_start)}–{_num(frame.t_end)} s" if frame.t_end is not None else f"from {_num(frame.t_start)} s"
    elif frame.page is not None:
        span = f"page {frame.page}"
    else:
        span = ""
    link = source_link(story.source.url, frame.t_start, frame.t_end, frame.page)
    head = [f"#{frame.index}"] + ([_anchor(link, span or "source")] if link else ([e(span)] if span else []))
    scores = " · ".join(f'<span class="score-{e(name)}">{e(name)} {_score(frame.scores.get(name))}</span>'
                        for name in sorted(set(frame.scores) | {"align", "clip"}))
    details = [f'<p class="frame-head">{" · ".join(head)}</p>',
               f'<p class="text">{e(frame.text)}</p>']  # empty text: CSS shows "(no text)"
    if frame.caption:
        details.append(f'<p class="caption">{e(frame.caption)}</p>')
    flags = "".join(f'<span class="flag">{e(flag)}</span>' for flag in frame.flags)
    details.append(f'<p class="flags">{flags}</p>')
    details.append(f'<p class="scores">{scores} · <span class="assignment">assignment {_text(frame.text_assignment)}</span>'
                   + (f' · <a class="mask" href="{base}{e(frame.members[1])}">mask</a>' if frame.has_mask else "")
                   + "</p>")
    image = (f'<img src="{base}{e(frame.image)}" width="{int(frame.width)}" height="{int(frame.height)}" '
             f'alt="frame {frame.index}">')
    return (f'<li class="frame" id="frame-{frame.index:03d}" data-index="{frame.index}">\n{image}\n'
            f'<div class="frame-info">\n' + "\n".join(details) + "\n</div>\n</li>")


def source_link(url: str | None, t_start: float | None, t_end: float | None, page: int | None) -> str | None:
    """The source URL pointing at a frame: YouTube ``t=<s>s``, other media ``#t=start,end``, PDFs ``#page=n``.

    None for a missing URL or a scheme a preview should not link (only http, https and file are).
    """
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in _LINK_SCHEMES:
        return None
    if t_start is not None:
        if parts.hostname in _YOUTUBE_HOSTS:
            # YouTube ignores media fragments; it starts at ?t= whole seconds (floor: start before the page)
            query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "t"]
            query.append(("t", f"{int(t_start)}s"))
            return urlunsplit(parts._replace(query=urlencode(query), fragment=""))
        span = f"t={_num(t_start)}" + (f",{_num(t_end)}" if t_end is not None else "")
        return urlunsplit(parts._replace(fragment=span))  # W3C media fragment, honoured by browsers' players
    if page is not None and parts.path.lower().endswith(".pdf"):
        return urlunsplit(parts._replace(fragment=f"page={int(page)}"))  # PDF open parameter
    return url


def _anchor(url: str | None, label: str) -> str:
    """A link when the URL's scheme is safe to link, else the escaped label as text."""
    e = html.escape
    if not url or urlsplit(url).scheme.lower() not in _LINK_SCHEMES:
        return e(label)
    return f'<a class="source" href="{e(url, quote=True)}" rel="noopener noreferrer">{e(label)}</a>'


def _text(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value, ensure_ascii=False, sort_keys=True))
    return html.escape(str(value))


def _num(value: float | None) -> str:
    """Seconds without float noise: 2.72, 6, 13.24."""
    if value is None:
        return "?"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", html.unescape(text).lower()).strip("-")


def _lang(language: str | None) -> str:
    return language if language and re.fullmatch(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", language) else "und"


# --- writing -----------------------------------------------------------------------------------


class PreviewWriter:
    """Writes files under the preview root only when their bytes change (reruns keep mtimes).

    Each file goes to a temp name and is renamed into place (a browser never reads half a page),
    but without the per-file fsync of :func:`pipeline.storage.atomic_write_bytes`: a preview is
    a million small files at 100k stories, fsync costs milliseconds each, and nothing here is
    the only copy. After a power cut a rerun repairs any file the crash truncated, since it
    compares every file's bytes with what it should hold.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.written = 0
        self._folders: set[Path] = set()

    def write(self, relative: str, data: str | bytes) -> None:
        payload = data.encode("utf-8") if isinstance(data, str) else data
        path = self.root / relative
        try:
            if path.stat().st_size == len(payload) and path.read_bytes() == payload:
                return
        except FileNotFoundError:
            pass
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            temp.write_bytes(payload)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self.written += 1


def _remove_other_files(folder: Path, keep: set[str]) -> None:
    for path in folder.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink()


def _remove_stale(out: Path, story_ids: set[str], index_files: set[str]) -> int:
    """Delete what an earlier build wrote for stories or index pages that are gone; nothing else."""
    removed = 0
    for path in sorted((out / "stories").glob("*.html")):
        if STORY_ID_RE.match(path.stem) and path.stem not in story_ids:
            path.unlink()
            removed += 1
    frames = out / "frames"
    if frames.is_dir():
        for folder in sorted(frames.iterdir()):
            if folder.is_dir() and STORY_ID_RE.match(folder.name) and folder.name not in story_ids:
                removed += sum(1 for p in folder.iterdir() if p.is_file())
                shutil.rmtree(folder)
    for pattern in ("index/rows-*.js", "index/sets/*.js"):
        for path in sorted(out.glob(pattern)):
            if path.relative_to(out).as_posix() not in index_files:
                path.unlink()
                removed += 1
    return removed


# --- assets --------------------------------------------------------------------------------------

STYLE_CSS = """\
body { font: 15px/1.45 system-ui, sans-serif; margin: 1rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
h1 { margin: .3rem 0; font-size: 1.5rem; }
.sub { margin: 0 0 1rem; color: #666; }
a { color: #0645ad; }
.filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; margin-bottom: .5rem; }
.pager button { margin-right: .3rem; }
.status { color: #a00; min-height: 1em; }
table.stories { border-collapse: collapse; width: 100%; }
table.stories th, table.stories td { border-bottom: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
table.stories td.num { text-align: right; }
.flag { display: inline-block; background: #fde8c8; border-radius: .3rem; padding: 0 .35rem; margin: 0 .25rem .15rem 0; font-size: .85em; }
.story-nav { display: flex; gap: 1rem; margin: .5rem 0; }
.story-nav .off { color: #aaa; }
table.meta { border-collapse: collapse; margin-bottom: 1rem; }
table.meta th { text-align: left; padding: .1rem 1rem .1rem 0; color: #555; font-weight: normal; vertical-align: top; }
table.meta td { padding: .1rem 0; word-break: break-all; }
ol.frames { list-style: none; padding: 0; }
li.frame { display: flex; gap: 1rem; align-items: flex-start; border-top: 1px solid #ddd; padding: .75rem 0; }
li.frame img { max-width: 45%; height: auto; background: #eee; }
.frame-info { flex: 1; }
.frame-info p { margin: .2rem 0; }
.frame-head { color: #555; }
.text { font-size: 1.1em; }
.text:empty::before { content: "(no text)"; color: #999; font-style: italic; }
.caption { color: #555; font-style: italic; }
.scores { color: #555; font-size: .9em; }
"""

INDEX_JS = r"""// storyloom preview index: data comes from script files (file:// forbids fetch of local JSON).
(function () {
  "use strict";
  var state = {facets: null, rows: {}, sets: {}, bits: {}, loads: {}, token: 0};
  window.storyloomPreview = {
    facets: function (data) { state.facets = data; },
    rows: function (n, rows) { state.rows[n] = rows; },
    set: function (id, encoded) { state.sets[id] = encoded; }
  };

  function load(src) {  // each data file is loaded once; the promise is shared
    if (!state.loads[src]) {
      state.loads[src] = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = src;
        script.onload = function () { resolve(); };
        script.onerror = function () { reject(new Error("cannot load " + src)); };
        document.head.appendChild(script);
      });
    }
    return state.loads[src];
  }
  function pad(n) { return ("0000" + n).slice(-5); }
  function rowsFile(n) { return "index/rows-" + pad(n) + ".js"; }
  function $(id) { return document.getElementById(id); }

  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var chosen = {};
    state.facets.facets.forEach(function (f) { if (params.get(f.name)) { chosen[f.name] = params.get(f.name); } });
    return {chosen: chosen, page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1)};
  }
  function writeHash(chosen, page) {
    var params = new URLSearchParams();
    Object.keys(chosen).sort().forEach(function (k) { params.set(k, chosen[k]); });
    if (page > 1) { params.set("page", String(page)); }
    var hash = params.toString();
    if (("#" + hash) !== location.hash && !(hash === "" && location.hash === "")) {
      location.hash = hash;  // hashchange renders
    } else {
      render();
    }
  }
  function chosenFromForm() {
    var chosen = {};
    state.facets.facets.forEach(function (f) {
      var value = $("filter-" + f.name).value;
      if (value !== "") { chosen[f.name] = value; }
    });
    return chosen;
  }

  function bitsOf(id) {  // base64 bitset -> bytes; bit i (LSB first) is story i of the index
    if (!state.bits[id]) {
      var raw = atob(state.sets[id]);
      var bytes = new Uint8Array(raw.length);
      for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
      state.bits[id] = bytes;
    }
    return state.bits[id];
  }
  function selection(chosen) {  // null: every story; else the sorted ordinals matching every filter
    var ids = [];
    var missing = false;
    state.facets.facets.forEach(function (f) {
      if (!(f.name in chosen)) { return; }
      var hit = f.values.filter(function (v) { return v.value === chosen[f.name]; })[0];
      if (hit) { ids.push(hit.set); } else { missing = true; }
    });
    if (missing) { return Promise.resolve([]); }
    if (!ids.length) { return Promise.resolve(null); }
    return Promise.all(ids.map(function (id) { return load("index/sets/" + id + ".js"); })).then(function () {
      var acc = bitsOf(ids[0]).slice();
      ids.slice(1).forEach(function (id) {
        var other = bitsOf(id);
        for (var i = 0; i < acc.length; i++) { acc[i] &= other[i]; }
      });
      var out = [];
      for (var b = 0; b < acc.length; b++) {
        if (!acc[b]) { continue; }
        for (var bit = 0; bit < 8; bit++) { if (acc[b] & (1 << bit)) { out.push(b * 8 + bit); } }
      }
      return out;
    });
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function showRows(ordinals) {
    var size = state.facets.rows_per_file;
    var files = {};
    ordinals.forEach(function (o) { files[Math.floor(o / size) + 1] = true; });
    return Promise.all(Object.keys(files).map(function (n) { return load(rowsFile(Number(n))); })).then(function () {
      var body = $("stories").tBodies[0];
      var fresh = document.createElement("tbody");
      ordinals.forEach(function (o) {
        var row = state.rows[Math.floor(o / size) + 1][o % size];
        var tr = document.createElement("tr");
        tr.setAttribute("data-story", row[0]);
        cell(tr, String(o + 1), "num");
        var td = cell(tr, "");
        var a = document.createElement("a");
        a.href = "stories/" + encodeURIComponent(row[0]) + ".html";
        a.textContent = row[1];
        a.title = row[0];
        td.appendChild(a);
        cell(tr, row[2]); cell(tr, row[3]); cell(tr, row[4]); cell(tr, row[5]); cell(tr, String(row[6]), "num");
        var flags = cell(tr, "", "flags");
        row[7].forEach(function (flag) {
          var span = document.createElement("span");
          span.className = "flag";
          span.textContent = flag;
          flags.appendChild(span);
        });
        fresh.appendChild(tr);
      });
      body.parentNode.replaceChild(fresh, body);
    });
  }

  function render() {
    var token = ++state.token;  // a newer render wins over a slower older one
    var wanted = readHash();
    state.facets.facets.forEach(function (f) { $("filter-" + f.name).value = wanted.chosen[f.name] || ""; });
    $("status").textContent = "";
    selection(wanted.chosen).then(function (matches) {
      if (token !== state.token) { return null; }
      var size = state.facets.page_size;
      var total = matches === null ? state.facets.stories : matches.length;
      var pages = Math.max(1, Math.ceil(total / size));
      var page = Math.min(wanted.page, pages);
      var start = (page - 1) * size;
      var ordinals = [];
      for (var i = start; i < Math.min(start + size, total); i++) { ordinals.push(matches === null ? i : matches[i]); }
      $("count").textContent = total + (total === 1 ? " story" : " stories");
      $("page-info").textContent = "page " + page + " of " + pages;
      $("first").disabled = $("prev").disabled = page <= 1;
      $("next").disabled = $("last").disabled = page >= pages;
      state.current = {page: page, pages: pages, chosen: wanted.chosen};
      return showRows(ordinals).then(function () {
        if (token === state.token) { document.body.setAttribute("data-ready", String(token)); }
      });
    }).catch(function (err) {
      $("status").textContent = String(err.message || err);
      console.error(err);
    });
  }

  function go(page) { writeHash(state.current.chosen, page); }
  function init() {
    state.facets.facets.forEach(function (f) {
      var select = $("filter-" + f.name);
      f.values.forEach(function (v) {
        var option = document.createElement("option");
        option.value = v.value;
        option.textContent = v.value + " (" + v.count + ")";
        option.setAttribute("data-count", String(v.count));
        select.appendChild(option);
      });
      select.addEventListener("change", function () { writeHash(chosenFromForm(), 1); });
    });
    $("reset").addEventListener("click", function () { writeHash({}, 1); });
    $("first").addEventListener("click", function () { go(1); });
    $("prev").addEventListener("click", function () { go(state.current.page - 1); });
    $("next").addEventListener("click", function () { go(state.current.page + 1); });
    $("last").addEventListener("click", function () { go(state.current.pages); });
    window.addEventListener("hashchange", render);
    render();
  }
  load("index/facets.js").then(init).catch(function (err) {
    $("count").textContent = "";
    $("status").textContent = String(err.message || err);
    console.error(err);
  });
})();
"""
