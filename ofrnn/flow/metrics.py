"""Flow accuracy: Barron et al.'s angular error, end-point error and density.

Flows are (2, H, W) or (..., 2, H, W) arrays (dy, dx); NaN marks pixels a sparse method left
unestimated. Errors are averaged over pixels that are inside ``mask`` and estimated.
"""
from __future__ import annotations

import numpy as np


def angular_error(flow, truth):
    """Per-pixel spatio-temporal angular error in degrees (Barron, Fleet & Beauchemin, IJCV 1994):
    the angle between (u, v, 1) and (u_gt, v_gt, 1)."""
    v, u = flow[..., 0, :, :], flow[..., 1, :, :]
    vg, ug = truth[..., 0, :, :], truth[..., 1, :, :]
    num = u * ug + v * vg + 1.0
    den = np.sqrt((u * u + v * v + 1.0) * (ug * ug + vg * vg + 1.0))
    return np.degrees(np.arccos(np.clip(num / den, -1.0, 1.0)))


def endpoint_error(flow, truth):
    """Per-pixel Euclidean distance between the flow vectors, in pixels."""
    return np.hypot(flow[..., 0, :, :] - truth[..., 0, :, :], flow[..., 1, :, :] - truth[..., 1, :, :])


def _select(flow, mask):
    est = np.all(np.isfinite(flow), axis=-3)
    if mask is None:
        mask = np.ones(est.shape, bool)
    mask = np.broadcast_to(np.asarray(mask, bool), est.shape)
    return est & mask, mask


def density(flow, mask=None):
    """Fraction of the masked pixels where the flow is estimated (finite)."""
    sel, mask = _select(flow, mask)
    n = int(mask.sum())
    return float(sel.sum()) / n if n else float("nan")


def aae(flow, truth, mask=None):
    """Average angular error (degrees) over estimated pixels in ``mask``; NaN if there are none."""
    sel, _ = _select(flow, mask)
    return float(angular_error(flow, truth)[sel].mean()) if sel.any() else float("nan")


def epe(flow, truth, mask=None):
    """Average end-point error (pixels) over estimated pixels in ``mask``; NaN if there are none."""
    sel, _ = _select(flow, mask)
    return float(endpoint_error(flow, truth)[sel].mean()) if sel.any() else float("nan")
