"""HTML picture books: plain files with their images in a folder next to them.

- ``gutenberg``: a Project Gutenberg style edition: the PG header and licence, START/END markers,
  a cover, title and credits, a contents list, then thumbnails linking to full-size images
  (``<a href="images/p1.png"><img src="images/p1_th.jpg"></a>``) with alt text, each followed
  by its paragraph; ornaments between pages.
- ``table``: a table setting each picture beside its text (alternating sides), a site header
  with a logo, credits, a copyright section and "about the illustrator" with a photo.
- ``plain``: paragraphs each followed by the picture they introduce (text precedes its picture),
  title attributes as the only descriptions.

Frames' ``page`` is the picture's 1-based position among the page's images, in document order.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from . import (ABOUT, AUTHOR, BLURB, COPYRIGHT, DEDICATION, HEADER, ILLUSTRATOR, TITLE, BookTruth, TruthFrame,
               jpeg_bytes, ornament, picture, png_bytes, story)

PG_HEADER = ("The Project Gutenberg eBook of The Red Seed. This ebook is for the use of anyone anywhere in the "
             "United States and most other parts of the world at no cost and with almost no restrictions whatsoever.")
PG_LICENCE = ("Project Gutenberg is a registered trademark. This eBook is in the public domain in the United States. "
              "Redistribution is subject to the Project Gutenberg License.")


def _page(title: str, body: str, lang: str = "en", head: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>{head}</head>'
            f"<body>{body}</body></html>")


def write_html(folder: Path, variant: str, seed: int = 0) -> BookTruth:
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    return {"gutenberg": _gutenberg, "table": _table, "plain": _plain}[variant](folder, seed)


def _gutenberg(folder: Path, seed: int) -> BookTruth:
    texts = story(seed, 4)
    arts = [picture(seed * 100 + 50 + i, 640, 480) for i in range(4)]
    cover = picture(seed * 100 + 92, 480, 640)
    (folder / "images" / "cover.jpg").write_bytes(jpeg_bytes(cover))
    (folder / "images" / "deco.png").write_bytes(png_bytes(ornament(6)))
    body = [f'<section class="pg-boilerplate pgheader" id="pg-header"><p>{PG_HEADER}</p></section>',
            "<p>*** START OF THE PROJECT GUTENBERG EBOOK THE RED SEED ***</p>",
            '<div class="figcenter"><img src="images/cover.jpg" alt="Cover"></div>',  # image 1
            f"<h1>{TITLE}</h1><h2>by {AUTHOR}</h2><p>Illustrated by {ILLUSTRATOR}</p>",
            "<h2>Contents</h2><ul><li>The Red Seed</li><li>Illustrations</li></ul>",
            f"<h2>{TITLE}</h2>"]
    frames = []
    position = 1
    for i, (art, text) in enumerate(zip(arts, texts)):
        (folder / "images" / f"p{i}.png").write_bytes(png_bytes(art))
        (folder / "images" / f"p{i}_th.jpg").write_bytes(jpeg_bytes(art[::5, ::5]))
        body.append(f'<div class="figcenter"><a href="images/p{i}.png"><img src="images/p{i}_th.jpg" width="128" '
                    f'alt="Tano and the tree, picture {i + 1}"></a></div><p>{text}</p>')
        position += 1
        frames.append(TruthFrame(art, text, position))
        body.append('<p class="center"><img src="images/deco.png" alt=""></p>')
        position += 1
    body += ["<p>*** END OF THE PROJECT GUTENBERG EBOOK THE RED SEED ***</p>",
             f'<section class="pg-boilerplate pgfooter" id="pg-footer"><h2>The Full Project Gutenberg License</h2>'
             f"<p>{PG_LICENCE}</p></section>"]
    (folder / "book.html").write_text(_page(f"The Project Gutenberg eBook of {TITLE}, by {AUTHOR}", "".join(body)))
    return BookTruth(name="html-gutenberg", path=folder / "book.html", layout="gutenberg", frames=frames,
                     license="public-domain", matter_texts=[PG_HEADER, PG_LICENCE, "Contents"], matter_pictures=[cover])


def _table(folder: Path, seed: int) -> BookTruth:
    texts = story(seed + 3, 4)
    arts = [picture(seed * 100 + 60 + i, 400, 300) for i in range(4)]
    photo = picture(seed * 100 + 91, 300, 300)
    (folder / "images" / "logo.png").write_bytes(png_bytes(ornament(8)))
    (folder / "images" / "photo.jpg").write_bytes(jpeg_bytes(photo))
    rows, frames = [], []
    for i, (art, text) in enumerate(zip(arts, texts)):
        (folder / "images" / f"page{i}.png").write_bytes(png_bytes(art))
        image, words = f'<td><img src="images/page{i}.png" alt=""></td>', f"<td><p>{text}</p></td>"
        rows.append(f"<tr>{image + words if i % 2 == 0 else words + image}</tr>")
        frames.append(TruthFrame(art, text, 2 + i))  # the logo is image 1
    body = (f'<header><img src="images/logo.png" class="logo" alt="logo"> {HEADER}</header>'
            f"<h1>{TITLE}</h1><p>Written by {AUTHOR}. Illustrated by {ILLUSTRATOR}.</p>"
            f"<h2>Copyright</h2><p>{COPYRIGHT}</p>"
            f"<h2>{TITLE}</h2><table>{''.join(rows)}</table>"
            f"<h2>About the illustrator</h2><p>{ILLUSTRATOR} paints with watercolours.</p>"
            '<img src="images/photo.jpg" alt="">'
            f"<footer><p>{HEADER} - read more free books</p></footer>")
    (folder / "book.html").write_text(_page(TITLE, body, head=f'<meta name="author" content="{AUTHOR}">'
                                            '<link rel="license" href="https://creativecommons.org/licenses/by/4.0/">'))
    return BookTruth(name="html-table", path=folder / "book.html", layout="table", frames=frames,
                     matter_texts=[COPYRIGHT, "paints with watercolours", HEADER], matter_pictures=[photo])


def _plain(folder: Path, seed: int) -> BookTruth:
    texts = story(seed + 5, 4)
    arts = [picture(seed * 100 + 70 + i, 500, 400) for i in range(4)]
    photo = picture(seed * 100 + 90, 300, 300)
    (folder / "images" / "author.png").write_bytes(png_bytes(photo))
    parts, frames = [], []
    for i, (art, text) in enumerate(zip(arts, texts)):
        (folder / "images" / f"{i}.jpg").write_bytes(jpeg_bytes(art, quality=98))
        parts.append(f'<p>{text}</p><p><img src="images/{i}.jpg" title="Scene {i + 1} of the story"></p>')
        frames.append(TruthFrame(art, text, 1 + i))
    body = (f"<h1>{TITLE}</h1><p>Written by {AUTHOR}</p><p>Illustrated by {ILLUSTRATOR}</p>"
            f"<p>{DEDICATION}</p><h2>Once upon a time</h2>{''.join(parts)}"
            f'<h2>About the author</h2><p>{ABOUT}</p><img src="images/author.png" alt="">'
            f"<h2>{TITLE}</h2><p>{BLURB}</p>")
    (folder / "book.html").write_text(_page(TITLE, body, head='<meta name="dc.rights" content="CC BY 4.0">'))
    return BookTruth(name="html-plain", path=folder / "book.html", layout="plain", frames=frames, authors=[AUTHOR],
                     matter_texts=[DEDICATION, ABOUT, BLURB], matter_pictures=[photo])


def zip_folder(folder: Path, dest: Path, prefix: str = "book-h") -> Path:
    """A folder as Project Gutenberg zips its HTML editions: one top folder holding page and images."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                z.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return dest
