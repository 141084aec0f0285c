"""Bad books, one per problem the issue lists; each must become a clear failed row.

Returned as name -> (path, words the error message must contain).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .epub import write_epub
from .html import write_html
from .pdf import write_pdf, write_text_only_pdf


def write_bad_books(root: Path) -> dict[str, tuple[Path, str]]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}

    out["locked"] = (write_pdf(root / "locked.pdf", "below", seed=9, pages=2, encrypt="secret").path, "password-protected")
    good = write_pdf(root / "whole.pdf", "below", seed=9, pages=2).path
    data = good.read_bytes()
    (root / "truncated.pdf").write_bytes(data[: len(data) // 2])
    good.unlink()
    out["truncated"] = (root / "truncated.pdf", "truncated")
    out["textonly"] = (write_text_only_pdf(root / "textonly.pdf"), "no illustrations")

    epub = write_epub(root / "whole.epub", "epub3", seed=9).path
    data = epub.read_bytes()
    (root / "cut.epub").write_bytes(data[: len(data) // 3])
    epub.unlink()
    out["cut"] = (root / "cut.epub", "not a readable zip")
    out["traversal"] = (_epub_with_member(root / "traversal.epub", "../../evil.xhtml"), "unsafe path")
    out["absolute"] = (_epub_with_member(root / "absolute.epub", "/tmp/evil.xhtml"), "unsafe path")
    out["bomb"] = (_zip_bomb(root / "bomb.epub"), "zip bomb")

    missing = write_html(root / "missing", "plain", seed=9).path
    (missing.parent / "images" / "2.jpg").unlink()
    out["missing"] = (missing, "missing")
    remote = write_html(root / "remote", "plain", seed=9).path
    remote.write_text(remote.read_text().replace('src="images/1.jpg"', 'src="http://images.example.invalid/1.jpg"'))
    out["remote"] = (remote, "remote")
    huge = write_html(root / "huge", "plain", seed=9).path
    _pixel_bomb(huge.parent / "images" / "3.jpg")
    out["huge"] = (huge, "max_image_pixels")
    return out


def _epub_with_member(path: Path, name: str) -> Path:
    write_epub(path, "epub2", seed=9)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(zipfile.ZipInfo(name), "<html/>")
    return path


def _zip_bomb(path: Path) -> Path:
    """An EPUB whose one image inflates 50 MB of zeros from ~50 KB (a ratio near 1000)."""
    write_epub(path, "epub2", seed=9)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("OEBPS/images/zeros.png", "w") as member:
            chunk = bytes(1 << 20)
            for _ in range(50):
                member.write(chunk)
    return path


def _pixel_bomb(path: Path) -> Path:
    """A 10000 x 10000 image (100 MP) in a few kB: over the default 50 MP cap (named .jpg, really PNG)."""
    from PIL import Image

    Image.new("1", (10000, 10000)).save(path, format="PNG")
    return path

