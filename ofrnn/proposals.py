"""Category-independent region proposals and box arithmetic for the heart localization layers.

The heart localization layers (Sec. 2) start by generating "category-independent region
proposals" which a Fast R-CNN [9] then classifies (LV or background) and refines. As in the paper
(Sec. 3: "Using selective searches quality mode, we sweep over 2 k proposals per image") the
proposals come from selective search (Uijlings et al., IJCV 2013; OpenCV's
``cv2.ximgproc.segmentation``):

``quality``
    selective search quality mode on the frame at its own resolution (the paper's setting).
``fast``
    selective search fast mode on the frame resized to ``size`` (the detector's ``fast_size``,
    256 px: 240-440 boxes on phantom frames, twice that with the grown ones, in 0.13 s on 2 cores
    with its two colour spaces on two threads, 0.22 s on one), used for whole sequences where the quality sweep
    costs too much.

Selective search groups *segments*; on cine frames a segment is often the bright blood pool
alone, whose box is much smaller than the epicardial LV box. Every proposal is therefore also
offered grown by the factors in ``grow`` about its centre (documented extension; the box
regressor of Fast R-CNN refines whichever proposal wins).

Boxes everywhere are ``(y0, x0, y1, x1)`` in pixels, half-open, like the cohort's ``lv_box``.
This module needs no TensorFlow.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np


MODES = ("quality", "fast")


def normalize_intensity(image, *, percentiles=(1.0, 99.0)):
    """Scale an image robustly to [0, 1] by its own intensity percentiles.

    MR intensities have no absolute unit and vary between scanners, coils and sequences; mapping
    the ``percentiles`` of each image to 0 and 1 (and clipping) lets a detector trained on the
    phantom read real frames.

    Parameters
    ----------
    image : array (..., H, W)
        One frame or a stack; the percentiles are taken over the whole array.
    percentiles : (float, float), keyword-only
        Low and high percentile mapped to 0 and 1.

    Returns
    -------
    float32 array of the same shape, in [0, 1].
    """
    image = np.asarray(image, dtype=np.float32)
    if image.size == 0 or not np.all(np.isfinite(image)):
        raise ValueError("image is empty or holds NaN/inf")
    lo, hi = np.percentile(image, percentiles)
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_square(image, size):
    """Zero-pad an (H, W) image to a centred square and resize it to ``size`` x ``size``.

    Returns the resized image and the factor and offset that map its pixels back:
    ``original = resized * factor - (pad_y, pad_x)``.
    """
    H, W = image.shape
    S = max(H, W)
    factor, offset = square_mapping(image.shape, size)
    py, px = offset.astype(int)
    sq = np.zeros((S, S), dtype=np.float32)
    sq[py:py + H, px:px + W] = image
    interp = cv2.INTER_AREA if S > size else cv2.INTER_LINEAR
    out = cv2.resize(sq, (size, size), interpolation=interp) if S != size else sq
    return out, factor, offset


def square_mapping(shape, size):
    """The factor and offset of :func:`to_square` for an (H, W) image, without resizing it:
    ``original = resized * factor - (pad_y, pad_x)``."""
    H, W = shape
    S = max(H, W)
    return S / size, np.array([(S - H) // 2, (S - W) // 2], dtype=float)


# Fast mode groups two colour spaces of the frame, each on its own (OpenCV's
# switchToSelectiveSearchFast: HSV and Lab, three graph segmentations and two strategies each).
_FAST_COLOUR_SPACES = (cv2.COLOR_BGR2HSV, cv2.COLOR_BGR2Lab)


def _grouping(bgr, mode, colour_space=None):
    """OpenCV selective search of a BGR frame as (x, y, w, h) rects; with ``colour_space``, only
    the fast mode's grouping of that one converted image."""
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    if mode == "quality":
        ss.switchToSelectiveSearchQuality()
    else:
        ss.switchToSelectiveSearchFast()
    if colour_space is not None:
        # OpenCV's switch converted the frame to both spaces; keep its segmentations and strategies
        # and only the one image (the discarded conversion costs well under a millisecond)
        ss.clearImages()
        ss.addImage(cv2.cvtColor(bgr, colour_space))
    return np.asarray(ss.process(), dtype=float).reshape(-1, 4)


def _selective_search(u8, mode):
    bgr = cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)
    if mode == "quality":
        rects = _grouping(bgr, mode)
    else:
        # The two colour spaces' groupings are independent and OpenCV releases the GIL: on two
        # threads they return the same boxes as one call (tests/test_localization.py), 0.13 s
        # against 0.22 s per 256-px phantom frame (side by side, 24 calls each, 2 cores).
        with ThreadPoolExecutor(len(_FAST_COLOUR_SPACES)) as pool:
            rects = np.concatenate(list(pool.map(lambda c: _grouping(bgr, mode, c), _FAST_COLOUR_SPACES)))
    return np.stack([rects[:, 1], rects[:, 0], rects[:, 1] + rects[:, 3], rects[:, 0] + rects[:, 2]], axis=1)


def region_proposals(image, *, mode="fast", size=128, grow=(1.0, 1.6), min_side=6, max_proposals=2000):
    """Category-independent region proposals of one frame by selective search.

    Parameters
    ----------
    image : array (H, W)
        One frame, any intensity scale (normalised robustly inside).
    mode : {"quality", "fast"}, keyword-only
        ``quality``: selective search quality mode at the frame's own resolution (the paper's
        ~2k proposals per image); ``fast``: fast mode on the frame resized to ``size``.
    size : int, keyword-only
        Side the frame is resized to in fast mode.
    grow : tuple of float, keyword-only
        Every proposal is also returned scaled by these factors about its centre (1.0 keeps the
        original), so blood-pool segments also propose the epicardial box around them.
    min_side : float, keyword-only
        Proposals with a side below this many image pixels are dropped.
    max_proposals : int, keyword-only
        At most this many proposals are returned (the largest ones when there are more).

    Returns
    -------
    float array (N, 4)
        Unique boxes (y0, x0, y1, x1) in image pixels, clipped to the image, in lexicographic
        order (reproducible, unlike OpenCV's randomised ranking).

    References
    ----------
    Sec. 2, "Heart localization layers" (category-independent region proposals); Sec. 3
    (selective search quality mode, 2k proposals per image).
    """
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 8:
        raise ValueError(f"a frame must be a 2-D array of at least 8x8 pixels, got shape {image.shape}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    norm = normalize_intensity(image)
    if mode == "fast":
        small, factor, offset = to_square(norm, size)
    else:
        small, factor, offset = norm, 1.0, np.zeros(2)
    u8 = np.round(small * 255).astype(np.uint8)
    boxes = _selective_search(u8, mode)
    boxes = boxes * factor - np.tile(offset, 2)
    boxes = np.concatenate([scale_boxes(boxes, g) for g in grow])
    boxes = clip_boxes(boxes, image.shape)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    boxes = boxes[side >= min_side]
    # OpenCV ranks its proposals with a random number, so their order is not reproducible:
    # return them de-duplicated in a fixed (lexicographic) order, dropping the smallest first
    boxes = unique_boxes(boxes)
    if len(boxes) > max_proposals:
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        boxes = boxes[np.sort(np.argsort(-area, kind="stable")[:max_proposals])]
    return boxes


# -- box arithmetic ----------------------------------------------------------------------------

def unique_boxes(*box_sets):
    """The boxes of all (N_i, 4) sets, each once (to 0.001 pixel), in lexicographic order."""
    return np.unique(np.round(np.concatenate(box_sets), 3), axis=0)


def scale_boxes(boxes, factor):
    """Scale (N, 4) boxes by ``factor`` about their centres."""
    b = np.asarray(boxes, dtype=float)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]) / 2 * factor
    return np.concatenate([c - half, c + half], axis=1)


def clip_boxes(boxes, shape):
    """Clip (N, 4) boxes to an image of ``shape`` (H, W)."""
    b = np.asarray(boxes, dtype=float).copy()
    H, W = shape[:2]
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, H)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, W)
    return b


def box_iou(a, b):
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4) -> (N, M)."""
    a = np.asarray(a, dtype=float).reshape(-1, 4)
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes, scores, *, iou_threshold=0.3, max_output=None):
    """Greedy non-maximum suppression (Fast R-CNN [9], Sec. 3 "detection").

    Returns the indices of the kept boxes, highest score first: a box is dropped when it
    overlaps an already kept, higher-scoring box by IoU above ``iou_threshold``.
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    keep = []
    while order.size and (max_output is None or len(keep) < max_output):
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ov = box_iou(boxes[i], boxes[order[1:]])[0]
        order = order[1:][ov <= iou_threshold]
    return np.asarray(keep, dtype=int)


def box_vote(boxes, scores, best, *, iou_threshold=0.5):
    """Refine the kept box ``best`` by the score-weighted mean of the boxes overlapping it.

    Many proposals around the LV score alike (any IoU >= 0.5 is "LV"), so the single best-scoring
    regressed box is noisy; averaging the regressed boxes that overlap it by IoU >=
    ``iou_threshold``, weighted by score, steadies it (box voting, Gidaris & Komodakis, ICCV 2015).
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    w = np.asarray(scores, dtype=float) * (box_iou(boxes, boxes[best])[:, 0] >= iou_threshold)
    w[best] = max(w[best], 1e-12)
    return (boxes * w[:, None]).sum(0) / w.sum()


def encode_boxes(proposals, targets):
    """Fast R-CNN box-regression targets (t_y, t_x, t_h, t_w) of ``targets`` relative to ``proposals``.

    t_y = (g_cy - p_cy) / p_h, t_x likewise, t_h = log(g_h / p_h), t_w = log(g_w / p_w)
    (R-CNN, Girshick et al. 2014, Appendix C; used unchanged by Fast R-CNN [9]).
    """
    p = np.asarray(proposals, dtype=float).reshape(-1, 4)
    g = np.asarray(targets, dtype=float).reshape(-1, 4)
    ps, gs = p[:, 2:] - p[:, :2], g[:, 2:] - g[:, :2]
    if np.any(ps <= 0) or np.any(gs <= 0):
        raise ValueError("boxes must have positive height and width")
    pc, gc = p[:, :2] + ps / 2, g[:, :2] + gs / 2
    return np.concatenate([(gc - pc) / ps, np.log(gs / ps)], axis=1)


def decode_boxes(proposals, deltas):
    """Inverse of :func:`encode_boxes`: apply (t_y, t_x, t_h, t_w) to ``proposals``."""
    p = np.asarray(proposals, dtype=float).reshape(-1, 4)
    d = np.asarray(deltas, dtype=float).reshape(-1, 4)
    ps = p[:, 2:] - p[:, :2]
    c = p[:, :2] + ps / 2 + d[:, :2] * ps
    s = ps * np.exp(np.clip(d[:, 2:], -4, 4))  # clip: a wild regression must not overflow
    return np.concatenate([c - s / 2, c + s / 2], axis=1)

