"""Datasets on object stores: an ``--out`` (or a source) given as any fsspec URL (``s3://``,
``gs://``, ...), with the output directory's promises kept there.

**Where the work happens.** The stages keep working on a local directory (decoding needs fast
POSIX files): for a remote ``--out`` that is the *local root* (``--work-dir``, by default
``~/.cache/storyloom/out/<hash of the URL>``), laid out exactly like a local output directory,
``work/`` included. When the dataset is written there, :func:`publish` copies its files (not
``work/``) to the store. ``work/`` stays local: a rerun on the same machine resumes from it; a
rerun elsewhere (an empty local root) computes every source again and then, finding the same
bytes in the store, uploads nothing.

**The store's promises** (:class:`ObjectStore`):

- a file is uploaded only when the object under its name differs (size, then the sha256 stored
  in the object's metadata at upload — ``x-amz-meta-sha256`` on S3 — or, where a store keeps no
  metadata or the object came from elsewhere, the sha256 of its bytes read back): a rerun with
  nothing changed writes no object;
- never a partial object under a final name: on S3, GCS and Azure a single PUT (or a completed
  multipart upload) is atomic per object, so uploads go straight to the final key; on other
  filesystems to a temporary key first, then moved;
- order: shards, plots, catalog, sources table, card, config, then the manifests (the index is
  written after what it names), and only then are the shards and plots that the new manifests no
  longer name deleted;
- every store call is retried with exponential backoff (:func:`pipeline.network.retry`) while the
  store answers with a transient error (HTTP 5xx, throttling, a dropped connection); a permanent
  one (access denied, no such bucket), or a transient one that outlasts the retries, raises
  :class:`StorageError`. Publishing again after such an error finishes the job.

Credentials and the endpoint come from the environment as the store's own client reads them
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``~/.aws/config``,
``GOOGLE_APPLICATION_CREDENTIALS``...) or from ``storage_options`` (the filesystem's keyword
arguments, e.g. ``{"endpoint_url": ...}``, ``--storage-option endpoint_url=...``).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import unquote, urlparse

from pipeline.errors import StageError
from pipeline.network import retry
from pipeline.storage import OutputLayout, file_sha256

log = logging.getLogger(__name__)
T = TypeVar("T")

SHA256_METADATA = "sha256"  # the user metadata key holding an uploaded object's sha256
_URL_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# stores where one upload is atomic per object: the final key is written directly
_ATOMIC_UPLOAD = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})
_METADATA_PROTOCOLS = frozenset({"s3", "s3a"})  # s3fs: put_file(Metadata=...), fs.metadata(path)
_READ_ONLY = frozenset({"http", "https"})
_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})  # the first path part is a bucket
_MANIFEST_RE = re.compile(r"^manifest(-[a-z]+)?\.json$")
_OWNED_STALE = (re.compile(r"^shards/(train|test)-\d{6}\.tar$"), re.compile(r"^card/[a-z_]+\.png$"))
_TOP_FILES = frozenset({"catalog.parquet", "sources.parquet", "card.md", "config.json"})
_TEMP_RE = re.compile(r"(^|/)\.[^/]+\.[0-9a-f]{32}\.tmp$")
_CHUNK = 1 << 20


class StorageError(Exception):
    """The store refused (access denied, no such bucket) or kept failing: the message says which."""


def url_scheme(text: str) -> str | None:
    """The scheme of ``scheme://...`` (lower case), None for a plain path."""
    match = _URL_RE.match(text)
    return match.group(1).lower() if match else None


def is_store_url(text: str) -> bool:
    """True for an fsspec URL that is not a local file (``s3://``, ``gs://``, ``memory://``...)."""
    scheme = url_scheme(text)
    return scheme is not None and scheme != "file"


def local_path(text: str) -> Path:
    """A plain path or a ``file://`` URL as a local path."""
    if url_scheme(text) == "file":
        return Path(unquote(urlparse(text).path))
    return Path(text).expanduser()


def _url_cache(kind: str, url: str) -> Path:
    """``~/.cache/storyloom/{kind}/<hash of the URL>`` (``XDG_CACHE_HOME`` honoured): one folder per URL."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "storyloom" / kind / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def default_work_dir(url: str) -> Path:
    """Where a remote ``--out`` is built when no ``--work-dir`` is given: one folder per URL."""
    return _url_cache("out", url)


@dataclass(frozen=True)
class OutputTarget:
    """Where a dataset goes: the local root the stages write to and, for a remote ``--out``, the URL
    its files are published to. ``name`` is what the card is titled (the last part of the URL)."""

    url: str  # the --out as given (a local one resolved to an absolute path), no trailing slash
    local_root: Path
    name: str
    remote: bool
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False)

    def store(self, **kwargs: Any) -> "ObjectStore":
        if not self.remote:
            raise ValueError(f"{self.url} is a local directory, not a store")
        return ObjectStore(self.url, self.storage_options, **kwargs)


def resolve_output(out: str, work_dir: str | Path | None = None,
                   storage_options: dict[str, Any] | None = None) -> OutputTarget:
    """The :class:`OutputTarget` of an ``--out`` (path, ``file://`` or store URL); ValueError when
    it cannot be an output (a read-only scheme, an unknown protocol, a work dir for a local out)."""
    out = out.strip()
    if not is_store_url(out):
        if work_dir is not None:
            raise ValueError("--work-dir is for a remote --out (an object store URL); a local --out keeps work/ inside it")
        root = local_path(out).resolve()  # as the command line always resolved a local --out
        return OutputTarget(str(root), root, root.name, False)
    scheme = url_scheme(out) or ""
    if scheme in _READ_ONLY:
        raise ValueError(f"--out {out}: {scheme} URLs cannot be written; use a directory or an object store URL (s3://, gs://...)")
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"--out {out}: no filesystem for {scheme}:// ({exc}); for s3:// install storyloom[s3]") from exc
    url = out.rstrip("/")
    name = url.split("://", 1)[1].rstrip("/").rsplit("/", 1)[-1]
    if "/" not in url.split("://", 1)[1]:
        raise ValueError(f"--out {out}: give a folder inside the bucket, e.g. {url}/my-dataset")
    root = Path(work_dir).expanduser().absolute() if work_dir is not None else default_work_dir(url)
    return OutputTarget(url, root, name, True, dict(storage_options or {}))


def parse_storage_options(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> storage options; a VALUE that reads as YAML (a number, true/false,
    a mapping such as ``{retries: {max_attempts: 2}}``) becomes that value. ValueError when malformed."""
    from pipeline.config import load_yaml

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--storage-option {pair!r}: expected KEY=VALUE")
        try:
            parsed = load_yaml(value) if value.strip() else value
        except Exception:  # noqa: BLE001 - not YAML: the text itself
            parsed = value
        options[key.strip()] = parsed if isinstance(parsed, (int, float, bool, dict, list)) else value
    return options


# --------------------------------------------------------------------------- the store


def _classify(exc: BaseException) -> StageError:
    """Transient (retry) unless the store said no for good, or the call itself was wrong (a bug)."""
    permanent = isinstance(exc, (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                 TypeError, ValueError, AttributeError, NotImplementedError))
    if isinstance(exc, OSError) and exc.errno in (errno.EINVAL, errno.EPERM, errno.EACCES, errno.ENOSYS):
        permanent = True
    return StageError(f"{type(exc).__name__}: {exc}", permanent=permanent)


@dataclass(frozen=True)
class PublishReport:
    """What :func:`publish` did, by relative name."""

    uploaded: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


class ObjectStore:
    """A folder on an fsspec filesystem, written with the promises of the module docstring."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, *, retries: int = 6,
                 backoff_s: float = 1.0, upload_workers: int = 4):
        import fsspec

        self.url = url.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.root = root.rstrip("/")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        self.protocols = frozenset(protocols)
        self.retries, self.backoff_s, self.upload_workers = retries, backoff_s, upload_workers

    def key(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _call(self, what: str, rel: str, call: Callable[[], T]) -> T:
        try:
            return retry(call, retries=self.retries, backoff_s=self.backoff_s, what=what, url=f"{self.url}/{rel}",
                         catch=Exception, classify=_classify, logger=log)
        except StageError as err:
            raise StorageError(f"{what} {self.url}/{rel}: {err}") from err

    def check(self) -> None:
        """Raise :class:`StorageError` now when the folder cannot be used: no such bucket, no access."""
        if self.protocols & _BUCKET_PROTOCOLS:
            bucket = self.root.split("/", 1)[0]
            self._call("open bucket", "", lambda: self.fs.info(bucket))
        self.listing()

    def listing(self) -> dict[str, int]:
        """Relative name -> size of every object under the folder (nothing when it does not exist)."""
        def ls() -> dict[str, int]:
            self.fs.invalidate_cache()
            found = self.fs.find(self.root, detail=True)
            prefix = self.root + "/"
            return {name[len(prefix):]: int(info.get("size") or 0) for name, info in found.items()
                    if name.startswith(prefix) and info.get("type", "file") == "file"}
        return self._call("list", "", ls)

    def stored_sha256(self, rel: str) -> str | None:
        """The sha256 recorded with the object at upload, None when the store keeps none."""
        if not self.protocols & _METADATA_PROTOCOLS:
            return None
        meta = self._call("head", rel, lambda: self.fs.metadata(self.key(rel), refresh=True))
        return (meta or {}).get(SHA256_METADATA)

    def content_sha256(self, rel: str) -> str:
        """The sha256 of the object's bytes, read back."""
        def read() -> str:
            sha = hashlib.sha256()
            with self.fs.open(self.key(rel), "rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    sha.update(chunk)
            return sha.hexdigest()
        return self._call("read", rel, read)

    def holds(self, rel: str, size: int, sha256: str, listing: dict[str, int]) -> bool:
        """Whether the object ``rel`` already has exactly these bytes."""
        if listing.get(rel) != size:
            return False
        return (self.stored_sha256(rel) or self.content_sha256(rel)) == sha256

    def upload(self, local: Path, rel: str, sha256: str) -> None:
        """Put ``local`` under ``rel``, never leaving part of it under that name."""
        final = self.key(rel)
        extra = {"Metadata": {SHA256_METADATA: sha256}} if self.protocols & _METADATA_PROTOCOLS else {}
        if self.protocols & _ATOMIC_UPLOAD:
            self._call("upload", rel, lambda: self.fs.put_file(str(local), final, **extra))
            return
        parent, _, name = final.rpartition("/")
        temp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            self._call("upload", rel, lambda: (self.fs.makedirs(parent, exist_ok=True),
                                               self.fs.put_file(str(local), temp, **extra)))
            self._call("move", rel, lambda: self.fs.mv(temp, final))
        except BaseException:
            try:
                self.fs.rm_file(temp)
            except Exception:  # noqa: BLE001 - best effort: a later publish removes leftovers
                pass
            raise

    def delete(self, rel: str) -> None:
        def rm() -> None:
            try:
                self.fs.rm_file(self.key(rel))
            except FileNotFoundError:
                pass  # gone already (an earlier attempt that did go through)
        self._call("delete", rel, rm)


def default_read_cache(url: str) -> Path:
    """Where :func:`mirror_dataset` keeps a local copy of a dataset in a store: one folder per URL."""
    return _url_cache("datasets", url.rstrip("/"))


def mirror_dataset(url: str, local_root: Path | None = None, storage_options: dict[str, Any] | None = None, *,
                   retries: int = 3, backoff_s: float = 1.0) -> Path:
    """A local copy of the dataset at ``url`` for the dataset tools (``open_dataset``), kept in
    ``local_root`` (default :func:`default_read_cache`): objects whose size and recorded sha256
    match the local file are not downloaded again, shards and plots the store no longer has are
    removed. Only the dataset's files are copied (:func:`is_dataset_file`), never ``work/``. Raises :class:`StorageError` when the store cannot be read."""
    store = ObjectStore(url, storage_options, retries=retries, backoff_s=backoff_s)
    root = Path(local_root) if local_root is not None else default_read_cache(store.url)
    listing = {rel: size for rel, size in store.listing().items() if is_dataset_file(rel)}
    if not listing:
        raise StorageError(f"{store.url}: no objects there")
    for rel, size in sorted(listing.items()):
        local = root / rel
        if local.is_file() and local.stat().st_size == size:
            recorded = store.stored_sha256(rel)
            if recorded is not None and recorded == file_sha256(local):
                continue
        try:
            fetch_object(store.url + "/" + rel, local, retries=retries, backoff_s=backoff_s)
        except StageError as err:
            raise StorageError(f"download {store.url}/{rel}: {err}") from err
    for rel in dataset_files(root) if root.is_dir() else []:
        if rel not in listing and any(p.match(rel) for p in _OWNED_STALE):  # a shard or plot gone from the store
            (root / rel).unlink()
    return root


def is_dataset_file(rel: str) -> bool:
    """Whether a relative name is one of the dataset's files (the contract's output table, not ``work/``)."""
    return rel in _TOP_FILES or bool(_MANIFEST_RE.match(rel)) or any(p.match(rel) for p in _OWNED_STALE)


def dataset_files(root: Path) -> list[str]:
    """The files of a local output directory that make the dataset (the contract's table: shards,
    manifests, catalog, sources table, card and plots, config; not ``work/``, temp files or anything
    else put there), relative, in publishing order: the manifests last, ``manifest.json`` last of all."""
    root = Path(root)
    names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    names = [n for n in names if is_dataset_file(n)]

    def order(name: str) -> tuple[int, str]:
        if name == "manifest.json":
            return 3, name
        if _MANIFEST_RE.match(name):
            return 2, name
        return (0 if name.startswith(("shards/", "card/")) else 1), name
    return sorted(names, key=order)


def publish(layout: OutputLayout, store: ObjectStore) -> PublishReport:
    """Make the store folder hold the dataset files of ``layout.root``: changed files uploaded (the
    manifests last), unchanged ones left alone, then the shards and plots it no longer has deleted."""
    files = dataset_files(layout.root)
    listing = store.listing()
    uploaded: list[str] = []
    unchanged: list[str] = []

    def sync(rel: str) -> bool:
        local = layout.root / rel
        sha = file_sha256(local)
        if store.holds(rel, local.stat().st_size, sha, listing):
            return False
        store.upload(local, rel, sha)
        return True

    index = [f for f in files if _MANIFEST_RE.match(f)]
    body = [f for f in files if f not in index]
    with ThreadPoolExecutor(max_workers=max(1, store.upload_workers)) as pool:
        futures = [pool.submit(sync, rel) for rel in body]
        try:
            changed = [future.result() for future in futures]  # every body file in place before the first manifest
        except BaseException:
            for future in futures:  # the store is failing: start nothing more
                future.cancel()
            raise
    for rel, was_changed in zip(body, changed):
        (uploaded if was_changed else unchanged).append(rel)
    for rel in index:  # one at a time, manifest.json last
        (uploaded if sync(rel) else unchanged).append(rel)

    keep = set(files)
    stale = sorted(rel for rel in listing if rel not in keep
                   and (any(p.match(rel) for p in _OWNED_STALE) or _TEMP_RE.search(rel)))
    for rel in stale:
        store.delete(rel)
    log.info("published %s: %d uploaded, %d unchanged, %d stale removed", store.url, len(uploaded),
             len(unchanged), len(stale))
    return PublishReport(tuple(uploaded), tuple(unchanged), tuple(r for r in stale if not _TEMP_RE.search(r)))


# --------------------------------------------------------------------------- sources in a store


def is_store_source(url: str | None) -> bool:
    """A source address read through fsspec: a store URL that is not HTTP (yt-dlp and the book
    fetcher keep HTTP(S))."""
    if not url or not is_store_url(url) or url_scheme(url) in _READ_ONLY:
        return False
    import fsspec

    return url_scheme(url) in fsspec.available_protocols()


def store_identity(url: str) -> list[Any] | None:
    """What tells an object's versions apart (size, and its ETag or modification time), for the
    fetch stage's key; None when the store cannot say now (the fetch stage reports why)."""
    import fsspec

    def head() -> dict[str, Any]:
        fs, path = fsspec.core.url_to_fs(url)
        return fs.info(path)

    try:  # a store's hiccup here would change the key and redo a finished source: retried briefly
        info = retry(head, retries=2, backoff_s=0.5, what="look up", url=url, catch=Exception, classify=_classify,
                     logger=log)
    except Exception:  # noqa: BLE001 - an identity never fails; the fetch does, with a reason
        return None
    version = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") or info.get("mtime")
    return [int(info.get("size") or 0), str(version) if version is not None else None]


def fetch_object(url: str, dest: Path, *, retries: int, backoff_s: float, max_bytes: int | None = None) -> int:
    """Download the object ``url`` to ``dest`` (written as ``dest.part``, renamed when complete);
    its size. Raises :class:`StageError`: permanent for a missing object, access denied, or (a
    skip) an object over ``max_bytes``; transient when the store kept failing through the retries."""
    import fsspec

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    def once() -> int:
        fs, path = fsspec.core.url_to_fs(url)
        size = fs.info(path).get("size")
        if max_bytes is not None and size is not None and size > max_bytes:
            raise StageError(f"{url} is {size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:g} MB",
                             permanent=True, skipped=True)
        written = 0
        with fs.open(path, "rb") as src, open(part, "wb") as out:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                written += len(chunk)
                out.write(chunk)
        if size is not None and written != size:
            raise OSError(errno.EIO, f"{url} ended after {written} of {size} bytes")
        part.replace(dest)
        return written

    def classify(exc: BaseException) -> StageError:
        if isinstance(exc, StageError):
            return exc
        if isinstance(exc, FileNotFoundError):
            return StageError(f"object not found: {url}", permanent=True)
        if isinstance(exc, PermissionError):
            return StageError(f"access denied: {url}", permanent=True)
        return _classify(exc)

    return retry(once, retries=retries, backoff_s=backoff_s, what="download", url=url, catch=Exception,
                 classify=classify, cleanup=lambda: part.unlink(missing_ok=True), logger=log)


def store_siblings(url: str, prefix: str) -> list[str]:
    """URLs of the objects next to ``url`` whose names start with ``prefix`` (sidecar subtitles);
    nothing when the folder cannot be listed."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
        parent = path.rsplit("/", 1)[0]
        names = [p for p in fs.ls(parent, detail=False) if p.rsplit("/", 1)[-1].startswith(prefix)]
    except Exception:  # noqa: BLE001 - no sidecars is a normal outcome; the video itself is checked
        return []
    scheme = url_scheme(url)
    return sorted(f"{scheme}://{p}" if not p.startswith(f"{scheme}://") else p for p in names)
