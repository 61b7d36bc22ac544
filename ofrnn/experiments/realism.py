"""Phantom realism: how far the simulated cine is from real short-axis cines, measured.

Run with ``make realism`` (``ofrnn experiment realism``; settings ``experiments/realism.toml``).
The simulated frames (the cohort of ``make data``) are set beside real bSSFP cines of Sunnybrook
(Radau et al., MIDAS Journal 2009) and ACDC (Bernard et al., IEEE TMI 2018), read-only from
``../shared/data`` (each set is skipped, with the reason, when absent). Measured:

* **galleries** of simulated and real frames, whole and heart-centred;
* **tissue intensity ratios**: LV myocardium / LV blood (ACDC labels, Sunnybrook contours, the
  phantom's masks); the LV blood pool's percentile among body pixels; the body's intensity
  quantiles relative to blood; the share of bright body pixels (>= 0.7 x blood: fat and fluid in
  bSSFP). Real frames carry no labels for fat, liver, muscle or lung, so those tissues enter only
  through the body's intensity distribution; the phantom's own per-tissue bSSFP signals are
  tabled beside it (:func:`ofrnn.simulate.mri.signal_table`); and the whole frame's shares by level
  over blood, with its 99th percentile over blood (:func:`level_shares`), which put the texture
  statistics' intensity axis in tissue terms;
* **geometry**: the LV's epicardial diameter relative to the field of view, the body's share of
  the field of view, and the in-plane orientation (direction from the LV centre to the RV; ACDC
  labels, and the phantom's septal AHA segments; Sunnybrook has no RV contours), the direction
  and distance (in LV diameters) of the nearest skin (:func:`nearest_skin`: how the oblique plane
  lies in the chest, and how far the chest wall is), and the frame's short over long side (a
  rectangular field of view);
* **texture**: intensity, gradient-magnitude and uniform local-binary-pattern histograms (Ojala
  et al., IEEE TPAMI 24:971 (2002)) and radial power spectra;
* **separability**: real-vs-simulated classifiers, whose ROC AUC is the headline (0.5: the
  frames cannot be told apart; lower is better). A logistic regression on the statistics above,
  and a small CNN on whole frames and on heart-centred crops. The single statistics that separate
  best on the frames one may tune on (:func:`separating_statistics`) say what to mend next, and
  the statistics the logistic regression of all of them leans on (:func:`classifier_leaning`) say
  why mending one family at a time may not lower its AUC.

**Split.** Real frames are split by patient (``[split]``): calibration (ACDC 061-080, Sunnybrook
SC-HF-I-1) may be fitted, evaluation (the other patients) is only scored. Each classifier is
trained on the calibration real frames and part of the simulated subjects, and scores the held-out
simulated subjects and the evaluation real frames of its fold (cross-fitting: simulated and
evaluation subjects are both dealt into folds, and each frame is scored by one model, that of its
fold). The AUC's 95 % interval is a bootstrap over subjects.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .._version import __version__
from ..errors import OfrnnError
from ..files import atomic_write_text, pyplot, save_figure, write_json
from ..simulate.mri import MT_RANGE
from . import resolve_config
from .realdata import SHARED, acdc_sequences, is_calibration, sunnybrook_sequences

REPO = Path(__file__).resolve().parents[2]
#: AHA segments of the interventricular septum (Cerqueira et al., Circulation 105:539 (2002))
SEPTAL_SEGMENTS = (2, 3, 8, 9, 14)
#: body pixels at least this bright relative to the LV blood pool count as "bright tissue", those
#: below DARK as lung or gas (the level at which :func:`body_mask` draws the body's regions)
BRIGHT, DARK = 0.7, 0.15
#: body intensity quantiles reported relative to the LV blood pool
BODY_QUANTILES = (10, 25, 50, 75, 90)
#: the statistics' families, in the order of the classifier's features
STATISTICS = ("intensity", "gradient", "lbp", "spectrum")
#: upper ends of the intensity (over the 99th percentile) and gradient-magnitude histograms
INTENSITY_MAX, GRADIENT_MAX = 1.25, 0.3
#: the per-frame intensity measures of :func:`tissue_measures`, with their report labels
TISSUE_LABELS = {"myocardium_blood": "myocardium / blood", "snr": "blood / noise",
                 "blood_percentile": "blood percentile in body",
                 **{f"body_q{q}": f"body q{q} / blood" for q in BODY_QUANTILES},
                 "bright_share": "bright share", "dark_share": "dark share", "body_fraction": "body share of FOV",
                 "air_blood": "air / blood", "blood_core_rim": "blood core / rim",
                 "blood_spread": "blood IQR / median"}
#: the report's number format of a tissue measure (the rest: two decimals)
TISSUE_FORMATS = {"blood_percentile": "{:.1f}", "snr": "{:.1f}", "air_blood": "{:.3f}"}
#: depths (pixels from the LV blood pool's contour) of :func:`blood_depth_measures`: the rim
#: [RIM_DEPTH), clear of the contour's own pixel, and the core from CORE_DEPTH inwards
RIM_DEPTH, CORE_DEPTH = (2, 4), 6
#: inner edges (pixels) of the depth bins of the blood pool's profile (:func:`blood_depth_measures`)
#: and of the distance bins of the air's profile beside the body (:func:`air_distance_profile`);
#: the last bin of each is open
BLOOD_DEPTH_EDGES = (1, 2, 3, 4, 6, 8, 11)
AIR_DISTANCE_EDGES = (1, 4, 8, 16, 32, 64)
#: the per-frame profile keys, in bin order
PROFILE_KEYS = dict(blood=[f"blood_depth{i}" for i in range(len(BLOOD_DEPTH_EDGES))],
                    air=[f"air_distance{i}" for i in range(len(AIR_DISTANCE_EDGES))])
#: inner edges of the intensity levels over the LV blood median at which :func:`level_shares`
#: splits the whole frame: air and lung (< 0.1), dark tissue, grey tissue (most myocardium, liver,
#: muscle), bright tissue with the darker half of the blood pool (the top edge is its median), and
#: above it (the brighter half, fat, fluid)
LEVEL_EDGES = (0.1, 0.2, 0.5, 1.0)
LEVEL_LABELS = {"p99_blood": "99th percentile / blood", "level0": f"< {LEVEL_EDGES[0]:g}",
                **{f"level{i + 1}": f"{lo:g}-{hi:g}" for i, (lo, hi) in enumerate(zip(LEVEL_EDGES, LEVEL_EDGES[1:]))},
                f"level{len(LEVEL_EDGES)}": f">= {LEVEL_EDGES[-1]:g}"}
#: inner edges of the bands of the 99th-percentile-normalised frame in which
#: :func:`pixel_scale_measures` describes the body's pixel-scale texture: air and lung, grey tissue
#: (myocardium, liver, muscle), mid-grey, and bright (blood, fat, fluid)
PIXEL_BANDS = (0.04, 0.3, 0.7)
PIXEL_BAND_NAMES = ("dark", "grey", "mid", "bright")
#: bands with fewer body pixels than this give :func:`pixel_scale_measures` NaN
PIXEL_BAND_MIN_PIXELS = 50
#: the per-frame measures of :func:`pixel_scale_measures`, with their report labels
PIXEL_SCALE_LABELS = {f"px_{b}_{k}": f"{b}: {label}" for b in PIXEL_BAND_NAMES
                      for k, label in (("noise", "noise sd"), ("gradient", "gradient"), ("ties", "ties"),
                                       ("flat", "8 of 8 >= centre"))}
#: gradient magnitudes (per pixel, over the frame's 99th percentile) of :func:`edge_coherence`'s
#: moderate edges: the upper part of :func:`frame_statistics`' gradient histogram (its range ends at
#: 0.3), above the noise of every group's tissue (grey-band noise sd under 0.015)
MODERATE_GRADIENT = (0.1, 0.3)
#: integration scale (px) of :func:`edge_coherence`'s structure tensor: the neighbourhood over which
#: an edge's direction is averaged, about two pixels each side
COHERENCE_SIGMA_PX = 1.5
#: frames with fewer moderate-edge pixels in the body than this give :func:`edge_coherence` NaN
COHERENCE_MIN_PIXELS = 50
#: pixels from the frame's border left out of the body's texture measures, where the filters'
#: padding would invent neighbours
BORDER_PX = 2
#: Immerkaer's difference of two Laplacians (CVIU 64:300 (1996)): cancels smooth structure, and
#: pure Gaussian noise of sd s gives a response of sd 6 s
IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)
#: groups of frames, in plotting order
GROUPS = ("simulated", "acdc calibration", "acdc evaluation", "sunnybrook calibration", "sunnybrook evaluation")


# -- statistics of one frame -----------------------------------------------------------------------

def normalise(image):
    """The frame over its 99th percentile (scanners scale magnitude images arbitrarily)."""
    image = np.asarray(image, np.float32)
    return image / max(float(np.percentile(image, 99)), 1e-6)


def radial_spectrum(image, *, bins):
    """Shape of the radial power spectrum: log10 of the share of power per frequency band.

    Parameters
    ----------
    image : (H, W) array
    bins : int, keyword-only
        Bands of equal width on (0, 0.5) cycles per pixel (the mean and the Nyquist frequency are left
        out).

    Returns
    -------
    (bins,) float64: log10(band power / total power), band power being the mean |FFT|^2 of a
    Hann-windowed, mean-free frame over the band's frequencies.
    """
    img = np.asarray(image, np.float64)
    H, W = img.shape
    win = np.outer(np.hanning(H), np.hanning(W))
    power = np.abs(np.fft.fft2((img - img.mean()) * win)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(H), np.fft.fftfreq(W), indexing="ij"))
    band = np.minimum((f / 0.5 * bins).astype(int), bins)  # 0.5 < f (corners) -> dropped
    keep = (f > 0) & (band < bins)
    total = np.bincount(band[keep], power[keep], minlength=bins)
    count = np.bincount(band[keep], minlength=bins)
    mean = total / np.maximum(count, 1)
    return np.log10(mean / mean.sum() + 1e-12)


def lbp_levels(x):
    """The grey levels the local binary patterns compare: a normalised frame (:func:`normalise`)
    on 256 levels (uint8, 0-255) over [0, :data:`INTENSITY_MAX`], clipped at both ends."""
    return np.clip(x / INTENSITY_MAX * 255, 0, 255).astype(np.uint8)


def frame_statistics(image, *, intensity_bins, gradient_bins, spectrum_bins, lbp_radius):
    """Hand-made statistics of one frame, as a dict of 1-D arrays (histograms are shares of the
    frame's pixels; their last bin also holds every value above it).

    ``intensity`` on [0, 1.25] of the 99th-percentile-normalised frame, ``gradient`` (magnitude
    per pixel, same scale) on [0, 0.3], ``lbp`` (uniform patterns, 8 neighbours at ``lbp_radius``)
    and ``spectrum`` (:func:`radial_spectrum`).
    """
    from skimage.feature import local_binary_pattern

    x = normalise(image)
    gy, gx = np.gradient(x)
    grad = np.hypot(gy, gx)
    lbp = local_binary_pattern(lbp_levels(x), 8, lbp_radius, method="uniform")
    hist = lambda v, n, hi: np.histogram(np.clip(v, 0, hi), n, (0, hi))[0] / v.size  # noqa: E731
    return dict(intensity=hist(x, intensity_bins, INTENSITY_MAX), gradient=hist(grad, gradient_bins, GRADIENT_MAX),
                lbp=np.bincount(lbp.astype(int).ravel(), minlength=10)[:10] / lbp.size,
                spectrum=radial_spectrum(x, bins=spectrum_bins))


def statistic_names(*, intensity_bins, gradient_bins, spectrum_bins, lbp_radius):
    """What each column of the statistics (:func:`frame_statistics`, families in :data:`STATISTICS`
    order) measures, as short labels for the report, e.g. ``"intensity 0.00-0.04 x p99"``."""
    def bands(n, hi, fmt, *, clipped=True):
        # the histograms clip at their upper end, so their last bin holds everything above it
        return [f">= {fmt.format(hi * i / n)}" if clipped and i == n - 1 else
                f"{fmt.format(hi * i / n)}-{fmt.format(hi * (i + 1) / n)}" for i in range(n)]

    # uniform LBP codes (skimage, P = 8): k = how many neighbours are at least as bright as the
    # centre, on one arc; 9 = any other (non-uniform) pattern
    lbp = [f"{k} of 8 neighbours >= centre" for k in range(9)] + ["non-uniform"]
    return ([f"intensity {b} x p99" for b in bands(intensity_bins, INTENSITY_MAX, "{:.2f}")]
            + [f"gradient {b} x p99 / px" for b in bands(gradient_bins, GRADIENT_MAX, "{:.3f}")]
            + [f"LBP r={lbp_radius:g}: {t}" for t in lbp]
            + [f"spectrum {b} cycles / px" for b in bands(spectrum_bins, 0.5, "{:.3f}", clipped=False)])


def _real_labels(X, names, is_real):
    """``is_real`` as a bool array, once ``names`` is checked to name every column of ``X`` (ValueError)."""
    if len(names) != X.shape[1]:
        raise ValueError(f"{len(names)} names for {X.shape[1]} statistics")
    return np.asarray(is_real, bool)


def separating_statistics(X, names, is_real, *, top):
    """The single statistics that best tell real frames from simulated ones.

    Parameters
    ----------
    X : (frames, statistics) array
    names : sequence of str, one per column
    is_real : (frames,) bool
    top : int, keyword-only

    Returns
    -------
    list of dict (name, auc, simulated, real), at most ``top``, most separating first: ``auc`` is
    the ROC AUC of the statistic alone as a score for "real" (below 0.5: higher in simulated
    frames), ranked by its distance from 0.5; ``simulated`` and ``real`` are the groups' means
    (histogram columns: shares of the frame's pixels; spectrum columns: log10 power shares).

    Raises
    ------
    ValueError
        When ``names`` does not name every column of ``X``.
    """
    from sklearn.metrics import roc_auc_score

    y = _real_labels(X, names, is_real)
    auc = np.array([roc_auc_score(y, X[:, j]) for j in range(X.shape[1])])  # a constant column scores 0.5
    order = np.argsort(-np.abs(auc - 0.5), kind="stable")[:top]
    return [dict(name=names[j], auc=float(auc[j]), simulated=float(X[~y, j].mean()), real=float(X[y, j].mean()))
            for j in order]


def classifier_leaning(X, names, is_real, *, C, top):
    """What the logistic regression on all statistics leans on to tell real frames from simulated ones.

    The standardised model of :func:`logistic_scores` is fitted on every row of ``X``. For a linear
    model the gap between the classes' mean log-odds is a sum over the statistics,
    ``sum_j w_j (mean_real_j - mean_sim_j) / s_j`` (``w``: coefficients, ``s``: the scaler's standard
    deviations), so each term says how much of the separation that statistic carries. A family can
    separate less on its own while the model finds the same gap through the others.

    Parameters
    ----------
    X : (frames, statistics) array
    names : sequence of str, one per column
    is_real : (frames,) bool
    C : float, keyword-only
        Inverse regularisation strength, as the separability classifier's.
    top : int, keyword-only

    Returns
    -------
    dict: ``gap`` (float, the mean log-odds of real frames minus that of simulated ones, which the
    terms sum to) and ``terms``: list of dict (name, coefficient, difference: the standardised mean
    difference real - simulated, share: the term over ``gap``), at most ``top``, largest |term| first.

    Raises
    ------
    ValueError
        When ``names`` does not name every column of ``X``.
    """
    y = _real_labels(X, names, is_real)
    model = _logistic_model(C)
    model.fit(X, y.astype(int))
    scaler, lr = model[0], model[1]
    diff = (X[y].mean(0) - X[~y].mean(0)) / scaler.scale_
    term = lr.coef_[0] * diff
    gap = float(term.sum())
    order = np.argsort(-np.abs(term), kind="stable")[:top]
    return dict(gap=gap, terms=[dict(name=names[j], coefficient=float(lr.coef_[0][j]), difference=float(diff[j]),
                                     share=float(term[j] / gap) if gap else float("nan")) for j in order])


def level_shares(image, blood_level):
    """Where a frame's pixels lie relative to its LV blood pool: a scale-free intensity histogram.

    Returns a dict: ``level<i>`` (share of all the frame's pixels in the i-th interval of
    :data:`LEVEL_EDGES` times ``blood_level``; they sum to 1) and ``p99_blood`` (the frame's 99th
    percentile over ``blood_level``, which scales the texture statistics' intensity axis).
    """
    x = np.asarray(image, np.float64) / blood_level
    counts = np.bincount(np.searchsorted(LEVEL_EDGES, x.ravel(), side="right"), minlength=len(LEVEL_EDGES) + 1)
    return dict(p99_blood=float(np.percentile(x, 99)), **{f"level{i}": float(c / x.size) for i, c in enumerate(counts)})


def body_mask(image, blood_level):
    """The body: the convex hull of the regions above 15 % of the blood level (after a 3x3 median,
    which drops noise but keeps edges in place, and an opening that removes specks); a torso's
    cross-section is convex, and the hull keeps the dark lungs and the gas inside it whether or
    not the body wall shows as a closed ring."""
    from scipy import ndimage as ndi
    from skimage.morphology import convex_hull_image

    fg = ndi.median_filter(np.asarray(image, np.float32), 3) > DARK * blood_level
    fg = ndi.binary_opening(fg, iterations=2)
    lab, n = ndi.label(fg)
    if n == 0:
        return fg
    sizes = np.bincount(lab.ravel())
    keep = np.flatnonzero(sizes >= 0.005 * fg.size)
    keep = keep[keep > 0]
    return convex_hull_image(np.isin(lab, keep)) if keep.size else fg


def tissue_measures(image, blood, myocardium):
    """Intensity ratios of one frame with its LV blood-pool and myocardium masks.

    Returns a dict: ``myocardium_blood`` (median ratio; NaN without a myocardium mask),
    ``blood_percentile`` (percentile of the blood median among body pixels), ``body_q<k>``
    (body intensity quantiles over the blood median), ``snr`` (blood median over
    :func:`noise_level`), ``bright_share`` (body share >= 0.7 x blood), ``dark_share`` (body share
    < 0.15 x blood: lung and gas), ``body_fraction`` (body share of the field of view), ``air_blood``
    (median of the frame outside the body over the blood median, exact zeros left out: a
    reconstruction's blanked corners; NaN with fewer than 100 such pixels), and the whole frame's
    ``level<i>`` and ``p99_blood`` (:func:`level_shares`), the blood pool from its contour inwards
    (:func:`blood_depth_measures`), the air away from the body (:func:`air_distance_profile`), and
    the body's pixel-scale texture by intensity band (:func:`pixel_scale_measures`), and how straight
    its moderate edges run (``edge_coherence``, :func:`edge_coherence`).
    """
    img = np.asarray(image, np.float32)
    b = float(np.median(img[blood]))
    body = body_mask(img, b)
    v = img[body]
    has_myocardium = myocardium is not None and myocardium.any()
    out = dict(myocardium_blood=float(np.median(img[myocardium]) / b) if has_myocardium else float("nan"),
               blood_percentile=float(100 * np.mean(v < b)), snr=b / max(noise_level(img), 1e-9), bright_share=float(np.mean(v >= BRIGHT * b)),
               dark_share=float(np.mean(v < DARK * b)), body_fraction=float(body.mean()))
    air = img[~body & (img > 0)]
    out["air_blood"] = float(np.median(air) / b) if air.size >= 100 else float("nan")
    for q, val in zip(BODY_QUANTILES, np.percentile(v, BODY_QUANTILES)):
        out[f"body_q{q}"] = float(val / b)
    out.update(level_shares(img, b))
    out.update(blood_depth_measures(img, blood))
    out.update(air_distance_profile(img, body, b))
    out.update(pixel_scale_measures(img, body))
    out["edge_coherence"] = edge_coherence(img, body)
    step = nearest_skin(body, img, blood, b)
    out["skin_direction_deg"] = display_angle_deg(*step)
    # the chest wall's distance in LV diameters (scale-free: ACDC's copy keeps no pixel spacing);
    # the LV is blood and myocardium, so frames contoured at the endocardium only get NaN
    out["skin_distance_lv"] = (float(np.hypot(*step) / equivalent_diameter(blood | myocardium)) if has_myocardium
                               else float("nan"))
    return out


def _binned_medians(values, where, edges, *, min_pixels):
    """Median of ``values`` over ``where`` in each bin [edges[i], edges[i + 1]) (the last open);
    NaN for bins with fewer than ``min_pixels``."""
    out = []
    for lo, hi in zip(edges, (*edges[1:], np.inf)):
        v = values[(where >= lo) & (where < hi)]
        out.append(float(np.median(v)) if v.size >= min_pixels else float("nan"))
    return out


def blood_depth_measures(image, blood):
    """How the LV blood pool's signal changes from its contour inwards (in-flow and the
    trabeculated rim; :func:`ofrnn.simulate.render.blood_inflow`).

    Parameters
    ----------
    image : (H, W) array
    blood : (H, W) bool array, the LV blood pool (cavity).

    Returns
    -------
    dict: ``blood_core_rim``, the median of the pool's pixels at least :data:`CORE_DEPTH` pixels
    from its contour over the median of those :data:`RIM_DEPTH` pixels from it (NaN when either
    holds fewer than 10 pixels: a small pool); ``blood_spread``, the interquartile range over the
    median of the pool's pixels at least ``RIM_DEPTH[0]`` pixels from the contour (NaN under 10 pixels); and the
    profile ``blood_depth<i>``, the median in each bin of :data:`BLOOD_DEPTH_EDGES` over the
    pool's median (NaN under 5 pixels). Depth is in pixels, as ACDC's copy keeps no spacing (its
    pixels, 1.4-1.7 mm, are the phantom's and Sunnybrook's size).
    """
    from scipy import ndimage as ndi

    img = np.asarray(image, np.float64)
    pool = np.asarray(blood, bool)
    depth = ndi.distance_transform_edt(pool)
    rim = img[(depth >= RIM_DEPTH[0]) & (depth < RIM_DEPTH[1])]
    core = img[depth >= CORE_DEPTH]
    inner = img[depth >= RIM_DEPTH[0]]
    nan = float("nan")
    out = dict(blood_core_rim=float(np.median(core) / np.median(rim)) if min(rim.size, core.size) >= 10 else nan,
               blood_spread=nan, **dict.fromkeys(PROFILE_KEYS["blood"], nan))
    if inner.size >= 10:
        q25, q50, q75 = np.percentile(inner, (25, 50, 75))
        out["blood_spread"] = float((q75 - q25) / q50) if q50 > 0 else nan
    if pool.any():
        level = float(np.median(img[pool]))
        medians = _binned_medians(img, depth, BLOOD_DEPTH_EDGES, min_pixels=5)
        out.update(zip(PROFILE_KEYS["blood"], [v / level if level > 0 else nan for v in medians]))
    return out


def air_distance_profile(image, body, blood_level):
    """The air beside the body, bin by bin of distance from it. Real cines hold a haze there that
    fades away from the body; a noise floor is flat.

    Parameters
    ----------
    image : (H, W) array
    body : (H, W) bool array, the body (:func:`body_mask`).
    blood_level : float
        The LV blood median, in the image's units.

    Returns
    -------
    dict of float, keys ``PROFILE_KEYS["air"]``: the median of the pixels outside the body in each
    bin of :data:`AIR_DISTANCE_EDGES` (pixels from the body; a reconstruction's blanked zeros left
    out) over ``blood_level``; NaN for bins of fewer than 50 pixels.
    """
    from scipy import ndimage as ndi

    img = np.asarray(image, np.float64)
    distance = ndi.distance_transform_edt(~np.asarray(body, bool))
    distance[img == 0] = -1  # no bin
    medians = _binned_medians(img, distance, AIR_DISTANCE_EDGES, min_pixels=50)
    return dict(zip(PROFILE_KEYS["air"], [v / blood_level for v in medians]))


def _centre_distance(shape):
    """Distance (px) of every pixel from the frame's centre."""
    H, W = shape
    return np.hypot(*np.mgrid[0:H, 0:W] - np.array([(H - 1) / 2, (W - 1) / 2])[:, None, None])


def fov_mask_radius(image, r=None):
    """Radius (px, about the frame's centre) of a circular field-of-view mask, beyond which every
    pixel is exactly zero; ``inf`` when the frame has none (something non-zero near a corner).
    ``r``: :func:`_centre_distance` of the frame, when the caller has it."""
    img = np.asarray(image)
    r = _centre_distance(img.shape) if r is None else r
    nonzero = img != 0
    if not nonzero.any():
        return float("inf")
    far = float(r[nonzero].max())
    return far if far < 0.95 * float(r.max()) else float("inf")


def nearest_skin(body, image, blood, level):
    """(dy, dx) pixels from the LV blood pool's centroid to the nearest point of the body's edge
    that is skin: not on the frame's border, not on the rim of a circular FOV mask
    (:func:`fov_mask_radius`) and brighter than 5 % of the blood ``level`` there. It is the chest
    wall nearest the heart. (NaN, NaN) when no edge qualifies, so angles and distances of it are NaN."""
    from scipy import ndimage as ndi

    img = np.asarray(image)
    edge = body & ~ndi.binary_erosion(body)
    edge[:3], edge[-3:], edge[:, :3], edge[:, -3:] = False, False, False, False
    edge &= img > 0.05 * level
    r = _centre_distance(img.shape)
    edge &= r < fov_mask_radius(img, r) - 3
    if not edge.any() or not blood.any():
        return float("nan"), float("nan")
    ly, lx = np.argwhere(blood).mean(0)
    ey, ex = np.nonzero(edge)
    i = int(np.argmin(np.hypot(ey - ly, ex - lx)))
    return float(ey[i] - ly), float(ex[i] - lx)


def skin_direction_deg(body, image, blood, level):
    """Display angle (degrees in [0, 360); 0 = image right, 90 = up) of :func:`nearest_skin`: how
    the oblique short-axis plane lies in the chest. NaN when no edge qualifies."""
    return display_angle_deg(*nearest_skin(body, image, blood, level))


def noise_level(image):
    """Noise sigma by Immerkaer's estimator (Fast noise variance estimation, CVIU 64:300 (1996)):
    the mean absolute response to the difference of two Laplacians, which cancels smooth
    structure; edges leave a small upward bias."""
    from scipy import ndimage as ndi

    response = ndi.convolve(np.asarray(image, float), IMMERKAER_MASK)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).mean() / 6)


def _inner(shape):
    """Mask of the pixels at least :data:`BORDER_PX` from the frame's border."""
    inner = np.zeros(shape, bool)
    inner[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = True
    return inner


def pixel_scale_measures(image, body, *, min_pixels=PIXEL_BAND_MIN_PIXELS):
    """The body's texture at the pixel scale, band by band of the frame's intensity: what the local
    binary patterns of :func:`frame_statistics` respond to.

    The frame is normalised by its 99th percentile (:func:`normalise`) and split at
    :data:`PIXEL_BANDS`; in each band, over the body's pixels at least :data:`BORDER_PX` pixels from
    the frame's border (where the filters' padding would invent neighbours):

    * ``px_<band>_noise``: noise sd, Immerkaer's Laplacian-difference response (:func:`noise_level`)
      with the median of its magnitude (x 1.4826 / 6, Gaussian noise) so that edges and specks bias
      it little;
    * ``px_<band>_gradient``: median gradient magnitude (per pixel);
    * ``px_<band>_ties``: share of pixels equal to their right neighbour after the LBP's quantisation
      (:func:`lbp_levels`);
    * ``px_<band>_flat``: share whose 8 neighbours at radius 1 (the ``lbp_radius`` of
      ``experiments/realism.toml``) are all at least as bright (uniform LBP code 8: a flat
      neighbourhood or a local minimum).

    Parameters
    ----------
    image : (H, W) array
    body : (H, W) bool array, the body (:func:`body_mask`).
    min_pixels : int, keyword-only
        Bands with fewer pixels give NaN.

    Returns
    -------
    dict of float, keys of :data:`PIXEL_SCALE_LABELS` (intensities in units of the 99th percentile).
    """
    from scipy import ndimage as ndi
    from skimage.feature import local_binary_pattern

    x = normalise(image).astype(np.float64)
    q = lbp_levels(x)
    flat = local_binary_pattern(q, 8, 1, method="uniform") == 8
    laplace = np.abs(ndi.convolve(x, IMMERKAER_MASK))
    gradient = np.hypot(*np.gradient(x))
    ties = np.zeros(x.shape, bool)
    ties[:, :-1] = q[:, :-1] == q[:, 1:]
    inner = _inner(x.shape)
    band = np.searchsorted(PIXEL_BANDS, x, side="right")
    out = dict.fromkeys(PIXEL_SCALE_LABELS, float("nan"))
    for i, name in enumerate(PIXEL_BAND_NAMES):
        m = body & inner & (band == i)
        if m.sum() >= min_pixels:
            # median absolute deviation to sd (x 1.4826), then the mask's gain on noise (6)
            out.update({f"px_{name}_noise": float(1.4826 * np.median(laplace[m]) / 6),
                        f"px_{name}_gradient": float(np.median(gradient[m])),
                        f"px_{name}_ties": float(ties[m].mean()), f"px_{name}_flat": float(flat[m].mean())})
    return out


def coherence_map(image, *, sigma_px=COHERENCE_SIGMA_PX):
    """Orientation coherence of the structure tensor, and gradient magnitude, pixel by pixel, of
    the frame over its 99th percentile (see :func:`edge_coherence` for the definition and sources).

    Parameters
    ----------
    image : (H, W) array
    sigma_px : float, keyword-only
        The structure tensor's integration scale (pixels).

    Returns
    -------
    coherence : (H, W) float array in [0, 1]; 0 where the neighbourhood has no gradient.
    magnitude : (H, W) float array, gradient magnitude per pixel in units of the 99th percentile.
    """
    from scipy import ndimage as ndi

    x = normalise(image).astype(np.float64)
    gy, gx = np.gradient(x)
    jyy, jxx, jxy = (ndi.gaussian_filter(a, sigma_px) for a in (gy * gy, gx * gx, gy * gx))
    # (l1 - l2) / (l1 + l2) of [[jyy, jxy], [jxy, jxx]]; the clip only absorbs rounding
    coherence = np.clip(np.hypot(jxx - jyy, 2 * jxy) / np.maximum(jxx + jyy, 1e-12), 0, 1)
    return coherence, np.hypot(gy, gx)


def edge_coherence(image, body, *, gradient=MODERATE_GRADIENT, sigma_px=COHERENCE_SIGMA_PX,
                   min_pixels=COHERENCE_MIN_PIXELS):
    """How straight the body's moderate edges run: the median orientation coherence of the
    structure tensor over the body's pixels whose gradient is moderate.

    The gradient ``g`` of the frame over its 99th percentile (:func:`normalise`) gives the
    structure tensor ``J = G_s * (g g^T)`` (``G_s`` a Gaussian of ``sigma_px``); its eigenvalues
    ``l1 >= l2`` give the coherence ``(l1 - l2) / (l1 + l2)`` (Bigun, Granlund & Wiklund, IEEE
    TPAMI 13:775 (1991); Jahne, Digital Image Processing, 6th ed. (2005), Sec. 13.3): 1 along a
    straight edge or a layer's boundary, lower where the gradients within the window point several
    ways. At this small window it does not reach 0: white noise reads about 0.25, a mottle of
    1 px grain about 0.5, of 1.5 px about 0.7. Real cines' moderate edges are mostly organ, muscle
    and fat boundaries, long and smooth; a texture's are loops a few pixels across. The window and
    the gradient band are in pixels, so the measure depends on the pixel size as the frame
    statistics do.

    Parameters
    ----------
    image : (H, W) array
    body : (H, W) bool array, the body (:func:`body_mask`).
    gradient : (float, float), keyword-only
        Gradient magnitudes (per pixel, in units of the 99th percentile) that count as moderate,
        ``[lo, hi)``.
    sigma_px : float, keyword-only
        The structure tensor's integration scale (pixels).
    min_pixels : int, keyword-only
        Fewer moderate-edge pixels in the body (at least :data:`BORDER_PX` pixels from the frame's
        border) give NaN.

    Returns
    -------
    float in [0, 1], or NaN.
    """
    coherence, magnitude = coherence_map(image, sigma_px=sigma_px)
    inner = _inner(magnitude.shape)
    m = body & inner & (magnitude >= gradient[0]) & (magnitude < gradient[1])
    return float(np.median(coherence[m])) if m.sum() >= min_pixels else float("nan")


def equivalent_diameter(mask):
    """Diameter (px) of the disc with the mask's area."""
    return float(2 * np.sqrt(mask.sum() / np.pi))


def lv_size(lv, shape):
    """The LV's equivalent epicardial diameter over the field of view's (geometric mean) side."""
    return equivalent_diameter(lv) / float(np.sqrt(shape[0] * shape[1]))


def display_angle_deg(dy, dx):
    """Display angle (degrees in [0, 360); 0 = image right, 90 = up) of an image step ``(dy, dx)``
    (rows point down)."""
    return float(np.rad2deg(np.arctan2(-dy, dx)) % 360)


def direction_deg(frm, to):
    """:func:`display_angle_deg` of the centroid of mask ``to`` seen from the centroid of mask ``frm``."""
    (y0, x0), (y1, x1) = (np.argwhere(m).mean(0) for m in (frm, to))
    return display_angle_deg(y1 - y0, x1 - x0)


def heart_crop(image, lv, *, scale, size):
    """A square crop centred on the LV, ``scale`` x its equivalent diameter wide, resized to
    ``size`` pixels (zero outside the frame)."""
    from skimage.transform import resize

    cy, cx = np.argwhere(lv).mean(0)
    half = max(8, int(round(scale * np.sqrt(lv.sum() / np.pi))))
    pad = np.pad(normalise(image), half)
    y, x = int(round(cy)) + half, int(round(cx)) + half
    return resize(pad[y - half:y + half, x - half:x + half], (size, size), anti_aliasing=True).astype(np.float32)


# -- the frames ----------------------------------------------------------------------------------

def _frame(group, subject, image, *, lv, blood=None, myocardium=None, rv_angle=float("nan"), spacing=None):
    return dict(group=group, subject=subject, image=np.asarray(image, np.float32), lv=lv, blood=blood,
                myocardium=myocardium, rv_angle=rv_angle, spacing=spacing)


def simulated_frames(cohort_path, *, per_subject, max_subjects=0):
    """ED and ES (smallest cavity) frames of each simulated subject, with the phantom's masks; the
    RV direction is that of the septal AHA segments seen from the cavity."""
    from ..store import open_cohort

    out = []
    with open_cohort(cohort_path) as c:
        ids = c.ids[:max_subjects] if max_subjects else c.ids
        for sid in tqdm(ids, desc="simulated frames", unit="subject"):
            s = c.read(sid, fields=("cine", "myocardium_t", "lv_cavity_t", "aha_segments"))
            es = int(np.argmin(s.lv_cavity_t.reshape(len(s.cine), -1).sum(1)))
            septum = np.isin(s.aha_segments, SEPTAL_SEGMENTS)
            angle = direction_deg(s.lv_cavity_t[0], septum) if septum.any() else float("nan")
            for t in sorted({0, es})[:per_subject]:
                cav, myo = s.lv_cavity_t[t].astype(bool), s.myocardium_t[t].astype(bool)
                out.append(_frame("simulated", sid, s.cine[t], lv=cav | myo, blood=cav, myocardium=myo,
                                  rv_angle=angle, spacing=s.spacing_mm[0]))
    return out


def real_frames(shared, split):
    """Real frames with their masks and split; returns (frames, skipped reasons by set)."""
    frames, skipped = [], {}
    acdc = Path(shared) / "acdc-edes"
    if acdc.is_dir():
        for s in acdc_sequences(acdc):
            pid = s["id"].split("/")[0]
            group = "acdc " + ("calibration" if is_calibration("acdc", s["id"], split) else "evaluation")
            for t, lab in enumerate(s["labels"]):
                rv = lab == 1
                lv = np.isin(lab, (2, 3))
                frames.append(_frame(group, pid, s["cine"][t], lv=lv, blood=lab == 3, myocardium=lab == 2,
                                     rv_angle=direction_deg(lv, rv) if rv.sum() >= 20 else float("nan")))
    else:
        skipped["acdc"] = f"{acdc} not found"
    sb = Path(shared) / "sunnybrook"
    if sb.is_dir():
        for s in sunnybrook_sequences(sb):
            pid = s["id"].split("/")[0]
            group = "sunnybrook " + ("calibration" if is_calibration("sunnybrook", s["id"], split) else "evaluation")
            epi = next((m["o"] for m in s["masks"].values() if "o" in m), None)
            for t, m in sorted(s["masks"].items()):
                if "i" not in m:
                    continue
                # frames contoured at the endocardium only (ES) borrow the slice's ED epicardium
                lv = m["o"] | m["i"] if "o" in m else m["i"] if epi is None else epi | m["i"]
                myo = m["o"] & ~m["i"] if "o" in m else None
                frames.append(_frame(group, pid, s["cine"][t], lv=lv, blood=m["i"],
                                     myocardium=myo, spacing=s["spacing"][0]))
    else:
        skipped["sunnybrook"] = f"{sb} not found"
    return frames, skipped


# -- separability --------------------------------------------------------------------------------

def subject_folds(subjects, k, seed):
    """Fold (0..k-1) of every entry of ``subjects``, whole subjects per fold, seeded."""
    names = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(names))
    fold = {names[i]: j % k for j, i in enumerate(order)}
    return np.array([fold[s] for s in subjects])


def class_folds(subjects, strata, k, seed):
    """Subject folds (0..k-1) drawn separately within each stratum (see :func:`subject_folds`).

    With the strata simulated / calibration real / evaluation real, every fold holds about as
    many subjects of each, and the folds of the calibration patients and of the simulated subjects
    do not depend on whether the evaluation patients were loaded: ``make realism`` and ``make
    realism-calibrate`` then give one cohort the same calibration CV (with real / simulated as the
    only strata they did not: 0.969 against 0.944 for one cohort, 2026-12-06).

    Parameters
    ----------
    subjects : (N,) sequence of str
        Each frame's subject.
    strata : (N,) array
        Each frame's stratum (any labels; a boolean ``is_real`` gives two).
    k : int
        Folds.
    seed : int

    Returns
    -------
    (N,) int array
    """
    subjects, strata = np.asarray(subjects), np.asarray(strata)
    folds = np.zeros(len(subjects), int)
    for stratum in np.unique(strata):
        m = strata == stratum
        folds[m] = subject_folds(list(subjects[m]), k, seed)
    return folds


def frame_strata(is_real, calibration):
    """0 simulated, 1 calibration real, 2 evaluation real: the strata of :func:`class_folds`."""
    return np.where(~np.asarray(is_real), 0, np.where(calibration, 1, 2))


def _fold_scores(folds, scored, pool, fit_score, *, always=None):
    """Scores of the ``scored`` frames, each from the model of its fold: fitted on the ``pool``
    frames of the other folds (plus ``always``, frames every model trains on)."""
    always = np.zeros(len(folds), bool) if always is None else always
    scores = np.full(len(folds), np.nan)
    for j in np.unique(folds[scored]):
        held = scored & (folds == j)
        scores[held] = fit_score(always | (pool & (folds != j)), held)
    return scores


def cross_fit(is_real, calibration, evaluation, folds, fit_score):
    """Scores from models that never saw the scored frame (see the module docstring).

    Every simulated and evaluation frame is scored once, by the model of its subject's fold
    (:func:`class_folds`): trained on the calibration real frames and the simulated subjects of
    the other folds. Both classes are thus scored by the same mix of models. ``fit_score(train,
    score)`` fits on the boolean mask ``train`` and returns scores of the frames in ``score``.
    Returns (N,) scores; NaN for calibration frames.
    """
    return _fold_scores(folds, ~is_real | evaluation, ~is_real, fit_score, always=calibration)


def calibration_scores(is_real, calibration, folds, fit_score):
    """Grouped cross-validation on the calibration real frames and the simulated frames only
    (``folds``: each frame's subject fold), for tuning the phantom without an evaluation frame.
    Returns (N,) scores, NaN outside those frames."""
    use = calibration | ~is_real
    return _fold_scores(folds, use, use, fit_score)


def auc_with_interval(scores, is_real, subjects, *, n_boot, seed):
    """ROC AUC (real = positive) and its 95 % interval from a bootstrap over subjects, real and
    simulated subjects resampled separately (:func:`ofrnn.metrics.bootstrap_subjects`)."""
    from sklearn.metrics import roc_auc_score

    from ..metrics import bootstrap_subjects, rank_auc

    number = {}  # subjects numbered in order of appearance
    subject = np.array([number.setdefault(s, len(number)) for s in subjects])
    real_subject = np.zeros(len(number), bool)
    real_subject[subject] = is_real
    frames_of = [np.flatnonzero(subject == i) for i in range(len(number))]

    def auc(idx):
        rows = np.concatenate([frames_of[i] for i in idx])
        return rank_auc(is_real[rows], scores[rows])

    # stratum 0 = real subjects, drawn first
    lo, hi = bootstrap_subjects(auc, len(number), n_boot=n_boot, seed=seed, strata=~real_subject)
    return dict(auc=float(roc_auc_score(is_real, scores)), ci95=[lo, hi], real_frames=int(is_real.sum()),
                simulated_frames=int((~is_real).sum()), real_subjects=int(real_subject.sum()),
                simulated_subjects=int((~real_subject).sum()))


def _logistic_model(C):
    """The separability classifier: standardisation, then a logistic regression (balanced classes)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, class_weight="balanced"))


def logistic_scores(X, C):
    """``fit_score`` of a standardised logistic regression (balanced classes) on rows of ``X``."""
    def fit_score(train, score, *, y):
        model = _logistic_model(C)
        model.fit(X[train], y[train])
        return model.predict_proba(X[score])[:, 1]
    return fit_score


def cnn_scores(images, cfg, seed):
    """``fit_score`` of a small CNN (three conv blocks, global pooling, logistic output; random
    flips and quarter turns, since orientation conventions differ) on (N, S, S) ``images``."""
    import keras
    import tensorflow as tf

    def build(size):
        x = inp = keras.Input((size, size, 1))
        for width in (16, 32, 32):
            x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
            x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))

    def augment(x, y, w):
        x = tf.image.random_flip_left_right(x)
        x = tf.image.rot90(x, tf.random.uniform((), 0, 4, tf.int32))
        return x, y, w

    def fit_score(train, score, *, y):
        keras.utils.set_random_seed(seed)
        idx = np.flatnonzero(train)
        yt = y[idx].astype(np.float32)
        w = np.where(yt > 0, 0.5 / yt.mean(), 0.5 / (1 - yt.mean())).astype(np.float32)
        ds = (tf.data.Dataset.from_tensor_slices((images[idx, ..., None], yt, w)).shuffle(len(idx), seed=seed)
              .repeat().map(augment).batch(cfg["batch"]))
        model = build(images.shape[1])
        model.compile(keras.optimizers.Adam(cfg["learning_rate"]), "binary_crossentropy")
        model.fit(ds, epochs=cfg["epochs"], steps_per_epoch=max(1, len(idx) // cfg["batch"]), shuffle=False,
                  verbose=0)
        return np.asarray(model(images[score][..., None], training=False))[:, 0]
    return fit_score


# -- the experiment --------------------------------------------------------------------------------

def _summary(v):
    v = np.asarray([x for x in v if np.isfinite(x)], float)
    if not v.size:
        return None
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return dict(n=int(v.size), median=float(med), q1=float(q1), q3=float(q3), mean=float(v.mean()), sd=float(v.std()))


def _signal_ratios():
    """The phantom's on-resonance bSSFP signal per tissue over LV blood (flip 50 deg, mid TR, the
    magnetization-transfer factor at the middle of its range); magnitudes (fat's entry is signed
    by its opposed phase, :func:`ofrnn.simulate.mri.chemical_shift_sign`)."""
    from ..simulate.mri import Tissue, signal_table

    out = {}
    for field, tr in ((1.5, 3.0), (3.0, 3.2)):
        sig = signal_table(field_t=field, flip_deg=50.0, tr_ms=tr, mt=float(np.mean(MT_RANGE)))
        out[f"{field:g} T"] = {t.name.lower(): float(abs(sig[int(t)]) / sig[int(Tissue.LV_BLOOD)]) for t in Tissue}
    return out


def load_frames(cfg):
    """Simulated and real frames (evaluation ones only when ``cfg["evaluate"]``), and the reasons
    for any real set skipped."""
    sim = simulated_frames(REPO / cfg["cohort"], per_subject=cfg["frames_per_subject"],
                           max_subjects=cfg.get("max_subjects", 0))
    real, skipped = real_frames(SHARED, cfg["split"])
    if not cfg["evaluate"]:  # tuning: the evaluation frames are not even measured
        real = [f for f in real if f["group"].endswith("calibration")]
    if cfg.get("max_real_patients", 0) < 0:
        raise OfrnnError(f"max_real_patients must be 0 (every patient) or more, got {cfg['max_real_patients']}",
                         field="max_real_patients")
    if cfg.get("max_real_patients"):  # the first patients of each real group (a smoke run)
        first = {}
        for f in real:
            names = first.setdefault(f["group"], [])
            if f["subject"] not in names and len(names) < cfg["max_real_patients"]:
                names.append(f["subject"])
        real = [f for f in real if f["subject"] in first[f["group"]]]
    if not real:
        raise OfrnnError(f"no real frames to compare with ({'; '.join(skipped.values())})", field="shared data")
    return sim + real, skipped


def separability_tables(X, parts, frames, labels, cfg, seed):
    """Real-vs-simulated AUCs: grouped CV on the calibration frames for the statistics, each of
    their families (``parts``: name -> width in ``X``) and the CNNs, and the cross-fitted
    evaluation AUCs of each of them (the ROC curves: the statistics together and the CNNs). ``labels``: dict of per-frame arrays (groups, subjects, is_real,
    calibration, evaluation). Returns (evaluation table, calibration table, ROC curves)."""
    from ..metrics import rank_auc

    groups, subjects, is_real = labels["groups"], labels["subjects"], labels["is_real"]
    calibration, evaluation = labels["calibration"], labels["evaluation"]
    y = is_real.astype(int)
    cl = cfg["classifier"]
    use = calibration | ~is_real
    strata = frame_strata(is_real, calibration)
    fold = class_folds(subjects, strata, cl["folds"], seed)
    # (fit_score, folds, drawn in the ROC figure?, calibration CV on more fold draws?): every statistic together, then each family
    # alone (which of them gives the phantom away, on the calibration frames and on the evaluation
    # patients, where the tuning numbers have overstated gains before), then the CNNs
    ends = np.cumsum(list(parts.values()))
    learners = {"statistics": (logistic_scores(X, cl["C"]), fold, True, True)}
    learners.update({k: (logistic_scores(X[:, e - n:e], cl["C"]), fold, False, True)
                     for (k, n), e in zip(parts.items(), ends)})
    if cfg["cnn"]["enabled"]:
        from skimage.transform import resize

        cn = cfg["cnn"]
        cfold = class_folds(subjects, strata, cn["folds"], seed)
        whole = np.stack([resize(np.clip(normalise(f["image"]), 0, INTENSITY_MAX), (cn["frame_size"],) * 2,
                                 anti_aliasing=True) for f in frames]).astype(np.float32)
        crops = np.stack([heart_crop(f["image"], f["lv"], scale=cn["crop_scale"], size=cn["crop_size"])
                          for f in frames])
        # the CNNs train for a minute per fold: one draw of their folds
        learners["cnn, whole frames"] = (cnn_scores(whole, cn, seed), cfold, True, False)
        learners["cnn, heart-centred crops"] = (cnn_scores(crops, cn, seed), cfold, True, False)
    calibration_table, curves, scores = {}, {}, {}
    scored = evaluation | ~is_real
    for name, (fit, folds, draw, redraw) in learners.items():
        fs = lambda tr, sc: fit(tr, sc, y=y)  # noqa: E731
        s = calibration_scores(is_real, calibration, folds, fs)
        calibration_table[name] = auc_with_interval(s[use], is_real[use], subjects[use], n_boot=cl["bootstrap"],
                                                    seed=seed)
        if redraw and cl["fold_draws"] > 1:
            # which subjects share a fold moves a calibration CV by a few hundredths, as much as
            # the phantom changes it is used to judge: the statistics' CV again on other fold draws
            # (seed + r; draw 0 is the one above, its scores reused)
            draws = [rank_auc(is_real[use], (s if r == 0 else calibration_scores(
                is_real, calibration, class_folds(subjects, strata, cl["folds"], seed + r), fs))[use])
                for r in range(cl["fold_draws"])]
            calibration_table[name].update(fold_draws=draws, auc_fold_draws_mean=float(np.mean(draws)),
                                           auc_fold_draws_sd=float(np.std(draws, ddof=1)))
        if name == "statistics":
            curves["statistics, calibration CV"] = (s, use)
        if evaluation.any():
            scores[name] = cross_fit(is_real, calibration, evaluation, folds, fs)
            if draw:
                curves[name] = (scores[name], scored)
    table = {}
    for name, s in scores.items():
        table[name] = {}
        for real_set in ("all", "acdc", "sunnybrook"):
            m = scored & ((groups == "simulated") | (real_set == "all") | np.char.startswith(groups, real_set))
            if (m & is_real).any():
                table[name][real_set] = auc_with_interval(s[m], is_real[m], subjects[m], n_boot=cl["bootstrap"],
                                                          seed=seed)
    return table, calibration_table, curves


def group_summaries(frames, stats, tissue, groups, subjects):
    """Per-frame measures, and their median/IQR per group with the groups' mean texture curves."""
    per_frame = dict(
        lv_size=np.array([lv_size(f["lv"], f["image"].shape) if f["lv"] is not None else np.nan for f in frames]),
        rv_direction_deg=np.array([f["rv_angle"] for f in frames]),
        pixel_mm=np.array([f["spacing"] if f["spacing"] is not None else np.nan for f in frames]),
        matrix=np.array([np.sqrt(np.prod(f["image"].shape)) for f in frames]),
        # short over long side: 1 for a square field of view, below for a rectangular one
        aspect=np.array([min(f["image"].shape) / max(f["image"].shape) for f in frames]),
        **{k: np.array([r[k] if r is not None else np.nan for r in tissue])
           for k in (*TISSUE_LABELS, *LEVEL_LABELS, *PIXEL_SCALE_LABELS, *PROFILE_KEYS["blood"], *PROFILE_KEYS["air"],
                     "skin_direction_deg", "skin_distance_lv", "edge_coherence")})
    by_group = {}
    for g in GROUPS:
        idx = np.flatnonzero(groups == g)
        if idx.size:
            by_group[g] = dict(
                frames=int(idx.size), subjects=len(set(subjects[idx])),
                **{k: _summary(v[idx]) for k, v in per_frame.items()},
                texture={k: dict(mean=np.mean([stats[i][k] for i in idx], 0).tolist(),
                                 sd=np.std([stats[i][k] for i in idx], 0).tolist())
                         for k in STATISTICS})
    return per_frame, by_group


def _single_measure_auc(values, is_real):
    """ROC AUC of one per-frame measure as a score for real over the frames where it is finite;
    None when either class has no such frame."""
    from ..metrics import rank_auc

    ok = np.isfinite(values)
    auc = rank_auc(is_real[ok], values[ok])
    return None if np.isnan(auc) else auc


def run(config, profile, out_dir):
    import sklearn
    import skimage

    cfg = resolve_config(config, profile)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    seed = int(cfg["seed"])
    st = cfg["statistics"]
    frames, skipped = load_frames(cfg)
    timings = {"read_s": time.perf_counter() - t0}
    groups = np.array([f["group"] for f in frames])
    labels = dict(groups=groups, subjects=np.array([f["group"].split()[0] + ":" + f["subject"] for f in frames]),
                  is_real=groups != "simulated", calibration=np.char.endswith(groups, "calibration"),
                  evaluation=np.char.endswith(groups, "evaluation"))

    t = time.perf_counter()
    stats = [frame_statistics(f["image"], intensity_bins=st["intensity_bins"], gradient_bins=st["gradient_bins"],
                              spectrum_bins=st["spectrum_bins"], lbp_radius=st["lbp_radius"])
             for f in tqdm(frames, desc="statistics", unit="frame")]
    X = np.array([np.concatenate([s[k] for k in STATISTICS]) for s in stats])
    tissue = [tissue_measures(f["image"], f["blood"], f["myocardium"]) if f["blood"] is not None and f["blood"].any()
              else None for f in frames]
    timings["statistics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    separability, separability_calibration, curves = separability_tables(
        X, {k: len(stats[0][k]) for k in STATISTICS}, frames, labels, cfg, seed)
    timings["classifiers_s"] = time.perf_counter() - t
    # which single statistics give the phantom away, on the frames one may tune on (the
    # calibration real frames and the simulated ones), so the table can steer the phantom
    tune = labels["calibration"] | ~labels["is_real"]
    names, top = statistic_names(**st), int(cfg["report"]["separating_statistics"])
    X_tune, real_tune = X[tune], labels["is_real"][tune]
    separating = separating_statistics(X_tune, names, real_tune, top=top)
    leaning = classifier_leaning(X_tune, names, real_tune, C=cfg["classifier"]["C"], top=top)
    per_frame, by_group = group_summaries(frames, stats, tissue, groups, labels["subjects"])
    # the gradient band was looked at on the calibration frames: the evaluation patients' AUC is
    # the honest one
    scored = labels["evaluation"] | ~labels["is_real"]
    coherence_auc = dict(calibration=_single_measure_auc(per_frame["edge_coherence"][tune], real_tune),
                         evaluation=_single_measure_auc(per_frame["edge_coherence"][scored],
                                                        labels["is_real"][scored]))
    timings["total_s"] = time.perf_counter() - t0
    _figures(frames, groups, labels["evaluation"], by_group, per_frame, curves, labels["is_real"], cfg, out_dir)
    metrics = dict(separability=separability, separability_calibration=separability_calibration,
                   separating_statistics=separating, classifier_leaning=leaning, groups=by_group,
                   edge_coherence_auc=coherence_auc,
                   phantom_signal_over_blood=_signal_ratios(), skipped=skipped, settings=cfg, profile=profile,
                   timings=timings, split=dict(cfg["split"], evaluation="every other real patient"),
                   versions=dict(ofrnn=__version__, python=platform.python_version(), numpy=np.__version__,
                                 scikit_learn=sklearn.__version__, scikit_image=skimage.__version__))
    write_json(out_dir / "metrics.json", metrics, nan_as_null=True)
    atomic_write_text(out_dir / "report.md", _report(metrics))
    print(f"wrote {out_dir}/metrics.json, report.md, gallery.png, crops.png, edges.png, texture.png, geometry.png, "
          "profiles.png, roc.png")
    for name, table in (("calibration frames, grouped CV", separability_calibration),
                        ("evaluation frames", {k: v.get("all") for k, v in separability.items()})):
        c = table.get("statistics")
        if c:
            print(f"real vs simulated AUC (statistics, {name}): {c['auc']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]")


# -- figures and report ------------------------------------------------------------------------------

def _gallery_picks(groups, shown, n):
    """Frame indices for the gallery rows: simulated ones spread over the cohort; real frames of
    ``shown``, half ACDC and half Sunnybrook where both exist."""
    sim = np.flatnonzero(groups == "simulated")
    rows = [sim[np.linspace(0, len(sim) - 1, n).astype(int)]]
    real = []
    sets = [np.flatnonzero(shown & np.char.startswith(groups, p)) for p in ("acdc", "sunnybrook")]
    sets = [s for s in sets if s.size]
    for j, s in enumerate(sets):
        k = n // len(sets) + (j < n % len(sets))
        real.append(s[np.linspace(0, len(s) - 1, k).astype(int)])
    rows.append(np.concatenate(real) if real else np.array([], int))
    return rows


def _gallery_cells(ax, picks, frames):
    """Each gallery panel with a frame: ``(axes, frame index, frame)`` row by row over ``picks``;
    every panel's axes are switched off, and panels beyond a row's picks stay empty."""
    for r, idx in enumerate(picks):
        for j in range(ax.shape[1]):
            ax[r, j].axis("off")
            if j < len(idx):
                yield ax[r, j], idx[j], frames[idx[j]]


def _edge_figure(frames, picks, coherence, out_dir):
    """The gallery's first frames with their moderate edges (:data:`MODERATE_GRADIENT`) coloured by
    the structure tensor's coherence (:func:`coherence_map`) over the frame in grey."""
    plt = pyplot()
    n = max(len(idx) for idx in picks)
    fig, ax = plt.subplots(2, n, figsize=(3.4 * n, 7.2), squeeze=False)
    shown = None
    for a, i, f in _gallery_cells(ax, picks, frames):
        c, g = coherence_map(f["image"])
        moderate = (g >= MODERATE_GRADIENT[0]) & (g < MODERATE_GRADIENT[1])
        # the frame dimmed to a third, so the coloured edges stand out
        a.imshow(np.clip(normalise(f["image"]), 0, 1.1), cmap="gray", vmin=0, vmax=3.0)
        shown = a.imshow(np.ma.masked_where(~moderate, c), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        a.set_title(f"{f['group'].split()[0]} {f['subject']}: "
                    + (f"{coherence[i]:.2f}" if np.isfinite(coherence[i]) else "n/a"), fontsize=7)
    if shown is not None:
        fig.colorbar(shown, ax=ax, shrink=0.6, label="orientation coherence")
    fig.suptitle(f"moderate edges ({MODERATE_GRADIENT[0]:g}-{MODERATE_GRADIENT[1]:g} x p99 per pixel) coloured by "
                 "coherence (1 = a straight edge), over the whole frame; top: simulated, bottom: real; title: the median "
                 "over the body", fontsize=9)
    save_figure(fig, out_dir / "edges.png", dpi=90)
    plt.close(fig)


def _figures(frames, groups, evaluation, by_group, per_frame, curves, is_real, cfg, out_dir):
    plt = pyplot()
    n = cfg["gallery"]["frames"]
    shown = evaluation if evaluation.any() else ~evaluation & (groups != "simulated")
    picks = _gallery_picks(groups, shown, n)
    for name, crop in (("gallery.png", False), ("crops.png", True)):
        fig, ax = plt.subplots(2, n, figsize=(1.9 * n, 4.2), squeeze=False)
        for a, _, f in _gallery_cells(ax, picks, frames):
            img = heart_crop(f["image"], f["lv"], scale=cfg["cnn"]["crop_scale"], size=96) if crop \
                else normalise(f["image"])
            a.imshow(np.clip(img, 0, 1.1), cmap="gray", vmin=0, vmax=1.1)
            a.set_title(f"{f['group'].split()[0]} {f['subject']}", fontsize=7)
        fig.suptitle("top: simulated; bottom: real " + ("evaluation frames (never fitted)" if evaluation.any()
                                                        else "calibration frames")
                     + (" - heart-centred crops" if crop else ""), fontsize=9)
        fig.tight_layout()
        save_figure(fig, out_dir / name, dpi=90)
        plt.close(fig)

    _edge_figure(frames, _gallery_picks(groups, shown, max(1, n // 2)), per_frame["edge_coherence"], out_dir)

    st = cfg["statistics"]
    centres = lambda hi, n: (np.arange(n) + 0.5) * hi / n  # noqa: E731  (bin centres on [0, hi])
    axes_x = dict(intensity=centres(INTENSITY_MAX, st["intensity_bins"]), gradient=centres(GRADIENT_MAX, st["gradient_bins"]),
                  lbp=np.arange(10), spectrum=centres(0.5, st["spectrum_bins"]))
    labels = dict(intensity="intensity / 99th percentile", gradient="gradient magnitude per pixel",
                  lbp="uniform LBP code (8 neighbours)", spectrum="spatial frequency (cycles / pixel)")
    fig, ax = plt.subplots(1, 4, figsize=(18, 3.8))
    for a, key in zip(ax, ("intensity", "gradient", "lbp", "spectrum")):
        for g, r in by_group.items():
            m, s = np.array(r["texture"][key]["mean"]), np.array(r["texture"][key]["sd"])
            a.plot(axes_x[key], m, label=f"{g} ({r['frames']})", lw=2 if g == "simulated" else 1)
            a.fill_between(axes_x[key], m - s, m + s, alpha=0.1)
        a.set_xlabel(labels[key])
        a.set_yscale("log" if key in ("intensity", "gradient") else "linear")
    ax[0].set_ylabel("share of pixels")
    ax[3].set_ylabel("log10 share of power")
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "texture.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(1, 5, figsize=(22, 3.6))
    by = {g: np.flatnonzero(groups == g) for g in by_group}
    measures = (("lv_size", "LV diameter / FOV side", np.linspace(0, 0.45, 30)),
                ("body_fraction", "body share of the FOV", np.linspace(0, 1, 30)),
                ("blood_percentile", "LV blood percentile among body pixels", np.linspace(40, 100, 31)),
                ("rv_direction_deg", "RV direction from the LV (deg; 180 = image left)", np.linspace(0, 360, 37)),
                ("skin_direction_deg", "nearest skin from the LV (deg; 90 = up)", np.linspace(0, 360, 37)))
    for a, (key, title, bins) in zip(ax, measures):
        for g, idx in by.items():
            v = per_frame[key][idx]
            v = v[np.isfinite(v)]
            if v.size:
                a.hist(v, bins, density=True, histtype="step", lw=2 if g == "simulated" else 1, label=g)
        a.set_xlabel(title)
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "geometry.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for a, (kind, edges, xlabel, ylabel) in zip(ax, (
            ("blood", BLOOD_DEPTH_EDGES, "depth from the LV blood pool's contour (px)", "LV blood / its median"),
            ("air", AIR_DISTANCE_EDGES, "distance from the body (px)", "air outside the body / blood median"))):
        x = np.arange(len(edges))
        for g, r in by_group.items():
            rows = [r.get(k) for k in PROFILE_KEYS[kind]]
            if not any(rows):
                continue
            med, q1, q3 = (np.array([row[q] if row else np.nan for row in rows]) for q in ("median", "q1", "q3"))
            a.plot(x, med, marker="o", lw=2 if g == "simulated" else 1, label=g)
            a.fill_between(x, q1, q3, alpha=0.12)
        a.set_xticks(x, [f"{lo}-{hi}" for lo, hi in zip(edges, edges[1:])] + [f">= {edges[-1]}"], fontsize=8)
        a.set_xlabel(xlabel)
        a.set_ylabel(ylabel)
    ax[1].set_yscale("log")
    ax[0].legend(fontsize=7)
    fig.suptitle("median (IQR) over frames", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_dir / "profiles.png", dpi=90)
    plt.close(fig)

    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for name, (s, m) in curves.items():
        fpr, tpr, _ = roc_curve(is_real[m], s[m])
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("simulated frames called real")
    ax.set_ylabel("real frames called real")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "roc.png", dpi=90)
    plt.close(fig)


def _iqr(s, fmt="{:.2f}"):
    if s is None:
        return "n/a"
    return f"{fmt.format(s['median'])} ({fmt.format(s['q1'])}-{fmt.format(s['q3'])})"


def _report(m):
    sep, g = m["separability"], m["groups"]
    L = ["# Phantom realism: simulated vs real short-axis cine frames", "",
         "`make realism` (`ofrnn experiment realism`, settings `experiments/realism.toml`, profile "
         f"`{m['profile']}`, {m['timings']['total_s']:.0f} s). Real frames are split by patient: calibration "
         f"(ACDC {m['split']['calibration_acdc'][0]:03d}-{m['split']['calibration_acdc'][1]:03d}, Sunnybrook "
         f"{', '.join(m['split']['calibration_sunnybrook'])}) may be fitted, evaluation (every other patient) is only "
         "scored.", ""]
    for k, why in m["skipped"].items():
        L.append(f"- **{k} skipped**: {why}")
    L += ["## Separability (lower is better; 0.5 = indistinguishable; target <= 0.85)", "",
          "ROC AUC of real evaluation frames against held-out simulated frames, 95 % interval from a bootstrap "
          "over subjects. Every model is trained on the calibration real frames and other simulated subjects, and "
          "scores the simulated and evaluation subjects of its own fold.", "",
          "| classifier | all real evaluation frames | ACDC evaluation patients | Sunnybrook evaluation patients |", "|---|---|---|---|"]
    for name, r in sep.items():
        cells = [f"{r[k]['auc']:.3f} [{r[k]['ci95'][0]:.3f}, {r[k]['ci95'][1]:.3f}] ({r[k]['real_frames']} / "
                 f"{r[k]['simulated_frames']} frames)" if k in r else "n/a" for k in ("all", "acdc", "sunnybrook")]
        L.append(f"| {f'statistics: {name} alone' if name in STATISTICS else name} | " + " | ".join(cells) + " |")
    draws = m["settings"]["classifier"]["fold_draws"]
    L += ["", f"Tuning numbers (calibration real frames and simulated frames only, grouped cross-validation: "
          f"{m['settings']['classifier']['folds']} folds for the statistics, {m['settings']['cnn']['folds']} for the "
          "CNNs, which thus train on fewer frames than in the evaluation above"
          + (f"; in brackets the mean ± sd over {draws} draws of the statistics' folds, as the draw alone moves "
             "the AUC by a few hundredths" if draws > 1 else "") + "): AUC "
          + ", ".join(f"{k} {c['auc']:.3f}" + (f" ({c['auc_fold_draws_mean']:.3f} ± {c['auc_fold_draws_sd']:.3f})"
                                               if "fold_draws" in c else "")
                      for k, c in m["separability_calibration"].items()) + ".",
          "", "What gives the phantom away most, one statistic at a time (calibration real frames against "
          "simulated frames: the frames one may tune on; AUC of the statistic alone as a score for real, so "
          "below 0.5 means higher in simulated frames; means over frames: shares of the frame's pixels for the "
          "histograms, log10 of the band's share of the power for the spectrum; intensities and gradients over "
          "each frame's 99th percentile; a histogram's last bin holds everything above it):", "",
          "| statistic | AUC alone | simulated mean | real mean |", "|---|---|---|---|",
          *(f"| {r['name']} | {r['auc']:.3f} | {r['simulated']:.4g} | {r['real']:.4g} |"
            for r in m["separating_statistics"]),
          "", "What the logistic regression of all statistics leans on (fitted on the same frames; for a linear model "
          "the gap between the real and simulated frames' mean log-odds, "
          f"{m['classifier_leaning']['gap']:.1f} here, is the sum over the statistics of coefficient x standardised "
          "mean difference (real - simulated); a family can separate less alone while the model finds the gap "
          "through the others):", "",
          "| statistic | coefficient | standardised difference | share of the gap |", "|---|---|---|---|",
          *(f"| {r['name']} | {r['coefficient']:.3f} | {r['difference']:.2f} | {100 * r['share']:.0f} % |"
            for r in m["classifier_leaning"]["terms"]),
          "", "![ROC](roc.png)", "", "## Galleries", "", "![frames](gallery.png)", "", "![crops](crops.png)", "",
          "## Tissue intensity ratios", "",
          "Median (IQR) over frames. Blood and myocardium from labels (ACDC), manual contours (Sunnybrook; "
          "myocardium only at ED) and the phantom's masks. The body is the convex hull of the regions above 15 % "
          "of the blood level; its quantiles are over the blood median. Real frames have no labels for fat, "
          "liver, muscle or lung: they show in the body quantiles and in the bright share (>= 0.7 x blood: fat and "
          "fluid in bSSFP) and the dark share (< 0.15 x blood: lung and gas). Blood / noise: the blood median over "
          "Immerkaer's noise estimate (edges bias it low). Air / blood: the median outside the body (noise, "
          "ghosts; a reconstruction's blanked zeros left out). Blood core / rim: the LV blood pool's median "
          f"{CORE_DEPTH} or more pixels from its contour over its median {RIM_DEPTH[0]}-{RIM_DEPTH[1]} pixels from "
          "it (in-flow brightens the fast core, the slow blood by the trabeculated wall stays dark); blood IQR / "
          f"median: over the pool's pixels {RIM_DEPTH[0]} or more from the contour (`realism.blood_depth_measures`). The whole "
          "profiles, and the air's beside the body (`realism.air_distance_profile`; a haze that fades away from "
          "the body in real cines, a flat noise floor in the phantom):", "", "![profiles](profiles.png)", ""]
    L += ["| group | frames (subjects) | " + " | ".join(TISSUE_LABELS.values()) + " |",
          "|---" * (len(TISSUE_LABELS) + 2) + "|"]
    for name, r in g.items():
        L.append(f"| {name} | {r['frames']} ({r['subjects']}) | "
                 + " | ".join(_iqr(r.get(k), TISSUE_FORMATS.get(k, "{:.2f}")) for k in TISSUE_LABELS) + " |")
    L += ["", "Where the whole frame's pixels lie over the LV blood median (mean share of the frame; the "
          "99th percentile, median (IQR), sets the scale of the texture statistics' intensity axis):", "",
          "| group | " + " | ".join(LEVEL_LABELS.values()) + " |", "|---" * (len(LEVEL_LABELS) + 1) + "|"]
    for name, r in g.items():
        L.append(f"| {name} | {_iqr(r.get('p99_blood'))} | "
                 + " | ".join(f"{r[k]['mean']:.3f}" if r.get(k) else "n/a" for k in LEVEL_LABELS if k != "p99_blood")
                 + " |")
    sig = m["phantom_signal_over_blood"]
    L += ["", "The phantom's bSSFP signal over LV blood (flip 50 deg, nominal: the drawn transmit field lowers it; TR 3.0 ms at 1.5 T, "
          f"3.2 ms at 3 T; fat at its chemical shift; magnetization transfer at its mid-range {np.mean(MT_RANGE):g} in "
          "liver, muscle, spleen and abdomen; before texture, coil shading and noise):", "",
          "| tissue | " + " | ".join(sig) + " |", "|---|" + "---|" * len(sig)]
    for t in ("lv_myocardium", "subcutaneous_fat", "fat", "liver", "muscle", "spleen", "stomach", "abdomen", "lung"):
        L.append(f"| {t} | " + " | ".join(f"{sig[f][t]:.2f}" for f in sig) + " |")
    L += ["", "## Geometry", "",
          "| group | LV diameter / FOV side | RV direction (deg, 180 = image left) | nearest skin from the LV (deg, "
          "90 = up) | nearest skin (LV diameters) | matrix side (px) | short / long side | pixel (mm) |",
          "|---|---|---|---|---|---|---|---|"]
    for name, r in g.items():
        L.append(f"| {name} | {_iqr(r['lv_size'])} | {_iqr(r['rv_direction_deg'], '{:.0f}')} | "
                 f"{_iqr(r.get('skin_direction_deg'), '{:.0f}')} | {_iqr(r.get('skin_distance_lv'))} | "
                 f"{_iqr(r['matrix'], '{:.0f}')} | {_iqr(r.get('aspect'))} | {_iqr(r['pixel_mm'])} |")
    L += ["", "ACDC's shared copy keeps no pixel spacing. Sunnybrook has no RV contours. The nearest skin is the "
          "body's edge closest to the LV blood pool, off the frame's border: the chest wall, which shows how the "
          "oblique short-axis plane lies in the chest (the phantom turns its torso about the heart to match); its "
          "distance is in epicardial LV diameters (frames without a myocardium contour have none).", "",
          "![geometry](geometry.png)", "", "## Texture", "",
          "Mean ± sd over frames of each group: intensity and gradient histograms of the frame over its 99th "
          "percentile, uniform LBP histograms, radial power spectra (Hann window; shape only).", "",
          "![texture](texture.png)", "",
          "The body's pixel-scale texture by band of the frame over its 99th percentile (median (IQR) over frames; "
          "`realism.pixel_scale_measures`): noise sd (Immerkaer's mask, median-based) and median gradient per "
          "pixel in units of the 99th percentile, the share of pixels tied with their right neighbour after the "
          "LBP's quantisation, and the share with all 8 neighbours at least as bright (LBP code 8); frames: those with at least "
          f"{PIXEL_BAND_MIN_PIXELS} body pixels in the band. Where the noise "
          "sd is small against the gradient, the LBP reads slopes; where ties are many, flat neighbourhoods.", ""]
    for b, lo, hi in zip(PIXEL_BAND_NAMES, (0.0, *PIXEL_BANDS), (*PIXEL_BANDS, None)):
        L += [f"{b} ({lo:g}-{hi:g} x p99):" if hi else f"{b} (>= {lo:g} x p99):", "",
              "| group | frames | noise sd | gradient | ties | 8 of 8 >= centre |", "|---|---|---|---|---|---|"]
        for name, r in g.items():
            n = (r.get(f"px_{b}_noise") or {}).get("n", 0)
            L.append(f"| {name} | {n} | " + " | ".join(
                _iqr(r.get(f"px_{b}_{k}"), "{:.4f}" if k in ("noise", "gradient") else "{:.2f}")
                for k in ("noise", "gradient", "ties", "flat")) + " |")
        L.append("")
    auc = m.get("edge_coherence_auc") or {}
    alone = [f"{name} {auc[key]:.3f}" for key, name in (("evaluation", "evaluation patients"),
                                                          ("calibration", "calibration frames (where its gradient "
                                                                          "band was looked at)"))
             if auc.get(key) is not None]
    L += ["How straight the body's moderate edges run (`realism.edge_coherence`: the median orientation coherence of "
          f"the structure tensor, over {COHERENCE_SIGMA_PX:g} px, at the body's pixels with a gradient of "
          f"{MODERATE_GRADIENT[0]:g}-{MODERATE_GRADIENT[1]:g} x p99 per pixel; 1 along straight edges, about 0.5 for "
          "a mottle of 1 px grain and 0.25 for white noise; median (IQR) over frames; a diagnostic, not one of the "
          "classifier's statistics)"
          + ("; alone as a score for real against the simulated frames, AUC " + ", ".join(alone) if alone else "")
          + ":", "",
          "| group | frames | moderate-edge coherence |", "|---|---|---|"]
    for name, r in g.items():
        L.append(f"| {name} | {(r.get('edge_coherence') or {}).get('n', 0)} | {_iqr(r.get('edge_coherence'))} |")
    L += ["", "![edges](edges.png)", ""]
    L += [f"Versions: {m['versions']}. Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in m["timings"].items()), ""]
    return "\n".join(L)
