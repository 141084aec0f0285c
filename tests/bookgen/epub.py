"""EPUB picture books written with zipfile: EPUB 2 and EPUB 3, reflowable and fixed-layout.

- ``epub2``: EPUB 2 package (``opf:role``, ``<meta name="cover">``, a ``<guide>``, an NCX); the
  story in two chapter documents of ``<div class="page"><img/><p>text</p></div>`` with an
  ornament in each page; dedication and "about the author" recognised from their text alone.
- ``epub3``: EPUB 3 reflowable (``refines`` roles, ``cover-image``, nav with landmarks,
  ``epub:type`` sections); the story as ``<figure>`` + ``<figcaption>`` followed by a neighbouring
  paragraph, two figures per chapter.
- ``epub3_fixed``: pre-paginated, one page per spine item sized by its viewport: pictures filling
  the page with text positioned over them, and one facing pair (text on a page-spread-left page,
  the picture on the page-spread-right page that follows).

Frames' ``page`` is the 1-based spine position of the document holding the picture.

:func:`convert_html` makes an EPUB from an HTML book with a real converter (pandoc, or calibre's
``ebook-convert``), as real EPUB editions of Project Gutenberg books are made; the truth stays the
HTML book's, but for the pages, which the converter decides.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import zipfile
from pathlib import Path

from . import (ABOUT, AUTHOR, BLURB, COPYRIGHT, DEDICATION, ILLUSTRATOR, TITLE, BookTruth, TruthFrame, ornament,
               picture, png_bytes, jpeg_bytes, story)

CONTAINER = ('<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
             '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
             "</rootfiles></container>")


def xhtml(body: str, title: str = TITLE, head: str = "") -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
            '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
            f"<head><title>{title}</title>{head}</head><body>{body}</body></html>")


def write_zip(path: Path, files: dict[str, bytes | str], extra: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")  # stored, first: the EPUB rule
        z.writestr("META-INF/container.xml", CONTAINER, compress_type=zipfile.ZIP_DEFLATED)
        for name, data in files.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        for info, data in extra:
            z.writestr(info, data)
    return path


def _opf(version: str, metadata: str, items: list[tuple[str, str, str, str]], spine: list[str], extra: str = "",
         spine_attrs: str = "") -> str:
    manifest = "".join(f'<item id="{i}" href="{h}" media-type="{m}"{f" properties={chr(34)}{p}{chr(34)}" if p else ""}/>'
                       for i, h, m, p in items)
    return (f'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="{version}" '
            'unique-identifier="id" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            f'xmlns:opf="http://www.idpf.org/2007/opf"><metadata>{metadata}</metadata><manifest>{manifest}</manifest>'
            f"<spine{spine_attrs}>{''.join(spine)}</spine>{extra}</package>")


def write_epub(path: Path, variant: str, seed: int = 0) -> BookTruth:
    return {"epub2": _epub2, "epub3": _epub3, "epub3_fixed": _epub3_fixed}[variant](Path(path), seed)


def _epub2(path: Path, seed: int) -> BookTruth:
    texts = story(seed, 4)
    arts = [picture(seed * 100 + 20 + i, 480, 360) for i in range(4)]
    cover, photo = picture(seed * 100 + 97, 480, 640), picture(seed * 100 + 96, 300, 300)
    files: dict[str, bytes | str] = {
        "OEBPS/images/cover.jpg": jpeg_bytes(cover), "OEBPS/images/photo.png": png_bytes(photo),
        "OEBPS/images/orn.png": png_bytes(ornament(3)),
        "OEBPS/cover.xhtml": xhtml('<div><img src="images/cover.jpg" alt="Cover"/></div>'),
        "OEBPS/title.xhtml": xhtml(f"<h1>{TITLE}</h1><p>Written by {AUTHOR}</p><p>Illustrated by {ILLUSTRATOR}</p>"),
        "OEBPS/copyright.xhtml": xhtml(f"<p>{COPYRIGHT}</p>"),
        "OEBPS/dedication.xhtml": xhtml(f"<p>{DEDICATION}</p>"),
        "OEBPS/about.xhtml": xhtml(f'<p>{ABOUT}</p><img src="images/photo.png" alt="The author"/>'),
        "OEBPS/back.xhtml": xhtml(f"<p>{BLURB}</p>"),
        "OEBPS/toc.ncx": '<?xml version="1.0"?><ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"/>',
    }
    frames = []
    for chapter in range(2):
        pages = []
        for i in (2 * chapter, 2 * chapter + 1):
            files[f"OEBPS/images/p{i}.png"] = png_bytes(arts[i])
            pages.append(f'<div class="page"><img src="images/p{i}.png" alt="Picture {i}"/><p>{texts[i]}</p>'
                         '<p class="deco"><img src="images/orn.png" alt=""/></p></div>')
            frames.append(TruthFrame(arts[i], texts[i], 5 + chapter))
        files[f"OEBPS/chapter{chapter}.xhtml"] = xhtml("".join(pages))
    docs = ["cover", "title", "copyright", "dedication", "chapter0", "chapter1", "about", "back"]
    items = [(d, f"{d}.xhtml", "application/xhtml+xml", "") for d in docs]
    items += [("cover-img", "images/cover.jpg", "image/jpeg", ""), ("ncx", "toc.ncx", "application/x-dtbncx+xml", "")]
    items += [(f"img{i}", f"images/p{i}.png", "image/png", "") for i in range(4)]
    metadata = (f"<dc:title>{TITLE}</dc:title><dc:creator opf:role=\"aut\">{AUTHOR}</dc:creator>"
                f"<dc:creator opf:role=\"ill\">{ILLUSTRATOR}</dc:creator><dc:language>en</dc:language>"
                "<dc:rights>Creative Commons Attribution 4.0 (CC BY 4.0)</dc:rights>"
                '<meta name="cover" content="cover-img"/>')
    guide = ('<guide><reference type="cover" href="cover.xhtml"/><reference type="title-page" href="title.xhtml"/>'
             '<reference type="copyright-page" href="copyright.xhtml"/>'
             '<reference type="text" href="chapter0.xhtml"/></guide>')
    files["OEBPS/content.opf"] = _opf("2.0", metadata, items, [f'<itemref idref="{d}"/>' for d in docs], guide,
                                      ' toc="ncx"')
    write_zip(path, files)
    return BookTruth(name="epub2", path=path, layout="epub2", frames=frames,
                     matter_texts=[COPYRIGHT, DEDICATION, ABOUT, BLURB], matter_pictures=[cover, photo])


def _epub3(path: Path, seed: int) -> BookTruth:
    texts = story(seed, 8)
    arts = [picture(seed * 100 + 30 + i, 480, 360) for i in range(4)]
    cover, photo = picture(seed * 100 + 95, 480, 640), picture(seed * 100 + 94, 300, 300)
    files: dict[str, bytes | str] = {
        "OEBPS/images/cover.png": png_bytes(cover), "OEBPS/images/photo.png": png_bytes(photo),
        "OEBPS/images/orn.png": png_bytes(ornament(4)),
        "OEBPS/nav.xhtml": xhtml('<nav epub:type="toc"><ol><li><a href="chapter0.xhtml">Story</a></li></ol></nav>'
                                 '<nav epub:type="landmarks"><ol><li><a epub:type="cover" href="cover.xhtml">Cover</a></li>'
                                 '<li><a epub:type="bodymatter" href="chapter0.xhtml">Start</a></li></ol></nav>'),
        "OEBPS/cover.xhtml": xhtml('<img src="images/cover.png" alt="Cover"/>'),
        "OEBPS/title.xhtml": xhtml(f'<section epub:type="titlepage"><h1>{TITLE}</h1><p>{AUTHOR}</p><p>{ILLUSTRATOR}</p>'
                                   '<img src="images/orn.png" alt=""/></section>'),
        "OEBPS/copyright.xhtml": xhtml(f'<section epub:type="copyright-page"><p>{COPYRIGHT}</p></section>'),
        "OEBPS/dedication.xhtml": xhtml(f'<section epub:type="dedication"><p>{DEDICATION}</p></section>'),
        "OEBPS/about.xhtml": xhtml(f'<section epub:type="backmatter"><h2>Meet the author</h2><p>{ABOUT}</p>'
                                   '<img src="images/photo.png" alt="The author"/></section>'),
        "OEBPS/back.xhtml": xhtml(f"<p>{BLURB}</p>"),
    }
    frames = []
    for chapter in range(2):
        body = []
        for i in (2 * chapter, 2 * chapter + 1):
            files[f"OEBPS/images/p{i}.png"] = png_bytes(arts[i])
            body.append(f'<figure><img src="images/p{i}.png" alt="Tano on page {i + 1}"/>'
                        f"<figcaption>{texts[2 * i]}</figcaption></figure><p>{texts[2 * i + 1]}</p>"
                        '<div class="ornament"><img src="images/orn.png" alt=""/></div>')
            frames.append(TruthFrame(arts[i], f"{texts[2 * i]} {texts[2 * i + 1]}", 6 + chapter))
        files[f"OEBPS/chapter{chapter}.xhtml"] = xhtml(f'<section epub:type="bodymatter chapter">{"".join(body)}</section>')
    docs = ["nav", "cover", "title", "copyright", "dedication", "chapter0", "chapter1", "about", "back"]
    items = [(d, f"{d}.xhtml", "application/xhtml+xml", "nav" if d == "nav" else "") for d in docs]
    items += [("cover-img", "images/cover.png", "image/png", "cover-image")]
    metadata = (f'<dc:title>{TITLE}</dc:title><dc:creator id="c1">{AUTHOR}</dc:creator>'
                '<meta refines="#c1" property="role" scheme="marc:relators">aut</meta>'
                f'<dc:creator id="c2">{ILLUSTRATOR}</dc:creator>'
                '<meta refines="#c2" property="role" scheme="marc:relators">ill</meta><dc:language>en</dc:language>'
                '<meta property="dcterms:license">https://creativecommons.org/licenses/by/4.0/</meta>')
    spine = [f'<itemref idref="{d}"{" linear=" + chr(34) + "no" + chr(34) if d == "nav" else ""}/>' for d in docs]
    files["OEBPS/content.opf"] = _opf("3.0", metadata, items, spine)
    write_zip(path, files)
    return BookTruth(name="epub3", path=path, layout="epub3", frames=frames,
                     matter_texts=[COPYRIGHT, DEDICATION, ABOUT, BLURB], matter_pictures=[cover, photo])


def _epub3_fixed(path: Path, seed: int) -> BookTruth:
    texts = story(seed, 4)
    arts = [picture(seed * 100 + 40 + i, 450, 600) for i in range(4)]
    cover = picture(seed * 100 + 93, 450, 600)
    head = '<meta name="viewport" content="width=600, height=800"/>'
    full = 'style="position:absolute; left:0px; top:0px; width:600px; height:800px"'
    logo = '<img src="images/logo.png" style="position:absolute; left:540px; top:740px; width:40px; height:40px" alt=""/>'
    files: dict[str, bytes | str] = {"OEBPS/images/cover.png": png_bytes(cover)}
    for i, art in enumerate(arts):
        files[f"OEBPS/images/p{i}.png"] = png_bytes(art)
    pages: list[tuple[str, str, str]] = [  # (id, body, properties)
        ("cover", f'<img src="images/cover.png" {full} alt="Cover"/>', "page-spread-right"),
        ("title", f'<h1>{TITLE}</h1><p>by {AUTHOR}</p><p>Illustrated by {ILLUSTRATOR}</p>', "page-spread-left"),
        ("copyright", f"<p>{COPYRIGHT}</p>", "page-spread-right"),
        ("p1", f'<p style="position:absolute; left:60px; top:300px">{texts[0]}</p>{logo}', "page-spread-left"),
        ("p2", f'<img src="images/p0.png" {full} alt=""/>', "page-spread-right"),
    ]
    frames = [TruthFrame(arts[0], texts[0], 5)]
    for i in range(1, 4):
        pages.append((f"p{i + 2}", f'<img src="images/p{i}.png" {full} alt=""/>'
                      f'<div style="position:absolute; left:60px; top:80px"><p>{texts[i]}</p></div>{logo}',
                      "page-spread-left" if (i + 5) % 2 == 0 else "page-spread-right"))
        frames.append(TruthFrame(arts[i], texts[i], 5 + i))
    pages.append(("about", f"<p>{ABOUT}</p>", ""))
    pages.append(("back", f"<p>{BLURB}</p>{logo}", ""))
    for name, body, _ in pages:
        files[f"OEBPS/{name}.xhtml"] = xhtml(body, head=head)
    files["OEBPS/images/logo.png"] = png_bytes(ornament(5))
    items = [(n, f"{n}.xhtml", "application/xhtml+xml", "") for n, _, _ in pages]
    items.append(("cover-img", "images/cover.png", "image/png", "cover-image"))
    metadata = (f'<dc:title>{TITLE}</dc:title><dc:creator id="c1">{AUTHOR}</dc:creator>'
                f'<dc:contributor id="c2">{ILLUSTRATOR}</dc:contributor>'
                '<meta refines="#c2" property="role" scheme="marc:relators">ill</meta><dc:language>en</dc:language>'
                '<dc:rights>CC BY 4.0</dc:rights><meta property="rendition:layout">pre-paginated</meta>')
    spine = [f'<itemref idref="{n}"{" properties=" + chr(34) + p + chr(34) if p else ""}/>' for n, _, p in pages]
    files["OEBPS/content.opf"] = _opf("3.0", metadata, items, spine)
    write_zip(path, files)
    return BookTruth(name="epub3_fixed", path=path, layout="epub3_fixed", frames=frames,
                     matter_texts=[COPYRIGHT, ABOUT, BLURB], matter_pictures=[cover])


CONVERTERS = {"pandoc": "pandoc", "calibre": "ebook-convert"}


def converter_missing(converter: str) -> str | None:
    """Why ``converter`` cannot run here (for a test's skip reason), or None."""
    program = CONVERTERS[converter]
    if shutil.which(program) is None:
        return f"{program} is not installed (Debian: apt-get install {'calibre' if converter == 'calibre' else program})"
    return None


def convert_html(truth: BookTruth, dest: Path, converter: str) -> BookTruth:
    """The HTML book of ``truth`` converted to ``dest`` (an EPUB) by ``converter``, run in the book's
    folder as a user would (pandoc finds the images from there)."""
    page = Path(truth.path)
    if converter == "pandoc":
        command = ["pandoc", page.name, "--resource-path", str(page.parent), "-o", str(Path(dest).resolve())]
    else:
        command = ["ebook-convert", page.name, str(Path(dest).resolve())]
    done = subprocess.run(command, cwd=page.parent, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not Path(dest).is_file():
        raise RuntimeError(f"{converter} failed ({done.returncode}): {done.stderr[-2000:]}")
    return dataclasses.replace(truth, name=f"{truth.name}-{converter}", path=Path(dest))
