"""Shared machinery of every variational method: batched resampling, warping, derivatives and the
coarse-to-fine loop that is written once and handed a per-level solver (as in
``skimage.registration._optical_flow_utils.coarse_to_fine``).

Every array here is batched: images ``(B, H, W)``, flows ``(B, 2, H, W)`` with channel 0 = dy
(rows) and channel 1 = dx (columns), so a whole cine sequence is solved as one batch of pairs and
NumPy's per-call overhead is paid once per sequence instead of once per pair.
"""
from __future__ import annotations

import cv2
import numpy as np


# Channels OpenCV takes per call (CV_CN_MAX: 128 in OpenCV 5, 512 before).
_MAX_CHANNELS = 128


def _per_channels(fn, stack, shape, *, chunk=_MAX_CHANNELS):
    """Apply the OpenCV image function ``fn`` to a ``(B, H, W)`` stack, the batch as channels,
    ``chunk`` at a time; ``shape`` is each output image's (h, w)."""
    B = stack.shape[0]
    out = np.empty((B,) + tuple(shape), dtype=stack.dtype)
    for s in range(0, B, chunk):
        r = fn(np.ascontiguousarray(np.moveaxis(stack[s:s + chunk], 0, -1)))
        out[s:s + chunk] = np.moveaxis(r.reshape(tuple(shape) + (-1,)), -1, 0)
    return out


def resize(stack, shape, *, interpolation=cv2.INTER_LINEAR):
    """Resize a ``(B, H, W)`` stack to ``(B, *shape)``; OpenCV treats the batch as channels."""
    _, H, W = stack.shape
    h, w = shape
    if (h, w) == (H, W):
        return stack.copy()
    # area averaging by a non-integer factor takes at most 4 channels per call
    n = 4 if interpolation == cv2.INTER_AREA and (H % h or W % w) else _MAX_CHANNELS
    return _per_channels(lambda c: cv2.resize(c, (w, h), interpolation=interpolation), stack, (h, w), chunk=n)


def resize_flow(flow, shape):
    """Resample a ``(B, 2, H, W)`` flow to ``shape`` and rescale the displacements to the new grid."""
    B, _, H, W = flow.shape
    h, w = shape
    out = resize(flow.reshape(B * 2, H, W), shape).reshape(B, 2, h, w)
    out[:, 0] *= h / H
    out[:, 1] *= w / W
    return out


def gaussian(stack, sigma):
    """Gaussian pre-smoothing of a ``(B, H, W)`` stack (the sigma of Sec. 2 before Eq. 4)."""
    if sigma <= 0:
        return stack
    return _per_channels(lambda c: cv2.GaussianBlur(c, (0, 0), sigmaX=sigma, sigmaY=sigma,
                                                    borderType=cv2.BORDER_REPLICATE), stack, stack.shape[1:])


def median(flow, size):
    """``size`` x ``size`` median filter of each component of a ``(B, 2, H, W)`` flow, edges
    replicated (the filtering step after each warp of Sun, Roth and Black, CVPR 2010); size 0 or 1
    returns the flow unchanged. OpenCV's float median takes sizes 3 and 5 only."""
    if size <= 1:
        return flow
    if size not in (3, 5):
        raise ValueError(f"median size must be 0, 1, 3 or 5, got {size}")
    B, C, H, W = flow.shape
    return _per_channels(lambda c: cv2.medianBlur(c, size), flow.reshape(B * C, H, W), (H, W)).reshape(B, C, H, W)


def warp(stack, flow):
    """Sample ``stack`` (B, H, W) at (y + dy, x + dx), bilinear, edge-clamped.

    Returns the warped stack and a mask of points that fell inside the image: the data terms
    ignore the others (their intensities are extrapolated, not observed).
    """
    B, H, W = stack.shape
    yy = np.arange(H, dtype=np.float32)[:, None] + flow[:, 0]
    xx = np.arange(W, dtype=np.float32)[None, :] + flow[:, 1]
    inside = (yy >= 0) & (yy <= H - 1) & (xx >= 0) & (xx <= W - 1)
    return sample(stack, yy, xx), inside


def sample(stack, yy, xx, *, batch=None):
    """Bilinear samples of ``stack`` (B, H, W) at float coordinates ``yy, xx`` of shape (B, ...),
    or, with ``batch`` (integer image indices broadcastable to ``yy``), of any shape."""
    B, H, W = stack.shape
    yy = np.clip(yy, 0, H - 1)
    xx = np.clip(xx, 0, W - 1)
    y0 = np.minimum(np.floor(yy).astype(np.intp), max(H - 2, 0))
    x0 = np.minimum(np.floor(xx).astype(np.intp), max(W - 2, 0))
    wy = (yy - y0).astype(stack.dtype)
    wx = (xx - x0).astype(stack.dtype)
    if batch is None:
        base = (np.arange(B, dtype=np.intp) * (H * W)).reshape((B,) + (1,) * (yy.ndim - 1))
    else:
        base = np.asarray(batch, dtype=np.intp) * (H * W)
    flat = stack.reshape(-1)
    i00 = base + y0 * W + x0
    dy = W if H > 1 else 0
    dx = 1 if W > 1 else 0
    top = flat[i00] * (1 - wx) + flat[i00 + dx] * wx
    bot = flat[i00 + dy] * (1 - wx) + flat[i00 + dy + dx] * wx
    return top * (1 - wy) + bot * wy


def derivatives(stack):
    """x and y derivatives of a (B, H, W) stack with the 5-point stencil [1, -8, 0, 8, -1] / 12
    (the one DeepFlow uses), edges replicated."""
    # each axis padded on its own by repeating its edge twice (np.pad's "edge" mode, at a fraction
    # of its per-call cost)
    c = np.concatenate([stack[:, :, :1], stack[:, :, :1], stack, stack[:, :, -1:], stack[:, :, -1:]], axis=2)
    dx = (c[:, :, :-4] - 8 * c[:, :, 1:-3] + 8 * c[:, :, 3:-1] - c[:, :, 4:]) / 12
    r = np.concatenate([stack[:, :1], stack[:, :1], stack, stack[:, -1:], stack[:, -1:]], axis=1)
    dy = (r[:, :-4] - 8 * r[:, 1:-3] + 8 * r[:, 3:-1] - r[:, 4:]) / 12
    return dx, dy


def pyramid_shapes(shape, *, downscale, min_size, max_levels):
    """Level shapes from fine to coarse: each ``downscale`` times the previous, none below
    ``min_size`` pixels on its shorter side."""
    H, W = shape
    shapes = [(H, W)]
    while len(shapes) < max_levels:
        h, w = shapes[-1]
        nh, nw = int(round(h * downscale)), int(round(w * downscale))
        if min(nh, nw) < min_size or (nh, nw) == (h, w):
            break
        shapes.append((nh, nw))
    return shapes


def coarse_to_fine(reference, moving, solver, *, downscale=0.5, min_size=16, max_levels=10, init=None):
    """Coarse-to-fine estimation with warping, the per-level work delegated to ``solver``.

    Parameters
    ----------
    reference, moving : ndarray (B, H, W)
        Batches of first and second images.
    solver : callable
        ``solver(reference_k, moving_k, flow_k, level) -> flow_k`` refines the (B, 2, h, w) flow at
        pyramid level ``level`` (0 = finest) given the images resampled to that level.
    downscale : float
        Size ratio between consecutive levels (< 1).
    min_size : int
        Coarsest level's shorter side is at least this.
    max_levels : int
        At most this many levels.
    init : ndarray (B, 2, H, W), optional
        Initial flow at full resolution (zero when omitted).

    Returns
    -------
    flow : ndarray (B, 2, H, W)
    """
    B, H, W = reference.shape
    shapes = pyramid_shapes((H, W), downscale=downscale, min_size=min_size, max_levels=max_levels)
    # Area averaging before subsampling: the anti-aliasing a Gaussian pyramid would give.
    ref = [reference] + [resize(reference, s, interpolation=cv2.INTER_AREA) for s in shapes[1:]]
    mov = [moving] + [resize(moving, s, interpolation=cv2.INTER_AREA) for s in shapes[1:]]
    if init is None:
        flow = np.zeros((B, 2) + shapes[-1], dtype=reference.dtype)
    else:
        flow = resize_flow(np.asarray(init, dtype=reference.dtype), shapes[-1])
    for level in range(len(shapes) - 1, -1, -1):
        if flow.shape[-2:] != shapes[level]:
            flow = resize_flow(flow, shapes[level])
        flow = solver(ref[level], mov[level], flow, level)
    return flow
