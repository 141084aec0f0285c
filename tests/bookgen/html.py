"""HTML picture books: plain files with their images in a folder next to them.

- ``gutenberg``: a Project Gutenberg style edition: the PG header and licence, START/END markers,
  a cover, title and credits, a contents list, then thumbnails linking to full-size images
  (``<a href="images/p1.png"><img src="images/p1_th.jpg"></a>``) with alt text, each followed
  by its paragraph; ornaments between pages.
- ``table``: a table setting each picture beside its text (alternating sides), a site header
  with a logo, credits, a copyright section and "about the illustrator" with a photo.
- ``plain``: paragraphs each followed by the picture they introduce (text precedes its picture),
  title attributes as the only descriptions.

Two more in the shapes real Project Gutenberg picture books have (:func:`write_gutenberg`), where
the text of an illustration is the story text after it and before the next one:

- ``pg_table``: an XHTML 1.0 edition as produced around 2005: the header and licence in ``<pre>``
  blocks with the START/END markers and "Title:"/"Author:" lines; a frontispiece before the title;
  the title block in h1/h3/h2 with a title decoration among it; the publisher in h3 and h6
  ("First published 1902", "Printed and bound in..."); a lead-in paragraph; then one table per
  illustration, some with cells and rows never closed (``<td><img></td>`` followed by
  ``<p class="story">`` with no ``<td>``), thumbnails linking to full-size pictures, a page number
  inside a paragraph; "THE END".
- ``pg_figure``: a modern edition: ``pg-boilerplate`` header and footer sections, a frontispiece
  thumbnail with a caption before the title, a list of illustrations, then ``figcenter`` divs
  and paragraphs holding thumbnails (linking to the full picture), each followed by its
  paragraphs; page numbers between and inside paragraphs, a figure caption that repeats the alt
  text, "THE END" and a publisher's advertisement (with a picture) after it.

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
    if variant in GUTENBERG_SHAPES:
        return write_gutenberg(folder, variant, seed)
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


# --------------------------------------------------------------------------- Project Gutenberg shapes

GUTENBERG_SHAPES = ("pg_table", "pg_figure")
LEAD_IN = ("Once upon a time, far beyond the hills, there lived a boy and his three friends, and their names "
           "were\u2014")
LEAD_IN_NAMES = ("Tano,", "Efua,", "Kojo,", "and the goat.")
PUBLISHER_LINES = ("First published 1902", "Storyloom Press &amp; Co., 1902",
                   "Printed and bound in Great Britain by Loom Printers Limited, Accra and London")
PG_OLD_HEADER = ("\nThe Project Gutenberg EBook of {title}, by {author}\n\nThis eBook is for the use of anyone anywhere "
                 "at no cost and with\nalmost no restrictions whatsoever.  You may copy it, give it away or\nre-use it "
                 "under the terms of the Project Gutenberg License included\nwith this eBook or online at "
                 "www.gutenberg.net\n\n\nTitle: {title}\n\nAuthor: {author}\n\nIllustrator: {illustrator}\n\n"
                 "Release Date: January 30, 2005 [EBook #99999]\n\nLanguage: English\n\n"
                 "*** START OF THIS PROJECT GUTENBERG EBOOK {upper} ***\n\n\n\n\nProduced by Ada Reader and the "
                 "Online\nDistributed Proofreading Team (http://www.pgdp.net).\n\n")
PG_OLD_FOOTER = ("\n\nEnd of Project Gutenberg's {title}, by {author}\n\n*** END OF THIS PROJECT GUTENBERG EBOOK {upper} "
                 "***\n\n***** This file should be named 99999-h.htm or 99999-h.zip *****\n\n" + PG_LICENCE + "\n")
ADVERT = "Other books in this series: The Blue Kite, The Lost Goat, The Singing Drum."


def write_gutenberg(folder: Path, shape: str, seed: int = 0) -> BookTruth:
    """A picture book in the shape of a real Project Gutenberg HTML edition (``pg_table`` or
    ``pg_figure``, see the module's docstring): ``book.htm`` with its ``images/`` folder.

    The truth follows the convention such books have: each illustration's text is the story text
    after it and before the next one; the lead-in (story text before the first illustration), the
    frontispiece, the title decoration, the distributor's header and licence, the publisher lines,
    the list of illustrations and what follows "THE END" are in no frame.
    """
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    rng_offset = seed * 100
    front = picture(rng_offset + 81, 420, 520)
    title_deco = picture(rng_offset + 82, 150, 230)
    advert = picture(rng_offset + 83, 300, 420)
    (folder / "images" / "front.jpg").write_bytes(jpeg_bytes(front))
    (folder / "images" / "front-tb.jpg").write_bytes(jpeg_bytes(front[::4, ::4]))
    (folder / "images" / "title.gif").write_bytes(_gif_bytes(title_deco))
    (folder / "images" / "advert.jpg").write_bytes(jpeg_bytes(advert))
    texts = story(seed, 10)
    # the paragraphs after each illustration: one or two, to test that all of them are its text
    paragraphs = [[texts[0]], [texts[1], texts[2]], [texts[3]], [texts[4], texts[5]], [texts[6]], [texts[7]]]
    arts = [picture(rng_offset + 84 + i, 480 - 40 * (i % 2), 360 + 30 * (i % 3)) for i in range(len(paragraphs))]
    for i, art in enumerate(arts):
        (folder / "images" / f"p{i:02d}.jpg").write_bytes(jpeg_bytes(art))
        (folder / "images" / f"p{i:02d}-tb.jpg").write_bytes(jpeg_bytes(art[::4, ::4]))
    meta = {"title": TITLE, "author": AUTHOR, "illustrator": ILLUSTRATOR, "upper": TITLE.upper()}
    body, positions = (_pg_table if shape == "pg_table" else _pg_figure)(paragraphs, meta)
    frames = [TruthFrame(art, " ".join(words), position) for art, words, position in zip(arts, paragraphs, positions)]
    head = ('<?xml version="1.0" encoding="iso-8859-1"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"\n'
            '    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml">\n'
            f"<head>\n<title>The Project Gutenberg eBook of {TITLE}, by {AUTHOR}</title>\n"
            '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1" />\n'
            '<style type="text/css">\n  .figcenter {margin: auto; text-align: center;}\n  .story {font-size: 133%;}\n'
            "  .pagenum {position: absolute; right: 4%; font-size: smaller;}\n</style>\n</head>\n")
    if shape == "pg_figure":
        head = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>The Project Gutenberg eBook of {TITLE}, by {AUTHOR}</title>\n</head>\n")
    page = folder / "book.htm"
    page.write_bytes((head + "<body>\n" + body + "\n</body>\n</html>\n").encode("utf-8" if shape == "pg_figure"
                                                                                 else "iso-8859-1", "xmlcharrefreplace"))
    lead_in = f"{LEAD_IN} {' '.join(LEAD_IN_NAMES)}"
    return BookTruth(name=f"html-{shape}", path=page, layout=shape, frames=frames, license="public-domain",
                     matter_texts=[PG_HEADER_MARK, "Project Gutenberg", "Distributed Proofreading", "First published",
                                   "Printed and bound", "Storyloom Press", LEAD_IN[:40], "THE END", ADVERT[:30],
                                   "Frontispiece", "LIST OF ILLUSTRATIONS", TITLE],
                     matter_pictures=[front, title_deco, advert], lead_in=lead_in)


PG_HEADER_MARK = "START OF"


def _gif_bytes(array) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).convert("P", palette=Image.Palette.ADAPTIVE).save(buffer, format="GIF")
    return buffer.getvalue()


def _title_block(meta: dict[str, str]) -> str:
    """The title, the author and a decoration among them, the publisher and printer: front matter."""
    words = meta["title"].upper().split(" ", 1)
    return (f"<h1>{words[0]}</h1>\n\n<h1>{words[1]}</h1>\n\n<h3>BY</h3>\n\n<h2>{meta['author'].upper()}</h2>\n\n"
            '<div class="figcenter">\n<img src="images/title.gif" alt="Tano" title="Tano" />\n</div>\n\n'
            "<h3>STORYLOOM PRESS</h3>\n\n<p>&nbsp;</p>\n\n<hr style=\"width: 65%;\" />\n\n<p>&nbsp;</p>\n\n"
            + "".join(f"<h6>{line}</h6>\n\n" for line in PUBLISHER_LINES) + "<p>&nbsp;</p>\n\n<hr />\n\n")


def _lead_in() -> str:
    names = "".join(f'<span style="margin-left: {3 - i}em;">{name}</span><br />\n' for i, name in
                    enumerate(LEAD_IN_NAMES[:-1]))
    return (f'<p class="story">{LEAD_IN}</p>\n\n<p class="story">\n{names}{LEAD_IN_NAMES[-1]}<br />\n</p>\n\n')


def _pg_table(paragraphs: list[list[str]], meta: dict[str, str]) -> tuple[str, list[int]]:
    """Old-style edition: <pre> boilerplate, one table per illustration, some rows never closed."""
    parts = [f"<pre>\n{PG_OLD_HEADER.format(**meta)}</pre>\n\n",
             '<div class="figcenter">\n<img src="images/front.jpg" alt="Tano and the tree" title="Tano and the tree" />'
             "\n</div>\n\n", _title_block(meta), _lead_in()]
    table = '<table cellspacing="0" cellpadding="4" border="0" summary="Story">\n'
    for i, words in enumerate(paragraphs):
        image = f'<img src="images/p{i:02d}.jpg" alt="Picture {i + 1}" title="Picture {i + 1}" />'
        story_ps = "\n\n".join(f'<p class="story">{w}</p>' for w in words)
        if i == 1:  # one paragraph, with a page number inside it between its two sentences
            story_ps = f'<p class="story">{words[0]} <span class="pagenum">[Pg 12]</span>{words[1]}</p>'
        if i == 0:
            parts.append(f"{table}<tr>\n\t<td>{image}\n\t</td>\n\t<td>{story_ps}\n</td>\n</tr>\n</table>\n\n")
        elif i == 1:  # the text's cell never opened: <td><img></td> then <p class="story">
            parts.append(f"{table}<tr>\n\t<td>{image}\n\t</td>\n\t{story_ps}</td>\n</tr>\n</table>\n\n")
        elif i == 2:  # a thumbnail linking to the full-size picture; cell and row never closed
            parts.append(f'{table}<tr>\n\t<td><a href="images/p{i:02d}.jpg"><img src="images/p{i:02d}-tb.jpg" '
                         f'alt="Picture {i + 1}" /></a>\n\t<td>{story_ps}\n</table>\n\n')
        elif i == 3:  # two illustrations in one table, rows never closed
            parts.append(f"{table}<tr>\n\t<td>{image}\n\t<td>{story_ps}\n")
        elif i == 4:
            parts.append(f"<tr>\n\t<td>{image}\n\t<td>{story_ps}\n</table>\n\n")
        else:
            parts.append(f"{table}<tr>\n\t<td>{image}</td>\n\t<td>{story_ps}</td>\n</tr>\n</table>\n\n")
    parts.append("<h2>THE END</h2>\n\n")
    parts.append(f"<pre>\n{PG_OLD_FOOTER.format(**meta)}</pre>\n")
    # image positions: the frontispiece is image 1, the title decoration image 2
    return "".join(parts), [3 + i for i in range(len(paragraphs))]


def _pg_figure(paragraphs: list[list[str]], meta: dict[str, str]) -> tuple[str, list[int]]:
    """Modern edition: boilerplate sections, figcenter divs and paragraphs with linked thumbnails."""
    header = (f'<section class="pg-boilerplate pgheader" id="pg-header" lang="en">\n<h2 id="pg-header-heading">The '
              f"Project Gutenberg eBook of {meta['title']}</h2>\n<div>{PG_HEADER}</div>\n"
              f'<div class="container" id="pg-machine-header"><p><strong>Title</strong>: {meta["title"]}</p>\n'
              f'<div id="pg-header-authlist"><p><strong>Author</strong>: {meta["author"]}</p>\n'
              f'<p><strong>Illustrator</strong>: {meta["illustrator"]}</p></div>\n'
              "<p><strong>Release date</strong>: January 30, 2005 [eBook #99999]</p>\n"
              "<p><strong>Language</strong>: English</p></div>\n"
              f'<div id="pg-start-separator"><span>*** START OF THE PROJECT GUTENBERG EBOOK {meta["upper"]} ***'
              "</span></div>\n</section>\n")
    footer = (f'<div id="pg-end-separator"><span>*** END OF THE PROJECT GUTENBERG EBOOK {meta["upper"]} ***'
              '</span></div>\n<section class="pg-boilerplate pgfooter" id="pg-footer">\n'
              f"<h2 id=\"pg-footer-heading\">THE FULL PROJECT GUTENBERG LICENSE</h2>\n<p>{PG_LICENCE}</p>\n</section>\n")
    contents = ("<h4>LIST OF ILLUSTRATIONS</h4>\n"
                '<p class="toc"><a href="#front">Tano and the tree</a> &nbsp; <i>Frontispiece</i></p>\n'
                + "".join(f'<p class="toc"><a href="#p{i}">Picture {i + 1}</a> &nbsp; {8 + 2 * i}</p>\n'
                          for i in range(len(paragraphs))))
    parts = [header, '<p>Produced by Ada Reader and the Online Distributed Proofreading Team at https://www.pgdp.net</p>\n',
             '<div class="figcenter" id="front">\n<a href="images/front.jpg"><img src="images/front-tb.jpg" '
             'alt="Tano and the tree" /></a>\n<p class="caption">Frontispiece</p>\n</div>\n\n',
             _title_block(meta), contents, _lead_in()]
    for i, words in enumerate(paragraphs):
        thumb = (f'<a href="images/p{i:02d}.jpg"><img src="images/p{i:02d}-tb.jpg" width="120" '
                 f'alt="Picture {i + 1}" /></a>')
        story_ps = "\n".join(f"<p>{w}</p>" for w in words)
        if i == 1:  # a figure whose caption only repeats the alt text; a page number between paragraphs
            parts.append(f'<div class="figcenter" id="p{i}">{thumb}\n<div class="caption"><p>Picture {i + 1}</p></div>'
                         f'</div>\n<p>{words[0]}</p>\n<span class="pagenum"><a id="Page_12">[Pg 12]</a></span>\n'
                         f"<p>{words[1]}</p>\n\n")
        elif i % 2:
            parts.append(f'<p class="figcenter" id="p{i}">{thumb}</p>\n{story_ps}\n\n')
        else:
            parts.append(f'<div class="figcenter" id="p{i}">\n{thumb}\n</div>\n{story_ps}\n<p class="pagenum">'
                         f"[{9 + 2 * i}]</p>\n\n")
    parts += ["<h2>THE END</h2>\n\n<hr />\n<h3>STORYLOOM PRESS</h3>\n",
              '<div class="figcenter"><img src="images/advert.jpg" alt="Other books" /></div>\n',
              f"<p>{ADVERT}</p>\n\n", footer]
    return "".join(parts), [3 + i for i in range(len(paragraphs))]
