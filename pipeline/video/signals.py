"""What the page detector measures on every decoded frame, cheaply: a small grey signature,
sharpness, skin-coloured cells (a hand), and how two signatures differ once exposure and a small
camera motion are taken out (:mod:`pipeline.video.keyframes` decides pages from these).
"""

from __future__ import annotations

import numpy as np

BLUR = 1.5  # signature cells: the smoothing before motion and exposure are taken out
PAIR_GAIN = 0.15  # exposure gain taken out between two still runs
MAX_SHIFT = 1.5  # camera shift (signature pixels) taken out of one frame's change
BLEND_MAX = 0.25  # a gap whose frames all fit a mix of its two sides this well is a blend


EIGHT_BIT_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


def luma(frame) -> np.ndarray:
    """The luma plane of an 8-bit yuv frame as a (height, width) uint8 view, no conversion (any other
    pixel format, a 10-bit video say, is converted)."""
    if frame.format.name not in EIGHT_BIT_YUV:
        return frame.to_ndarray(format="gray")
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]


def sharpness(luma: np.ndarray) -> float:
    """Variance of the Laplacian of the half-size luma (area-averaged: sensor noise mostly averages out)."""
    import cv2

    h, w = luma.shape
    half = cv2.resize(luma, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    _, std = cv2.meanStdDev(cv2.Laplacian(half, cv2.CV_16S))
    return float(std[0, 0] ** 2)


def skin_cells(frame, signature: "Signature", luma: np.ndarray) -> np.ndarray | None:
    """Cells of the signature grid whose colour is skin-like (a hand), from a planar YUV frame.

    Chroma is divided by luma, so that an exposure change does not move a cell in or out (a
    wooden table is skin-coloured: it must stay so in every frame, and cancel out).
    """
    import cv2

    planes = frame.planes
    if len(planes) < 3:
        return None
    chroma = []
    for plane in planes[1:3]:
        data = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        sy, sx = frame.height / plane.height, frame.width / plane.width  # 2 and 2 for 4:2:0
        rows = slice(int(signature.rows.start / sy), int(signature.rows.stop / sy))
        cols = slice(int(signature.cols.start / sx), int(signature.cols.stop / sx))
        crop = data[rows, cols]
        chroma.append(cv2.resize(crop, (signature.aw, signature.ah), interpolation=cv2.INTER_AREA).astype(np.float32))
    y = np.maximum(luma.astype(np.float32) - 16.0, 24.0)
    cb, cr = (chroma[0] - 128.0) / y, (chroma[1] - 128.0) / y
    return (cr >= 0.07) & (cr <= 0.5) & (cb >= -0.45) & (cb <= -0.02) & (cr - cb >= 0.15) & (luma >= 40)


class Signature:
    """Small grey signature of a frame: centre crop, every step-th row, then an integer-factor area average.

    The row step keeps at least 4 sampled rows a cell; the crop is the largest that an integer
    area factor fits (at least 90 % of the width at 480p and 1080p, all of it at 320x180).
    Integer factors let OpenCV's fast area path run (about 30 us a frame at 480p) straight on
    the decoder's rows, and averaging whole rows (every column) plus the 4-row average remove
    most of the aliasing that would make a slow zoom or a drifting camera look like change.
    """

    def __init__(self, width: int, height: int, analysis_width: int):
        self.aw = analysis_width
        self.ah = max(8, int(round(analysis_width * height / max(width, 1))))
        self.step = max(1, min(width // (self.aw * 4), height // (self.ah * 4)))
        # the largest integer area factor (4 or more) that fits: the crop covers most of the frame
        factor = max(1, min(width // self.step // self.aw, height // self.step // self.ah))
        crop_h = min(height, self.ah * factor * self.step)
        crop_w = min(width, self.aw * factor * self.step)
        self.rows = slice((height - crop_h) // 2, (height - crop_h) // 2 + crop_h, self.step)
        self.cols = slice((width - crop_w) // 2, (width - crop_w) // 2 + crop_w)

    def __call__(self, luma: np.ndarray) -> np.ndarray:
        import cv2

        # every step-th row, whole rows (a view: no copy); OpenCV's integer area path averages
        # step x factor columns and factor rows per cell
        return cv2.resize(luma[self.rows, self.cols], (self.aw, self.ah), interpolation=cv2.INTER_AREA)


def smooth(signature: np.ndarray) -> np.ndarray:
    """A signature as float32, blurred by 1.5 cells: what a few pixels of camera motion leave
    comparable (the subsampled signature alone aliases: a 1-pixel shift moves it by ~1.4 grey)."""
    import cv2

    return cv2.GaussianBlur(signature.astype(np.float32), (7, 7), BLUR)


def residual(prev: np.ndarray, cur: np.ndarray, max_gain: float, max_shift: float) -> tuple[np.ndarray, float]:
    """``cur - prev`` (smoothed signatures) less the best exposure offset and gain and camera shift,
    and the mean absolute difference before that (offset removed).

    One least-squares step: the difference is fitted by an offset, a gain (``prev`` about its
    mean) and a shift (the gradients of the two frames' mean); the gain and the shift are capped,
    so that what they cannot explain (a fade step, a cut, a hand) stays in the residual.
    """
    import cv2

    diff = cur - prev
    diff -= cv2.mean(diff)[0]
    base = prev - cv2.mean(prev)[0]
    mid = prev + cur
    # central differences of the two frames' sum (4x the gradient of their mean; 0 on the border)
    gx, gy = np.zeros_like(mid), np.zeros_like(mid)
    np.subtract(mid[:, 2:], mid[:, :-2], out=gx[:, 1:-1])
    np.subtract(mid[2:], mid[:-2], out=gy[1:-1])
    max_shift /= 4.0
    b, x, y, d = base.ravel(), gx.ravel(), gy.ravel(), diff.ravel()
    dot = np.dot
    ridge = 1e-3 * d.size
    a11, a12, a13 = float(dot(b, b)) + ridge, float(dot(b, x)), float(dot(b, y))
    a22, a23, a33 = float(dot(x, x)) + ridge, float(dot(x, y)), float(dot(y, y)) + ridge
    r1, r2, r3 = float(dot(b, d)), float(dot(x, d)), float(dot(y, d))
    raw = cv2.norm(diff, cv2.NORM_L1) / diff.size
    c11, c12, c13 = a22 * a33 - a23 * a23, a13 * a23 - a12 * a33, a12 * a23 - a13 * a22
    det = a11 * c11 + a12 * c12 + a13 * c13
    if abs(det) < 1e-9:
        return diff, raw
    # Cramer's rule with the (symmetric) cofactors
    c22, c23, c33 = a11 * a33 - a13 * a13, a12 * a13 - a11 * a23, a11 * a22 - a12 * a12
    gain = min(max((c11 * r1 + c12 * r2 + c13 * r3) / det, -max_gain), max_gain)
    sx = min(max((c12 * r1 + c22 * r2 + c23 * r3) / det, -max_shift), max_shift)
    sy = min(max((c13 * r1 + c23 * r2 + c33 * r3) / det, -max_shift), max_shift)
    res = cv2.scaleAdd(base, -gain, diff)
    res = cv2.scaleAdd(gx, -sx, res)
    return cv2.scaleAdd(gy, -sy, res), raw


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two signatures, an exposure offset taken out."""
    import cv2

    diff = b.astype(np.float32) - a.astype(np.float32)
    diff -= cv2.mean(diff)[0]
    return cv2.norm(diff, cv2.NORM_L1) / diff.size


def explained(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """How far apart two signatures are once smoothed, with exposure and a camera shift taken out,
    and the fraction of their smoothed difference that exposure and camera shift explain."""
    import cv2

    res, raw = residual(smooth(a), smooth(b), PAIR_GAIN, MAX_SHIFT)
    left = float(cv2.norm(res, cv2.NORM_L1)) / res.size
    return left, (1.0 - left / raw if raw > 1e-6 else 1.0)


def is_blend(before: np.ndarray | None, frames: list[np.ndarray], after: np.ndarray) -> bool:
    """True when every frame of a gap is close to ``x * before + y * after + z`` (a cut, a cross-fade,
    an exposure step): the residual of the best such mix stays under ``BLEND_MAX`` of the distance
    between the two sides. A hand or a turning leaf is motion, not a mix. Smoothed signatures."""
    if before is None or not frames:
        return True
    a = before.ravel() - float(before.mean())
    b = after.ravel() - float(after.mean())
    limit = BLEND_MAX * max(float(np.abs(b - a).mean()), 2.0)
    ridge = 1e-3 * a.size
    aa, ab, bb = float(a @ a) + ridge, float(a @ b), float(b @ b) + ridge
    det = aa * bb - ab * ab
    for sig in frames:
        f = sig.ravel() - float(sig.mean())
        fa, fb = float(f @ a), float(f @ b)
        x, y = (bb * fa - ab * fb) / det, (aa * fb - ab * fa) / det
        if float(np.abs(f - x * a - y * b).mean()) > limit:
            return False
    return True
