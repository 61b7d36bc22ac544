"""Scene realism: what surrounds the heart in a real short-axis cine, and bSSFP banding.

A heart detector trained on a tidy torso learns that the LV is "the round bright thing"; real
frames (Sunnybrook, ACDC) are full of round bright things. This module adds the structures that
cause such confusions, drawn from the anatomy of the oblique short-axis plane:

* **bowel loops** (mid and apical slices cut the upper abdomen): rings of gut wall around fluid
  (bright in bSSFP), semi-solid content or gas, clustered in the left upper quadrant;
* **spleen** (apical slices), a large mid-grey organ posterolateral to the stomach;
* **great vessels and atria** (basal slices): the aortic root / LV outflow tract and pulmonary
  trunk anterior-medial to the LV, the left atrium behind it; the inferior vena cava in the liver;
  bright blood discs with thin walls, the most LV-like distractors there are;
* **pericardial fat pads** (cardiophrenic angle, apex): bright, irregular;
* **fat septa and bowel**: fat between the muscle bellies of the body wall and the back, and the
  upper abdomen split into loops of gut wall, content and fluid with mesenteric fat between them
  (:func:`fat_planes`);
* **small vessels and bronchi** dotting the lungs, liver and spleen (:func:`sample_small_vessels`);
* **organ texture**: heterogeneous liver, muscle and fat (stronger than the fine tissue texture
  the heart keeps);
* **off-resonance**: a B0 field shimmed on the heart but not elsewhere, which bSSFP turns into dark
  bands where the phase accrued per TR nears pi (:func:`ofrnn.simulate.mri.bssfp_profile`).

Everything here draws from its own random stream (see :func:`scene_rng`), so adding the scene did
not change any subject's heart, motion, infarct or noise: the cohort's ground truth is that of the
tidy phantom.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .anatomy import VESSEL_SPREAD_MM
from .mri import Tissue, smooth_field

#: stream indices below a subject's SeedSequence (arbitrary constants that the cohort's own spawn
#: keys never take): the scene, and the acquisition settings added after it
SCENE_STREAM = 0x5CE7E
ACQUISITION_STREAM = 0xAC0
VESSEL_STREAM = 0x7E55E1
INFLOW_STREAM = 0xF1011


def substream(seed, stream):
    """A generator for a subject seed (int or SeedSequence) independent of the main one and of
    every other ``stream``: draws added there change nothing drawn elsewhere."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.default_rng([*ss.generate_state(4).tolist(), stream])


def scene_rng(seed):
    """The scene's generator for a subject seed (int or SeedSequence), independent of the main one."""
    return substream(seed, SCENE_STREAM)


def _polar(centre, radius, angle):
    """(row, col) mm of a point ``radius`` from ``centre`` at display angle ``angle`` (0 right, 90 deg up)."""
    return centre[0] - radius * np.sin(angle), centre[1] + radius * np.cos(angle)


#: size (mm, smoothing of the random field) of the bowel compartments of :func:`fat_planes`
BOWEL_SCALE_MM = 12.0
#: the fat septa of :func:`fat_planes` (and the mesentery) are kept where a coarse (30 mm) random
#: field, in standard deviations, lies above this: -1 keeps them over 84 % of the muscle, as
#: intermuscular fat separates the muscle groups of a real body wall and back; the former -0.25
#: (60 %, in patches) left whole muscles without an edge inside them. With
#: :func:`sample_small_vessels`, in a trial of the two alone, the real-vs-simulated statistics
#: went from 0.908 to 0.895 and from 0.938 to 0.922 on two tuning draws; as shipped in 12-05e
#: (with the signed bands and the texture's clip) 0.901 and 0.934, and level on the evaluation
#: patients (docs/phantom-realism.md)
SEPTA_THRESHOLD = -1.0
#: small vessels and bronchi cut across by the slice, in the lungs, liver and spleen
#: (:func:`sample_small_vessels`): how many are drawn over the chest and upper abdomen, their
#: radius (mm) and the share that is bright flowing blood
SMALL_VESSELS = 200
SMALL_VESSEL_RADIUS_MM = (0.7, 2.5)
SMALL_VESSEL_BRIGHT = 0.6


def sample_scene(rng, anatomy):
    """Draw the structures around the heart for one subject (image mm, row/col).

    Returns a dict of lists of ellipses ``(row, col, r_row, r_col, wall_mm, content)`` per kind
    (``organs``, ``loops``, ``vessels``, ``fat``: turned with the torso; ``great``: the great
    vessels and left atrium, placed on the heart and not turned), the ``stomach``'s wall and
    content, the ``diaphragm`` dome, the fat ``planes``, the ``texture`` and ``offresonance``
    settings, and ``turn_deg``, the torso's turn about the heart; :func:`paint_scene` and
    :func:`paint_planned` draw the ellipses.
    """
    a, level = anatomy, anatomy.level
    c = a.centre_mm
    heart = a.heart_radius
    loops = []
    # bowel: left upper quadrant (image right-below of the heart); more of it the lower the slice
    n_loops = {"basal": rng.integers(0, 4), "mid": rng.integers(3, 10), "apical": rng.integers(6, 16)}[level]
    for _ in range(int(n_loops)):
        r = rng.uniform(7, 20)
        content = rng.choice([Tissue.STOMACH, Tissue.GUT_CONTENT, Tissue.AIR], p=[0.5, 0.35, 0.15])
        y, x = c[0] + rng.uniform(heart * 0.6, 160), c[1] + rng.uniform(-20, 170)
        loops.append((y, x, r * rng.uniform(0.7, 1.0), r * rng.uniform(0.7, 1.0), rng.uniform(1.5, 3.5), int(content)))
    vessels, great = [], []
    # great vessels and the left atrium cut by basal (sometimes mid) planes, touching the heart:
    # aortic root anterior-septal, pulmonary trunk anterior, left atrium posterior (placed
    # relative to the heart, as the plane is: they do not turn with the torso)
    if level == "basal" or (level == "mid" and rng.random() < 0.3):
        rv = a.rv_centre
        # (probability, angle, radius range mm): aortic root, pulmonary trunk, left atrium
        for p, ang, (r_lo, r_hi) in ((0.8, rv - np.deg2rad(rng.uniform(30, 70)), (11, 17)),
                                     (0.5, rv - np.deg2rad(rng.uniform(60, 100)), (10, 14)),
                                     (0.6, np.deg2rad(rng.uniform(-120, -60)), (15, 26))):
            if rng.random() < p:
                r = rng.uniform(r_lo, r_hi)
                y, x = _polar(c, heart + r * rng.uniform(0.6, 1.0), ang)
                great.append((y, x, r * rng.uniform(0.8, 1.0), r, rng.uniform(1.5, 2.5), int(Tissue.AORTA_BLOOD)))
    # inferior vena cava within the liver
    if rng.random() < 0.7:
        ly, lx, lry, lrx = a.body["liver"]
        r = rng.uniform(9, 13)
        vessels.append((ly - lry * rng.uniform(0.1, 0.5), lx + lrx * rng.uniform(0.2, 0.6), r, r * rng.uniform(0.8, 1.1),
                        1.0, int(Tissue.AORTA_BLOOD)))
    fat = []
    # pericardial fat pads at the cardiophrenic angle and the apex
    for _ in range(int(rng.integers(0, 4 if level == "apical" else 3))):
        r = rng.uniform(6, 18)
        y, x = _polar(c, heart + r * 0.5, np.deg2rad(rng.uniform(-150, -10)))
        fat.append((y, x, r * rng.uniform(0.5, 1.0), r, 0.0, int(Tissue.FAT)))
    spleen = []
    if level == "apical" or rng.random() < 0.3:
        spleen.append((c[0] + rng.uniform(70, 110), c[1] + rng.uniform(110, 160), rng.uniform(25, 40),
                       rng.uniform(35, 50), 0.0, int(Tissue.SPLEEN)))
    # the stomach (placed with the torso) gets a wall and a content: a ring of soft tissue as thick
    # as a myocardium around fluid, food or gas is the most LV-like thing below the diaphragm
    stomach = dict(wall_mm=float(rng.uniform(3, 7)),
                   content=int(rng.choice([Tissue.STOMACH, Tissue.GUT_CONTENT, Tissue.AIR], p=[0.45, 0.4, 0.15])))
    # the diaphragm's dome (row of its top and its column, mm; curvature 1/mm): apical slices cut
    # more abdomen than basal ones
    # (dome 25-60 mm above the LV centre, so the lung lies lateral to the heart and in the
    # costophrenic recesses: 16 % of the body reads below 0.15 of the blood level in ACDC 061-080
    # (30 % in SC-HF-I-1); the former dome 0-35 mm below the LV centre gave 29 %, this one 16 %,
    # tuning cohort, `make realism-calibrate`)
    diaphragm = (c[0] + {"apical": -60.0, "mid": -45.0, "basal": -25.0}[level] + rng.normal(0, 10), c[1] - 20.0,
                 1 / rng.uniform(300, 600))
    # fat septa between the muscle bellies: the zero set of a smooth random field (a network of
    # curved lines about ``scale_mm`` apart), ``width_mm`` thick; the same seed draws the bowel
    # compartments of the abdomen (fat_planes)
    planes = dict(seed=int(rng.integers(2 ** 31)), scale_mm=float(rng.uniform(2.5, 6)),
                  width_mm=float(rng.uniform(1.5, 3.0)))
    return dict(
        organs=spleen, loops=loops, vessels=vessels, great=great, fat=fat, stomach=stomach, diaphragm=diaphragm, planes=planes,
        # organ texture: heterogeneity of liver, spleen, muscle, gut and fat, and the vessels and
        # partial volume a cine's 8 mm slice averages in; amplitude and grain set on the gradient
        # histograms of the calibration frames, which hold twice the phantom's share of moderate
        # gradients (0.1-0.17 of the 99th percentile per pixel) at the former 0.15-0.35 and 1-3 mm
        # (`make realism-calibrate`)
        texture=dict(amplitude=float(rng.uniform(0.25, 0.45)), sigma_mm=float(rng.uniform(2.0, 4.0))),
        # off-resonance (Hz) at 100 mm from the shimmed heart: up to about half a band spacing
        # (1 / (2 TR) ~ 160 Hz) at 3 T, less at 1.5 T (field-proportional); field_hz() scales it
        offresonance=dict(hz_100mm=float(rng.uniform(0, 120)), roughness_hz=float(rng.uniform(5, 40))),
        # the torso's turn about the heart (deg, counter-clockwise): the short-axis plane is
        # planned on the heart's axes, which lie oblique in the chest, so the chest wall nearest
        # the heart shows up-left of it rather than straight up. Measured as the direction from
        # the LV to the nearest skin on ACDC 061-080 (median 144 deg, IQR 112-166) and SC-HF-I-1
        # (225 deg) against 90 deg unturned (`make realism-calibrate`'s frames)
        turn_deg=float(rng.normal(50.0, 35.0)),
    )


def paint_scene(lab, rows, cols, body, paint):
    """Draw the scene's ellipses into the material map ``lab`` where it is still lung (the torso's
    default interior), so organs already placed (liver, stomach, spine, aorta) keep their place;
    ``paint(lab, rows, cols, cy, cx, ry, rx, value, within)`` is the renderer's ellipse painter
    (passed in to keep this module free of rendering). ``body`` is the torso dict holding the
    scene under ``"scene"``."""
    scene = body["scene"]
    free = (Tissue.LUNG, Tissue.ABDOMEN)
    if body.get("stomach") is not None:
        cy, cx, ry, rx = body["stomach"]
        wall, content = scene["stomach"]["wall_mm"], scene["stomach"]["content"]
        paint(lab, rows, cols, cy, cx, ry, rx, Tissue.SOFT_TISSUE, within=(Tissue.STOMACH,))
        paint(lab, rows, cols, cy, cx, ry - wall, rx - wall, content, within=(Tissue.SOFT_TISSUE,))
    for cy, cx, ry, rx, _, value in scene["organs"]:
        paint(lab, rows, cols, cy, cx, ry, rx, value, within=free)
    for kind in ("loops", "vessels"):
        _walled(lab, rows, cols, scene[kind], paint)
    for cy, cx, ry, rx, _, value in scene["fat"]:
        paint(lab, rows, cols, cy, cx, ry, rx, value, within=free)
    if "planes" in scene:
        fat_planes(lab, rows[1, 0] - rows[0, 0], scene["planes"])
    for cy, cx, r, value in scene.get("small_vessels", ()):
        paint(lab, rows, cols, cy, cx, r, r, value, within=(Tissue.LUNG, Tissue.LIVER, Tissue.SPLEEN))


def sample_small_vessels(rng, anatomy):
    """Small pulmonary, hepatic and splenic vessels and bronchi cut across by the slice.

    A short-axis cine's lungs are dotted with bright vessels and its liver and spleen with the
    cross-sections of their veins; the anatomy's 40-80 larger vessels left them nearly empty, and
    with them the edges at the pixel scale that real frames hold. Scattered over the same area as
    those (:data:`.anatomy.VESSEL_SPREAD_MM`, unturned torso, image mm), and painted by
    :func:`paint_scene` only where they fall in lung, liver or spleen.

    Parameters
    ----------
    rng : numpy.random.Generator
        Their own stream (:data:`VESSEL_STREAM`), so adding them changed no other draw.
    anatomy : Anatomy

    Returns
    -------
    list of (row, col, radius, tissue)
        Centres and radii in mm; the tissue is :attr:`Tissue.AORTA_BLOOD` (bright flowing blood,
        :data:`SMALL_VESSEL_BRIGHT` of them) or :attr:`Tissue.SOFT_TISSUE` (a vessel's wall, a
        bronchus' cartilage, slow blood).
    """
    cy, cx = anatomy.centre_mm
    n = SMALL_VESSELS
    (hr, hc) = VESSEL_SPREAD_MM
    rows, cols = cy + rng.uniform(-hr, hr, n), cx + rng.uniform(-hc, hc, n)
    radius = rng.uniform(*SMALL_VESSEL_RADIUS_MM, n)
    bright = rng.random(n) < SMALL_VESSEL_BRIGHT
    return [(float(y), float(x), float(r), int(Tissue.AORTA_BLOOD if b else Tissue.SOFT_TISSUE))
            for y, x, r, b in zip(rows, cols, radius, bright)]


def _walled(lab, rows, cols, ellipses, paint):
    """Paint walled ellipses: wall first, then the content inside it; a gut wall or vessel wall
    is soft tissue. Vessels run through the liver and the mediastinal fat, loops lie against the
    spleen."""
    for cy, cx, ry, rx, wall, value in ellipses:
        paint(lab, rows, cols, cy, cx, ry, rx, Tissue.SOFT_TISSUE,
              within=(Tissue.LUNG, Tissue.ABDOMEN, Tissue.LIVER, Tissue.SPLEEN, Tissue.FAT))
        paint(lab, rows, cols, cy, cx, max(ry - wall, 1.0), max(rx - wall, 1.0), value, within=(Tissue.SOFT_TISSUE,))


def paint_planned(lab, rows, cols, body, paint):
    """Draw the great vessels and the left atrium, placed relative to the heart (after the torso
    has been turned; see :func:`ofrnn.simulate.render.material_map`), as :func:`paint_scene`."""
    _walled(lab, rows, cols, body["scene"].get("great", ()), paint)


def fat_planes(lab, step_mm, planes):
    """Thin fat septa between the muscle bellies of the body wall and the back, and the bowel of the
    upper abdomen, in place on the material map ``lab`` (``step_mm`` between points).

    * **Septa**: where a smooth Gaussian random field crosses zero, within ``width_mm`` (its zero
      set is a network of curved lines ``scale_mm`` apart), kept where a coarse (30 mm) field
      lies above :data:`SEPTA_THRESHOLD` (in most of the muscle, in patches).
    * **Bowel**: the abdomen below the diaphragm is loops of gut rather than one tissue. A second
      field (12 mm) splits it into compartments: soft tissue (wall, collapsed loops), semi-solid
      content above 0.4 sd and fluid above 1.1 sd, with a fat plane (mesentery) around the content
      in the same patches. Their edges are what fills a real abdomen with mid-contrast outlines;
      the former even net of bright fat lines over a uniform abdomen left the phantom with half the
      calibration frames' share of moderate gradients and twice their share of the steepest ones
      (`make realism-calibrate`).
    """
    rng = np.random.default_rng(planes["seed"])
    f = smooth_field(lab.shape, rng, sigma_px=planes["scale_mm"] / step_mm, amplitude=1.0)
    gy, gx = np.gradient(f)
    # distance to the zero set ~ |f| / |grad f| (first order)
    near = np.abs(f) < 0.5 * planes["width_mm"] / step_mm * np.hypot(gy, gx)
    # (drawn on an 8x coarser grid and interpolated: a 30 mm blur of the full grid costs a second)
    q = 8
    coarse = smooth_field((-(-lab.shape[0] // q), -(-lab.shape[1] // q)), rng, sigma_px=30.0 / step_mm / q,
                          amplitude=1.0)
    patch = ndi.zoom(coarse, q, order=1)[:lab.shape[0], :lab.shape[1]] > SEPTA_THRESHOLD
    lab[near & patch & (lab == Tissue.MUSCLE)] = Tissue.FAT
    g = smooth_field(lab.shape, rng, sigma_px=BOWEL_SCALE_MM / step_mm, amplitude=1.0)
    abdomen = lab == Tissue.ABDOMEN
    lab[abdomen & (g > 0.4)] = Tissue.GUT_CONTENT
    lab[abdomen & (g > 1.1)] = Tissue.STOMACH
    gy, gx = np.gradient(g)
    mesentery = np.abs(g + 0.3) < 0.5 * 1.5 / step_mm * np.hypot(gy, gx)  # 1.5 mm thick
    lab[abdomen & mesentery & patch] = Tissue.FAT


def _heart_distance(shape, spacing, centre_mm, radius_mm):
    """Distance (mm) of every pixel centre beyond ``radius_mm`` from the LV centre (0 inside)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32) * spacing
    return np.clip(np.hypot(yy - centre_mm[0], xx - centre_mm[1]) - radius_mm, 0, None)


def organ_texture(rng, scene, shape, spacing, anatomy):
    """Multiplicative texture (1 = none) of the organs around the heart, fading in from 10 mm
    beyond the heart so the heart keeps its own fine texture; never below 0 (a Gaussian field at
    25-45 % falls below -1 on about 1 % of the organs' pixels, which would turn the signal's sign)."""
    t = scene["texture"]
    f = smooth_field(shape, rng, sigma_px=t["sigma_mm"] / spacing, amplitude=t["amplitude"])
    d = _heart_distance(shape, spacing, anatomy.centre_mm, anatomy.heart_radius + 10.0)
    return np.clip(1 + f * np.clip(d / 20.0, 0, 1), 0, None)


def field_hz(rng, scene, shape, spacing, anatomy, field_t):
    """Off-resonance map (Hz) on a grid of ``spacing`` mm: zero at the LV centre (shim volume on
    the heart), growing quadratically away from it (the residual of a second-order shim over a
    chest), plus a smooth susceptibility term; proportional to the field strength."""
    o = scene["offresonance"]
    d = _heart_distance(shape, spacing, anatomy.centre_mm, 0.0)
    rough = smooth_field(shape, rng, sigma_px=30.0 / spacing, amplitude=1.0)
    hz = o["hz_100mm"] * (d / 100.0) ** 2 * (1 + 0.3 * rough) + o["roughness_hz"] * rough * np.clip(d / 60.0, 0, 1)
    return hz * (field_t / 3.0)


def band_index(hz, tr_ms, n_bins, *, periods=1):
    """Bin of the phase accrued per TR, beta = 2 pi f TR, wrapped to [-periods pi, periods pi), on
    ``n_bins`` bins per period of 2 pi (``periods * n_bins`` in all): the columns of
    :func:`ofrnn.simulate.mri.band_table` with ``signed=False`` (1 period) or ``signed=True`` (2)."""
    half = periods * np.pi
    beta = np.mod(2 * np.pi * hz * tr_ms * 1e-3 + half, 2 * half) - half
    return np.rint((beta + half) / (2 * np.pi) * n_bins).astype(np.intp) % (periods * n_bins)


def subsample_positions(n, k):
    """Positions, in pixels, of the ``k`` material-grid sub-samples per pixel along an axis of ``n``
    pixels (pixel centres at 0, 1, ...; the renderer's grid, :func:`ofrnn.simulate.render.render`)."""
    return (np.arange(n * k) + 0.5) / k - 0.5


def upsample(field, k):
    """Nearest-neighbour ``k``-times upsampling of a smooth per-pixel field to the material grid."""
    return np.repeat(np.repeat(field, k, axis=0), k, axis=1)


def upsample_linear(field, k):
    """Bilinear ``k``-times upsampling of a smooth per-pixel field to the material grid
    (:func:`subsample_positions`), so a field varies inside each pixel; edges are held."""
    H, W = field.shape
    grid = np.meshgrid(subsample_positions(H, k), subsample_positions(W, k), indexing="ij")
    return ndi.map_coordinates(np.asarray(field, np.float64), grid, order=1, mode="nearest")
