"""Global motion features P_g(p) of the discriminate layers (paper Sec. 2, "Fully connected
discriminate layers").

Every pixel p of frame 0 is traced through the sequence by chaining the flows with sub-pixel
(bilinear) sampling: p_0 = p, p_{t+1} = p_t + w_t(p_t). At each traced point p_t (t = 0..T-2) a
3x3 patch of the flow w_t around p_t gives the per-frame features.

Layout (the one place it is defined): ``global_features`` returns (H, W, T-1, F) float32 with
F = :data:`GLOBAL_FEATURES_PER_FRAME` = 3 * patch^2 = 27 for the paper's 3x3 patches, in this
order along the last axis (:data:`GLOBAL_FEATURE_LAYOUT`):

- ``[0:9]``   displacement magnitude |w_t| (pixels),
- ``[9:18]``  orientation, row component  dy / sqrt(|w|^2 + eps^2),
- ``[18:27]`` orientation, column component dx / sqrt(|w|^2 + eps^2),

each patch row-major over the offsets (-1, 0, 1) x (-1, 0, 1) around p_t (row offset first).

Orientation encoding: the paper's "3x3 vector for the orientation" holds the displacement
angle theta, which jumps by 2 pi across the negative x axis and is undefined without motion. We
carry the continuous pair (sin theta, cos theta) instead: for |w| >> eps (= :data:`ORIENTATION_EPS`,
0.1 pixel) the two components are exactly the unit vector of the direction, and they fade
smoothly to 0 where the motion vanishes and the angle means nothing.
"""
from __future__ import annotations

import numpy as np

from ..errors import OfrnnError
from . import _pyramid

#: features per frame for the paper's 3x3 patches: magnitude, orientation dy, orientation dx
GLOBAL_FEATURES_PER_FRAME = 27
#: names of the three 3x3 blocks along the feature axis, in order
GLOBAL_FEATURE_LAYOUT = ("magnitude", "orientation_dy", "orientation_dx")
#: regularisation (pixels) of the orientation components w / sqrt(|w|^2 + eps^2)
ORIENTATION_EPS = 0.1


def trace(flows, points=None):
    """Trace points of frame 0 through the sequence by chaining the flows.

    Parameters
    ----------
    flows : ndarray (T-1, 2, H, W)
        (dy, dx) displacement from frame t to t+1.
    points : ndarray (..., 2), optional
        (y, x) start points in frame 0; every pixel centre when omitted.

    Returns
    -------
    ndarray (T, ..., 2)
        Positions in every frame (frame 0 = the start points); points leaving the image keep
        being displaced by the border's flow.
    """
    flows = np.asarray(flows, dtype=np.float32)
    _, _, H, W = flows.shape
    if points is None:
        points = np.stack(np.mgrid[0:H, 0:W], axis=-1).astype(np.float32)
    p = np.asarray(points, dtype=np.float32)
    out = [p]
    for f in flows:
        d = _pyramid.sample(f, p[None, ..., 0], p[None, ..., 1])
        p = p + np.moveaxis(d, 0, -1)
        out.append(p)
    return np.stack(out)


def global_features(flows, *, patch=3):
    """Per-pixel motion-trajectory features P_g(p) from a sequence of flows (paper Sec. 2).

    Parameters
    ----------
    flows : array_like (T-1, 2, H, W)
        (dy, dx) forward flows of consecutive frames, e.g. from :func:`ofrnn.flow.sequence_flow`.
    patch : int, keyword-only
        Side of the square neighbourhood sampled around each traced point (3 in the paper).

    Returns
    -------
    features : ndarray (H, W, T-1, 3 * patch**2) float32
        Magnitude, orientation-dy and orientation-dx patches per frame, in the layout of the
        module docstring (27 features per frame for ``patch=3``).
    """
    flows = np.asarray(flows, dtype=np.float32)
    if flows.ndim != 4 or flows.shape[1] != 2 or flows.shape[0] < 1:
        raise OfrnnError(f"expected (T-1, 2, H, W) flows, got shape {flows.shape}", field="flows")
    if not np.all(np.isfinite(flows)):
        raise OfrnnError("non-finite flow values; trajectories need a dense flow", field="flows")
    if patch < 1 or patch % 2 == 0:
        raise OfrnnError(f"patch must be a positive odd number, got {patch}", field="patch")
    n, _, H, W = flows.shape
    r = patch // 2
    oy, ox = np.mgrid[-r:r + 1, -r:r + 1].reshape(2, -1).astype(np.float32)
    p = np.stack(np.mgrid[0:H, 0:W], axis=-1).astype(np.float32)  # (H, W, 2)
    out = np.empty((H, W, n, 3 * patch * patch), np.float32)
    k = patch * patch
    for t in range(n):
        yy = p[..., 0, None] + oy
        xx = p[..., 1, None] + ox
        w = _pyramid.sample(flows[t], yy[None], xx[None])  # (2, H, W, k)
        mag = np.hypot(w[0], w[1])
        norm = np.sqrt(mag * mag + ORIENTATION_EPS ** 2)
        out[:, :, t, :k] = mag
        out[:, :, t, k:2 * k] = w[0] / norm
        out[:, :, t, 2 * k:] = w[1] / norm
        # The centre sample of the patch is the flow at p_t: it moves the point to frame t+1.
        p = p + np.stack([w[0][..., k // 2], w[1][..., k // 2]], axis=-1)
    return out
