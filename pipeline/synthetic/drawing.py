"""The pictures of a synthetic video: illustration-like story pages and intro/outro cards.

:func:`draw_page` and :func:`draw_card` are pure functions of their arguments (RGB uint8 arrays),
drawn with PIL; the page text can be burnt into the picture for mask and OCR tests.
"""

from __future__ import annotations

import colorsys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(int(size), 6))
    except (TypeError, ValueError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _fit_font(draw, text: str, max_w: float, size: int):
    font = _font(size)
    while size > 7 and draw.textlength(text, font=font) > max_w:
        size -= 1
        font = _font(size)
    return font


def draw_page(seed: int, picture: int, width: int, height: int, line_art: bool = False,
              pillarbox: bool = False, text: str | None = None) -> "np.ndarray":
    """An illustration-like page (RGB uint8, ``height x width x 3``), a pure function of its inputs.

    Colour pages: a gradient or flat pastel background, ground, and outlined figures (sun, house,
    trees, a creature, clouds, shapes) with some texture. ``line_art``: thin dark strokes on a
    near-white background with almost no fill, so a cut hardly moves the mean grey level.
    Consecutive ``picture`` ids get background hues a golden-ratio step apart.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, picture, 7])
    ss = 2  # draw at twice the size, then downsample: anti-aliased edges like real artwork
    if pillarbox:
        ih = height
        iw = min(width, (height * 4 // 3) // 2 * 2)
    else:
        iw, ih = width, height
    W, H = iw * ss, ih * ss
    hue = (seed * 0.137 + picture * 0.618034) % 1.0
    ink = (24, 24, 28) if line_art else _hsv(hue + 0.5, 0.5, 0.16)
    lw = 3 if line_art else 2 * ss  # line art: strokes about 1.5 px wide

    if line_art:
        base = np.full((H, W, 3), 247, np.float32) + rng.uniform(-2, 2, 3).astype(np.float32)
    elif rng.random() < 0.6:
        top = np.array(_hsv(hue, 0.35, 0.97), np.float32)
        bottom = np.array(_hsv(hue + 0.08, 0.2, 1.0), np.float32)
        ramp = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        base = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (H, W, 3)).copy()
    else:
        base = np.broadcast_to(np.array(_hsv(hue, 0.28, 0.96), np.float32), (H, W, 3)).copy()
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)

    def fill(h_off: float, s: float = 0.65, v: float = 0.85):
        return None if line_art else _hsv(hue + h_off, s, v)

    # ground: a wavy band across the lower part
    gy = int(H * rng.uniform(0.62, 0.78))
    xs = np.linspace(0, W, 9)
    ys = gy + rng.uniform(-0.05, 0.05, 9) * H
    ground = [(float(x), float(y)) for x, y in zip(xs, ys)]
    if line_art:
        d.line(ground, fill=ink, width=lw)
    else:
        d.polygon(ground + [(W, H), (0, H)], fill=fill(0.3, 0.5, 0.7), outline=ink, width=lw)
        for _ in range(int(rng.integers(25, 45))):  # grass / pebble texture
            x, y = rng.uniform(0, W), rng.uniform(gy + 0.06 * H, H)
            d.line([(x, y), (x + rng.uniform(-4, 4) * ss, y - rng.uniform(3, 7) * ss)],
                   fill=_hsv(hue + 0.3, 0.6, 0.45), width=ss)
    # sun
    if rng.random() < 0.7:
        r = H * rng.uniform(0.07, 0.11)
        cx, cy = rng.uniform(0.1, 0.9) * W, rng.uniform(0.1, 0.28) * H
        for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            d.line([(cx + 1.3 * r * np.cos(a), cy + 1.3 * r * np.sin(a)),
                    (cx + 1.8 * r * np.cos(a), cy + 1.8 * r * np.sin(a))],
                   fill=ink if line_art else (240, 170, 30), width=lw)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=None if line_art else (252, 208, 60), outline=ink, width=lw)
    # clouds
    for _ in range(int(rng.integers(0, 3))):
        cx, cy, r = rng.uniform(0, W), rng.uniform(0.08, 0.3) * H, H * rng.uniform(0.04, 0.07)
        for dx in (-1.2, 0, 1.2):
            d.ellipse([cx + dx * r - r, cy - r, cx + dx * r + r, cy + r], fill=None if line_art else (255, 255, 255),
                      outline=ink if line_art else _hsv(hue, 0.1, 0.8), width=max(1, lw // 2))
    # figures standing on the ground, in random order and places
    close_up = rng.random() < 0.3  # one big figure, as in a close-up spread
    slots = rng.permutation(np.linspace(0.12, 0.88, 4)) if not close_up else [rng.uniform(0.3, 0.45)]
    figures = rng.permutation(["house", "tree", "tree", "creature"])[: int(rng.integers(2, 5))]
    if close_up:
        figures = [str(rng.choice(["creature", "house", "tree"]))]
    for kind, sx in zip(figures, slots):
        x0, base_y = float(sx * W), float(gy + rng.uniform(0.0, 0.08) * H)
        s = H * (rng.uniform(0.5, 0.6) if close_up else rng.uniform(0.22, 0.34))
        if kind == "house":
            d.rectangle([x0 - s * 0.5, base_y - s, x0 + s * 0.5, base_y],
                        fill=fill(0.05, 0.55, 0.9), outline=ink, width=lw)
            d.polygon([(x0 - s * 0.65, base_y - s), (x0, base_y - s * 1.6), (x0 + s * 0.65, base_y - s)],
                      fill=fill(0.95, 0.7, 0.7), outline=ink, width=lw)
            d.rectangle([x0 - s * 0.12, base_y - s * 0.45, x0 + s * 0.12, base_y],
                        fill=fill(0.6, 0.6, 0.45), outline=ink, width=lw)
            d.rectangle([x0 + s * 0.2, base_y - s * 0.8, x0 + s * 0.4, base_y - s * 0.6],
                        fill=None if line_art else (250, 240, 170), outline=ink, width=max(1, lw // 2))
        elif kind == "tree":
            d.rectangle([x0 - s * 0.08, base_y - s * 0.7, x0 + s * 0.08, base_y],
                        fill=fill(0.08, 0.6, 0.45), outline=ink, width=lw)
            for _ in range(int(rng.integers(1, 4))):
                cx, cy = x0 + rng.uniform(-0.25, 0.25) * s, base_y - s * rng.uniform(0.9, 1.2)
                rx, ry = s * rng.uniform(0.3, 0.45), s * rng.uniform(0.25, 0.4)
                d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill(0.33, 0.6, 0.6), outline=ink, width=lw)
        else:  # a creature: body, head, ears, eye, legs
            body = fill(rng.uniform(0, 1), 0.75, 0.9)
            bw, bh = s * 0.6, s * 0.35
            for lx in (-0.35, 0.3):
                d.line([(x0 + lx * bw, base_y - bh * 0.3), (x0 + lx * bw, base_y)], fill=ink, width=lw)
            d.ellipse([x0 - bw, base_y - bh * 1.6, x0 + bw, base_y - bh * 0.2], fill=body, outline=ink, width=lw)
            hx, hy, hr = x0 + bw * 0.95, base_y - bh * 1.6, s * 0.2
            d.polygon([(hx - hr * 0.8, hy - hr * 0.5), (hx - hr * 0.4, hy - hr * 1.7), (hx, hy - hr * 0.7)],
                      fill=body, outline=ink, width=lw)
            d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=body, outline=ink, width=lw)
            d.ellipse([hx + hr * 0.2, hy - hr * 0.35, hx + hr * 0.5, hy - hr * 0.05], fill=ink)
    # a few free shapes (flowers, stones, kites)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy, r = rng.uniform(0.05, 0.95) * W, rng.uniform(0.3, 0.95) * H, H * rng.uniform(0.03, 0.07)
        color = fill(rng.uniform(0, 1), 0.7, 0.95)
        if rng.random() < 0.5:
            d.ellipse([cx - r, cy - r * 0.7, cx + r, cy + r * 0.7], fill=color, outline=ink, width=max(1, lw // 2))
        else:
            n = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            d.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for a in ang],
                      fill=color, outline=ink, width=max(1, lw // 2))
    if line_art and rng.random() < 0.5:  # a little pale fill somewhere
        cx, cy, r = rng.uniform(0.2, 0.8) * W, rng.uniform(0.3, 0.6) * H, H * 0.05
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_hsv(hue, 0.15, 0.97), outline=ink, width=lw)

    img = img.resize((iw, ih), Image.BOX)
    if text:
        _draw_burnt_text(img, text)
    arr = np.asarray(img, dtype=np.int16)
    if not line_art:  # paper grain
        arr = arr + rng.integers(-3, 4, size=(ih, iw, 1), dtype=np.int16)
    arr = arr.clip(0, 255).astype(np.uint8)
    if not pillarbox or iw == width:
        return arr
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = (243, 244, 242)
    x = (width - iw) // 2
    frame[:, x:x + iw] = arr
    return frame


def _draw_burnt_text(img, text: str) -> None:
    """Page text in a white band at the bottom of the picture, as in scanned picture books."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    w, h = img.size
    font = _font(max(8, h // 16))
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if line and d.textlength(trial, font=font) > w * 0.92:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    lines = lines[:3]
    step = int(font.size * 1.25) if hasattr(font, "size") else 12
    top = h - step * len(lines) - 6
    d.rectangle([0, top - 3, w, h], fill=(252, 252, 250))
    for i, ln in enumerate(lines):
        d.text((w * 0.04, top + i * step), ln, fill=(20, 20, 20), font=font)


def draw_card(kind: str, seed: int, width: int, height: int, channel: str) -> "np.ndarray":
    """An intro ("Storytime with CHANNEL" and a logo) or outro ("Thanks for watching! Subscribe") card."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, 99, 1 if kind == "intro" else 2])
    bg = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.55, 0.75), rng.uniform(0.45, 0.62))
    img = Image.new("RGB", (width, height), bg)
    d = ImageDraw.Draw(img)
    white = (250, 248, 240)
    if kind == "intro":
        r = height * 0.16
        cx, cy = width * 0.16, height * 0.45
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(252, 210, 70), outline=white, width=2)
        for side, paper in ((-1, white), (1, (235, 235, 225))):  # an open book
            d.polygon([(cx + side * r * 0.6, cy - r * 0.3), (cx, cy - r * 0.1), (cx, cy + r * 0.5),
                       (cx + side * r * 0.6, cy + r * 0.3)], fill=paper)
        title, sub = f"Storytime with {channel}", "read-aloud stories for kids"
        x0 = width * 0.3
        font = _fit_font(d, title, width * 0.66, int(height * 0.1))
        d.text((x0, height * 0.34), title, fill=white, font=font, stroke_width=1, stroke_fill=white)
        d.text((x0, height * 0.52), sub, fill=white, font=_fit_font(d, sub, width * 0.6, int(height * 0.06)))
    else:
        title = "Thanks for watching!"
        font = _fit_font(d, title, width * 0.8, int(height * 0.11))
        tw = d.textlength(title, font=font)
        d.text(((width - tw) / 2, height * 0.25), title, fill=white, font=font, stroke_width=1, stroke_fill=white)
        bw, bh = width * 0.36, height * 0.17
        bx, by = (width - bw) / 2, height * 0.55
        d.rounded_rectangle([bx, by, bx + bw, by + bh], radius=int(bh * 0.3), fill=(204, 24, 30))
        font = _fit_font(d, "SUBSCRIBE", bw * 0.8, int(bh * 0.55))
        tw = d.textlength("SUBSCRIBE", font=font)
        d.text(((width - tw) / 2, by + bh * 0.2), "SUBSCRIBE", fill=(255, 255, 255), font=font)
    return np.asarray(img, dtype=np.uint8).copy()
