"""Rectifying a filmed book's page: find the paper's quadrilateral in a frame and warp it flat.

Used by the page detector (:mod:`pipeline.video.keyframes`) when ``keyframes.rectify`` is on: the
chosen frame of a page becomes the page seen from straight above, the table cropped away and a
blank facing page dropped. When no clean quadrilateral is found the frame stays as it is, and only
a rectified frame carries the flag ``rectified``.
"""

from __future__ import annotations

import numpy as np

FLAG_RECTIFIED = "rectified"  # the page's quadrilateral was found and warped flat


def _order_corners(points: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left."""
    points = points.reshape(4, 2).astype(np.float32)
    s, d = points.sum(axis=1), np.diff(points, axis=1).ravel()
    return np.array([points[np.argmin(s)], points[np.argmin(d)], points[np.argmax(s)], points[np.argmax(d)]],
                    np.float32)


def _quad_ok(quad: np.ndarray, frame_area: float) -> bool:
    """A plausible page: convex, a fair part of the frame, corners between 55 and 125 degrees."""
    import cv2

    if len({tuple(p) for p in quad.round(1).tolist()}) < 4 or not cv2.isContourConvex(quad.reshape(-1, 1, 2)):
        return False
    if cv2.contourArea(quad) < 0.12 * frame_area:
        return False
    for i in range(4):
        a, b, c = quad[i - 1], quad[i], quad[(i + 1) % 4]
        u, v = a - b, c - b
        cos = float(np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-6))
        if not -0.58 <= cos <= 0.58:
            return False
    return True


def _paper_quad(rgb: np.ndarray) -> np.ndarray | None:
    """The largest bright, low-saturation quadrilateral (the book's paper) in ``rgb``, in its pixels."""
    import cv2

    h, w = rgb.shape[:2]
    scale = 320.0 / max(w, h)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    # paper: bright and little colour; the table and the covers are darker or coloured
    paperness = cv2.GaussianBlur(hsv[:, :, 2].astype(np.int16) - hsv[:, :, 1].astype(np.int16), (5, 5), 0)
    paperness = paperness.clip(0, 255).astype(np.uint8)
    level, _ = cv2.threshold(paperness, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (paperness >= level).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    area = cv2.contourArea(hull)
    if area < 0.12 * small.shape[0] * small.shape[1]:
        return None
    # a book lies on a table: its paper does not run off the frame (a bright sky in an
    # illustration that fills the frame does)
    sh, sw = small.shape[:2]
    xs, ys = hull[:, 0, 0], hull[:, 0, 1]
    edge = max(2, round(0.01 * max(sw, sh)))
    if xs.min() < edge or ys.min() < edge or xs.max() > sw - 1 - edge or ys.max() > sh - 1 - edge:
        return None
    perimeter = cv2.arcLength(hull, True)
    for eps in (0.01, 0.02, 0.03, 0.045, 0.06):
        approx = cv2.approxPolyDP(hull, eps * perimeter, True)
        if len(approx) == 4:
            quad = _order_corners(approx)
            # the quadrilateral must be the paper: it covers the hull and the hull covers it
            if cv2.contourArea(quad) < 0.93 * area or cv2.contourArea(quad) > 1.07 * area:
                return None
            if not _quad_ok(quad, small.shape[0] * small.shape[1]):
                return None
            return quad / scale
        if len(approx) < 4:
            return None
    return None


def _detail(grey: np.ndarray) -> float:
    """How much a (page's) picture shows: grey-level texture once sensor noise and lighting are smoothed out."""
    import cv2

    h, w = grey.shape
    scale = 160.0 / max(h, w)
    small = cv2.resize(grey, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    fine = cv2.GaussianBlur(small, (3, 3), 0)
    light = cv2.GaussianBlur(small, (0, 0), 8)
    return float(np.abs(fine - light).mean())


def rectify_page(rgb: np.ndarray) -> np.ndarray | None:
    """The book's page in ``rgb`` warped flat, the table cropped; None without a clean quadrilateral.

    The paper quadrilateral (one page, or an open spread) is found on a small copy, ordered and
    checked (convex, a fair part of the frame, near-right corners), and warped to a rectangle
    whose sides are the mean lengths of the opposite edges. A spread wider than tall is split at
    its darkest column near the middle (the spine); a half with almost no detail (a blank facing
    page) is dropped.
    """
    import cv2

    quad = _paper_quad(rgb)
    if quad is None:
        return None
    tl, tr, br, bl = quad
    width = int(round((np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2))
    height = int(round((np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2))
    if width < 16 or height < 16:
        return None
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    flat = cv2.warpPerspective(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if width > 1.15 * height:  # a spread: split at the spine, drop a blank facing page
        grey = cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY)
        lo, hi = int(0.45 * width), int(0.55 * width)  # the fold is the middle of a symmetric spread
        spine = lo + int(np.argmin(cv2.blur(grey, (3, 3)).mean(axis=0)[lo:hi]))
        left, right = flat[:, :spine], flat[:, spine:]
        detail = [_detail(grey[:, :spine]), _detail(grey[:, spine:])]
        if min(detail) < 0.3 * max(detail):
            flat = left if detail[0] > detail[1] else right
    return np.ascontiguousarray(flat)
