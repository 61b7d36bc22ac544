"""Deep optical flow of OF-RNN (paper Sec. 2, Eqs. 4-7): deep matching + variational refinement.

:func:`deep_flow` estimates the forward displacement of one image pair; :func:`sequence_flow` of
every consecutive pair of a cine, solved as one batch (the same arithmetic, NumPy's per-call
overhead paid once per sequence).

Default parameters
------------------
Start: the DeepFlow authors' published settings (Weinzaepfel et al. ICCV 2013 and the deepflow2
release; Revaud et al. IJCV 2016 for the matching): alpha = 1, beta = 32, gamma = 0.71, delta = 0
(images in [0, 255]), presmoothing sigma = 0.8, eps = 0.001, 5 fixed-point iterations with 25
solver sweeps per level; matching with 4x4 atomic patches up to N = 16, rectification
lambda = 1.4, images downscaled by 2. The defaults below were then chosen by a coordinate search
on a separately simulated *training* cohort (seed 1001, never the evaluation cohort; ``make
flow-tune``, results/flow/tuning.md), myocardium AAE on 64x64 LV ROIs:

- ``beta = 0`` (``beta_decay = 1``): the matching weight was chosen on all three training sets
  (``make flow-tune`` profile ``tune-matching``, results/flow/tuning-matching.md): the training
  cohort, FlyingChairs pairs 0000000-0000002 and flow/tiny, with the rule "beta > 0 only if it
  lowers the error on every set". With the verified sub-pixel matches of
  :func:`ofrnn.flow.matching.deep_matches` no beta > 0 passes. The best on average (0.25,
  decaying) lowers the cohort AAE by 0.7 % and the FlyingChairs EPE by 0.2 %, leaves flow/tiny
  unchanged (one pyramid level at 50x50, where a decaying weight is zero) and costs 3-4x the
  time; beta = 4 lowers the FlyingChairs EPE by 1.5 % (1.9 % with a 2-pixel consistency
  tolerance) but raises the cohort AAE by 8 %, a constant weight by 73 %. On 64x64 ROIs the motion
  is below ~1.5 px per frame: the verified, refined matches are off by 0.32 px where the
  variational flow alone is off by 0.11 px (same pixels, 4 training subjects), so any pull
  towards them costs accuracy; on FlyingChairs most of the remaining error sits on large,
  weakly textured chairs where the matches are missing or wrong too. So the default leaves the
  matching off; ``beta > 0`` turns it on with the same rule-based search range, and the
  benchmark reports it as "deep+matching".
- ``eps = 0.01`` (was 0.001): a softer Psi, better on noisy MR intensities (6.06 -> 5.80 deg);
- ``min_size = 32`` with ratio 0.5 (two levels on a 64x64 ROI; DeepFlow: ratio 0.95 down to 25 px),
  4 fixed-point iterations with 15 conjugate-gradient iterations each in place of 5 x 25 SOR
  sweeps (CG converges in far fewer iterations on these stiff systems; same minimiser, see the
  tests): 5.75 deg at a third of the time.

One parameter set: these defaults run unchanged on every benchmark of ``make flow-bench``, 64x64
cardiac ROIs, 512x384 FlyingChairs frames, the motorcycle pair and Sunnybrook / ACDC crops; on
the FlyingChairs training pairs they give EPE 3.13 px against 3.60 for OpenCV's DeepFlow and
6.67 for the former large-motion settings (matching at 1/4 resolution, constant beta = 1).
"""
from __future__ import annotations

import numpy as np

from ..errors import OfrnnError
from . import _pyramid, matching, variational

#: keyword defaults of :func:`deep_flow` / :func:`sequence_flow`
DEFAULTS = dict(
    alpha=1.0, beta=0.0, beta_decay=1.0, gamma=0.71, delta=0.0, sigma=0.8, eps=0.01,
    downscale=0.5, min_size=32, n_outer=4, n_iter=15,
    match_size=96, match_range=0.25, max_patch=16, n_starts=3, consistency=1.0, min_ncc=0.95,
)


def check_pair(reference, moving, *, names=("reference", "moving")):
    """Validate an image pair: 2-D, same shape, finite. Raises :class:`OfrnnError` naming the field."""
    reference = np.asarray(reference)
    moving = np.asarray(moving)
    for name, im in zip(names, (reference, moving)):
        if im.ndim != 2 or min(im.shape) < 8:
            raise OfrnnError(f"expected a 2-D image of at least 8x8 pixels, got shape {im.shape}", field=name)
        if not np.issubdtype(im.dtype, np.number) or np.issubdtype(im.dtype, np.complexfloating):
            raise OfrnnError(f"expected real numbers, got dtype {im.dtype}", field=name)
        if not np.all(np.isfinite(im)):
            raise OfrnnError(f"{int((~np.isfinite(im)).sum())} non-finite value(s) (NaN or inf)", field=name)
    if reference.shape != moving.shape:
        raise OfrnnError(f"size mismatch: {reference.shape} vs {moving.shape}", field=names[1])
    return reference, moving


def to_255(stack):
    """Scale a stack jointly to [0, 255] (robust 0.5-99.5 percentiles): the intensity range
    DeepFlow's constants (zeta, eps, alpha) were set for."""
    stack = np.asarray(stack, dtype=np.float32)
    lo, hi = np.percentile(stack, [0.5, 99.5])
    if hi <= lo:
        return np.zeros_like(stack)
    return np.clip((stack - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.float32)


def _deep_flow_batch(reference, moving, *, alpha, beta, beta_decay, gamma, delta, sigma, eps, downscale, min_size,
                     n_outer, n_iter, **match):
    """Deep flow of (B, H, W) pairs already scaled to [0, 255]; returns (B, 2, H, W) (dy, dx)."""
    B, H, W = reference.shape
    match_flow = conf = None
    if beta > 0:
        match_flow, conf = matching.deep_matches(reference, moving, **match)
    n_levels = len(_pyramid.pyramid_shapes((H, W), downscale=downscale, min_size=min_size, max_levels=10))
    ref = _pyramid.gaussian(reference, sigma)
    mov = _pyramid.gaussian(moving, sigma)

    def solver(r, m, flow, level):
        mf = mc = None
        if match_flow is not None:
            mf = _pyramid.resize_flow(match_flow, r.shape[-2:]) if level else match_flow
            mc = _pyramid.resize(conf, r.shape[-2:]) if level else conf
        # DeepFlow's decreasing matching weight beta_k = beta (k / k_max)^bk, k = 0 the finest level:
        # the matches are only pixel-accurate, so they guide the coarse levels and let the data
        # term decide the sub-pixel motion at the fine ones.
        beta_k = beta * (level / max(n_levels - 1, 1)) ** beta_decay
        return variational._refine_level(r, m, flow, alpha=alpha, beta=beta_k, gamma=gamma, delta=delta,
                                         n_outer=n_outer, n_iter=n_iter, eps=eps, match_flow=mf, match_weight=mc)

    return _pyramid.coarse_to_fine(ref, mov, solver, downscale=downscale, min_size=min_size)


def deep_flow(reference, moving, **params):
    """Deep optical flow between two images (paper Sec. 2, Eqs. 4-7).

    Parameters
    ----------
    reference, moving : array_like (H, W)
        First and second image (any real dtype; scaled jointly to [0, 255]).
    alpha : float, keyword-only
        Smoothness weight of Eq. 4 (default 1.0).
    beta : float, keyword-only
        Matching-term weight of Eq. 4 (default 0.0 for small cardiac motion, see above; DeepFlow
        uses 32); 0 skips the deep matching.
    beta_decay : float, keyword-only
        DeepFlow's ``bk``: the weight at pyramid level k (0 = finest) is beta (k / k_max)^bk.
    gamma, delta : float, keyword-only
        Gradient and brightness constancy weights of Eq. 5 (defaults 0.71, 0.0).
    sigma : float, keyword-only
        Gaussian pre-smoothing of both images (default 0.8).
    eps : float, keyword-only
        Robust penaliser Psi(s^2) = sqrt(s^2 + eps^2) of every term (default 0.01).
    downscale, min_size : keyword-only
        Pyramid ratio between levels and the coarsest level's shorter side (0.5, 32).
    n_outer, n_iter : int, keyword-only
        Fixed-point iterations per level and conjugate-gradient iterations per fixed point (4, 15).
    match_size, match_range : keyword-only
        The matching's resolution (shorter side at most ``match_size`` px) and search range (a
        fraction of that side), the rule of :func:`ofrnn.flow.matching.search_range` (96, 0.25).
    max_patch, n_starts : keyword-only
        Top-level patch size N (the 4/8/16 pyramid) and maxima per top patch the backtracking
        starts from (16, 3).
    consistency, min_ncc : keyword-only
        Forward-backward tolerance (matching pixels) and smallest normalised cross-correlation of
        a refined match (1.0, 0.95); see :func:`ofrnn.flow.matching.deep_matches`.

    Returns
    -------
    flow : ndarray (2, H, W) float32
        Forward displacement (dy, dx): the point at (y, x) of ``reference`` is at
        (y + dy, x + dx) in ``moving``.

    References
    ----------
    Xu et al., MICCAI 2017, Eqs. 4-7; Weinzaepfel et al., "DeepFlow", ICCV 2013; Revaud et al.,
    "DeepMatching", IJCV 2016.
    """
    reference, moving = check_pair(reference, moving)
    p = {**DEFAULTS, **params}
    stack = to_255(np.stack([reference, moving]))
    return _deep_flow_batch(stack[:1], stack[1:], **p)[0]


def sequence_flow(cine, **params):
    """Deep flow between every pair of consecutive frames of a cine.

    Parameters
    ----------
    cine : array_like (T, H, W)
        T >= 2 frames, scaled jointly to [0, 255].
    **params
        As :func:`deep_flow`.

    Returns
    -------
    flows : ndarray (T-1, 2, H, W) float32
        ``flows[t]`` is the (dy, dx) displacement from frame t to frame t+1.
    """
    cine = np.asarray(cine)
    if cine.ndim != 3 or cine.shape[0] < 2:
        raise OfrnnError(f"expected a (T, H, W) cine with T >= 2, got shape {cine.shape}", field="cine")
    check_pair(cine[0], cine[1], names=("cine", "cine"))
    if not np.all(np.isfinite(cine)):
        raise OfrnnError("non-finite value(s) (NaN or inf)", field="cine")
    p = {**DEFAULTS, **params}
    stack = to_255(cine)
    return _deep_flow_batch(stack[:-1], stack[1:], **p)
