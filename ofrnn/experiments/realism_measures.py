"""The measures of one frame, for the phantom-realism experiment (:mod:`ofrnn.experiments.realism`).

Each function looks at a single cine frame (with its LV masks where it needs them) and returns
numbers that the experiment then compares between simulated and real frames:

* **texture statistics** (:func:`frame_statistics`): intensity and gradient-magnitude histograms of
  the frame over its 99th percentile (:func:`normalise`), uniform local-binary-pattern histograms
  (Ojala et al., IEEE TPAMI 24:971 (2002)) and the radial power spectrum (:func:`radial_spectrum`),
  named column by column by :func:`statistic_names`;
* **tissue measures** (:func:`tissue_measures`): the myocardium's contrast
  (:func:`myocardium_blood_ratio`) and intensity ratios relative to the LV blood pool,
  the body (:func:`body_mask`) and its intensity quantiles, the whole frame's shares by level
  (:func:`level_shares`), the blood pool from its contour inwards (:func:`blood_depth_measures`),
  the air beside the body (:func:`air_distance_profile`), Immerkaer's noise level
  (:func:`noise_level`), the body's pixel-scale texture by intensity band
  (:func:`pixel_scale_measures`), how straight its moderate edges run (:func:`edge_coherence`),
  the fat under the skin (:func:`subcutaneous_fat_ratio`), the nearest skin (:func:`skin_edge`,
  :func:`nearest_skin`, :func:`skin_direction_deg`) and the radius of a circular
  field-of-view mask (:func:`fov_mask_radius`);
* **geometry**: the LV's size (:func:`lv_size`), display angles (:func:`direction_deg`) and the
  heart-centred crop the CNN sees (:func:`heart_crop`).

The realism experiment (``make realism``: :mod:`ofrnn.experiments.realism` and its report,
:mod:`ofrnn.experiments.realism_report`) and the simulator's tests (``tests/test_simulate.py``) use
them.
"""
from __future__ import annotations

import numpy as np

#: body pixels at least this bright relative to the LV blood pool count as "bright tissue", those
#: below DARK as lung or gas (the level at which :func:`body_mask` draws the body's regions)
BRIGHT, DARK = 0.7, 0.15
#: body intensity quantiles reported relative to the LV blood pool
BODY_QUANTILES = (10, 25, 50, 75, 90)
#: the statistics' families, in the order of the classifier's features
STATISTICS = ("intensity", "gradient", "lbp", "spectrum")
#: upper ends of the intensity (over the 99th percentile) and gradient-magnitude histograms
INTENSITY_MAX, GRADIENT_MAX = 1.25, 0.3
#: pixels taken off the edge of the myocardium and blood masks before their contrast is measured
#: (:func:`myocardium_blood_ratio`): a label's edge pixels mix the two tissues (partial volume across
#: the endocardium, contours drawn on the boundary). ACDC 061-080 reads 0.465 on its labels as drawn,
#: 0.406 one pixel in and 0.385 two pixels in (median over frames), SC-HF-I-1 0.337 / 0.311 / 0.311;
#: the phantom's exact masks 0.342 / 0.335 / 0.340 (tuning cohort, 2026-12-06): read on the labels
#: as drawn, ACDC's contrast against the phantom's is overstated by about 12 %
CONTRAST_MARGIN_PX = 1
#: fewest pixels left in each mask for :func:`myocardium_blood_ratio` (thin apical walls erode away)
CONTRAST_MIN_PIXELS = 10
#: depth (pixels in from the skin) of the band :func:`subcutaneous_fat_ratio` reads, and its quantile:
#: the fat under the skin is the band's brightest tissue, though a thin layer shares it with muscle
FAT_BAND_PX, FAT_QUANTILE = (2, 8), 90
#: fewest skin-edge and band pixels for :func:`subcutaneous_fat_ratio`, and fewest dark body pixels
#: for the lung's level
FAT_MIN_SKIN_PIXELS, FAT_MIN_BAND_PIXELS, LUNG_MIN_PIXELS = 20, 50, 50
#: the per-frame intensity measures of :func:`tissue_measures`, with their report labels
TISSUE_LABELS = {"myocardium_blood": f"myocardium / blood ({CONTRAST_MARGIN_PX} px in)",
                 "fat_blood": f"fat under the skin / blood (q{FAT_QUANTILE})", "lung_blood": "lung / blood",
                 "snr": "blood / noise",
                 "blood_percentile": "blood percentile in body",
                 **{f"body_q{q}": f"body q{q} / blood" for q in BODY_QUANTILES},
                 "bright_share": "bright share", "dark_share": "dark share", "body_fraction": "body share of FOV",
                 "air_blood": "air / blood", "blood_core_rim": "blood core / rim",
                 "blood_spread": "blood IQR / median"}
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


def myocardium_blood_ratio(image, blood, myocardium, *, margin_px=CONTRAST_MARGIN_PX,
                           min_pixels=CONTRAST_MIN_PIXELS):
    """Median myocardium over median LV blood, each mask first eroded by ``margin_px``.

    Parameters
    ----------
    image : (H, W) array
        One frame, any intensity scale.
    blood : (H, W) array, read as bool
        The LV blood pool (labels, contours or the phantom's mask).
    myocardium : (H, W) array read as bool, or None
        The LV myocardium; None where a frame has no myocardium contour (Sunnybrook's ES frames).
    margin_px : int, keyword-only
        Pixels taken off each mask's edge (:data:`CONTRAST_MARGIN_PX`; 4-connected erosion, so a
        city-block distance; pixels on the image's border count as outside): the contrast is read
        away from the boundary, as an ROI is placed, so that partial volume and where a contour was
        drawn do not mix the two tissues into it. 0 reads the masks as drawn.
    min_pixels : int, keyword-only
        Fewest pixels each eroded mask must keep.

    Returns
    -------
    float
        The ratio; NaN without a myocardium (None or empty), or when either eroded mask keeps fewer
        than ``min_pixels`` pixels (a thin apical wall, a small apical pool).

    Raises
    ------
    ValueError
        ``margin_px`` is negative.
    """
    from scipy import ndimage as ndi

    if margin_px < 0:
        raise ValueError(f"margin_px must be 0 or more, got {margin_px}")
    if myocardium is None:
        return float("nan")
    myocardium, blood = (np.asarray(m, bool) for m in (myocardium, blood))
    if margin_px:
        myocardium, blood = (ndi.binary_erosion(m, iterations=margin_px) for m in (myocardium, blood))
    if myocardium.sum() < min_pixels or blood.sum() < min_pixels:
        return float("nan")
    img = np.asarray(image, np.float32)
    return float(np.median(img[myocardium]) / np.median(img[blood]))


def tissue_measures(image, blood, myocardium):
    """Intensity ratios of one frame with its LV blood-pool and myocardium masks.

    Returns a dict: ``myocardium_blood`` (:func:`myocardium_blood_ratio`: medians read
    :data:`CONTRAST_MARGIN_PX` in from both masks' edges; every other ratio is over the blood
    median on the whole mask, as drawn), ``blood_percentile`` (percentile of the blood median among
    body pixels), ``body_q<k>``
    (body intensity quantiles over the blood median), ``snr`` (blood median over
    :func:`noise_level`), ``bright_share`` (body share >= 0.7 x blood), ``dark_share`` (body share
    < 0.15 x blood: lung and gas), ``body_fraction`` (body share of the field of view), ``air_blood``
    (median of the frame outside the body over the blood median, exact zeros left out: a
    reconstruction's blanked corners; NaN with fewer than 100 such pixels), ``fat_blood``
    (:func:`subcutaneous_fat_ratio`), ``lung_blood`` (median of the body's pixels below the dark
    level, over the blood median: lung and gas; NaN with fewer than :data:`LUNG_MIN_PIXELS`), and the whole frame's
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
    out = dict(myocardium_blood=myocardium_blood_ratio(img, blood, myocardium),
               blood_percentile=float(100 * np.mean(v < b)), snr=b / max(noise_level(img), 1e-9), bright_share=float(np.mean(v >= BRIGHT * b)),
               body_fraction=float(body.mean()))
    # lung and gas: the body's pixels below the DARK level, their share and their median (the lung)
    dark = v[v < DARK * b]
    out["dark_share"] = float(dark.size / v.size)
    out["lung_blood"] = float(np.median(dark) / b) if dark.size >= LUNG_MIN_PIXELS else float("nan")
    skin = skin_edge(body, img, b)  # read by the fat under it and by the nearest skin
    air = img[~body & (img > 0)]
    out["air_blood"] = float(np.median(air) / b) if air.size >= 100 else float("nan")
    out["fat_blood"] = subcutaneous_fat_ratio(img, body, b, edge=skin)
    for q, val in zip(BODY_QUANTILES, np.percentile(v, BODY_QUANTILES)):
        out[f"body_q{q}"] = float(val / b)
    out.update(level_shares(img, b))
    out.update(blood_depth_measures(img, blood))
    out.update(air_distance_profile(img, body, b))
    out.update(pixel_scale_measures(img, body))
    out["edge_coherence"] = edge_coherence(img, body)
    step = nearest_skin(body, img, blood, b, edge=skin)
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


def skin_edge(body, image, level):
    """The body's edge pixels that are skin: not on the frame's border, not on the rim of a circular
    FOV mask (:func:`fov_mask_radius`) and brighter than 5 % of the blood ``level`` there (a blanked
    or cut-off edge is not skin). (H, W) bool."""
    from scipy import ndimage as ndi

    img = np.asarray(image)
    edge = body & ~ndi.binary_erosion(body)
    edge[:3], edge[-3:], edge[:, :3], edge[:, -3:] = False, False, False, False
    edge &= img > 0.05 * level
    r = _centre_distance(img.shape)
    return edge & (r < fov_mask_radius(img, r) - 3)


def subcutaneous_fat_ratio(image, body, level, *, band_px=FAT_BAND_PX, quantile=FAT_QUANTILE, edge=None):
    """The fat under the skin over the blood ``level``: the ``quantile`` of the body's pixels
    ``band_px`` (first, last) pixels in from the skin (:func:`skin_edge`).

    Real frames carry no fat labels; the fat under the skin is the one fat every short-axis frame
    shows, and the brightest tissue of the body wall's outer centimetre in bSSFP, so a high quantile
    of that band reads it (a band two pixels in leaves the skin's own partial volume out). The
    phantom is read the same way. The surface coils' shading that a scanner's normalisation leaves
    is part of what it reads, in real frames and in the phantom alike.

    Parameters
    ----------
    image : (H, W) array
    body : (H, W) bool
        :func:`body_mask`.
    level : float
        The LV blood pool's median.
    band_px : (int, int), keyword-only
        Depth range (pixels, inclusive) of the band.
    quantile : float, keyword-only
        Percentile of the band's values.
    edge : (H, W) bool, keyword-only
        :func:`skin_edge` of the same frame when the caller has it (None: computed here).

    Returns
    -------
    float
        NaN with fewer than :data:`FAT_MIN_SKIN_PIXELS` skin pixels or :data:`FAT_MIN_BAND_PIXELS`
        band pixels.
    """
    from scipy import ndimage as ndi

    edge = skin_edge(body, image, level) if edge is None else edge
    if edge.sum() < FAT_MIN_SKIN_PIXELS:
        return float("nan")
    depth = ndi.distance_transform_edt(~edge)
    band = body & (depth >= band_px[0]) & (depth <= band_px[1])
    if band.sum() < FAT_MIN_BAND_PIXELS:
        return float("nan")
    return float(np.percentile(np.asarray(image, np.float32)[band], quantile) / level)


def nearest_skin(body, image, blood, level, *, edge=None):
    """(dy, dx) pixels from the LV blood pool's centroid to the nearest point of the body's edge
    that is skin (:func:`skin_edge`; ``edge``: that of the same frame when the caller has it). It is
    the chest wall nearest the heart. (NaN, NaN) when no edge qualifies, so angles and distances of
    it are NaN."""
    edge = skin_edge(body, image, level) if edge is None else edge
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
