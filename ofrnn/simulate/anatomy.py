"""Subject anatomy and infarct, sampled per subject, in the end-diastolic (material) frame.

Geometry is polar around the LV centre. Angles follow the display convention of short-axis
images (viewed from the apex, anterior up, patient's right on the image left): theta = 0 points to
the image right (lateral wall), theta = 90 deg up (anterior), counter-clockwise positive. Every
angle-dependent quantity is a periodic profile sampled on :data:`N_ANGLES` bins.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_ANGLES = 720
THETA = np.arange(N_ANGLES) * (2 * np.pi / N_ANGLES)
LEVELS = ("apical", "mid", "basal")

#: ED endocardial radius (mm) and compact wall thickness (mm) by level, mean and sd. Cavity
#: diameters 40-55 mm at the base narrowing to the apex, walls 6-9 mm thinning apically:
#: Kawel et al., JCMR 14:27 (2012) (normal LV wall thickness by SSFP CMR); Lorenz et al., JCMR 1:7
#: (1999) (normal LV dimensions by cine CMR).
LV_SIZE = {
    "basal": dict(r_endo=(25.0, 2.5), wall=(8.0, 0.8)),
    "mid": dict(r_endo=(22.0, 2.5), wall=(7.5, 0.8)),
    "apical": dict(r_endo=(15.0, 2.0), wall=(6.5, 0.7)),
}
#: RV crescent depth at its centre (mm); the RV narrows towards the apex.
RV_DEPTH = {"basal": (28.0, 4.0), "mid": (22.0, 4.0), "apical": (11.0, 3.0)}

#: coronary territories as AHA segments (Cerqueira et al., Circulation 105:539 (2002), Fig. 5),
#: with the usual overlap at the inferolateral (RCA/LCX) and apical-lateral borders.
TERRITORIES = {
    "LAD": (1, 2, 7, 8, 13, 14),
    "RCA": (3, 4, 9, 10, 15),
    "LCX": (5, 6, 11, 12, 16),
}
TERRITORY_P = {"LAD": 0.45, "RCA": 0.35, "LCX": 0.20}
#: overlap segments a territory may reach into when the infarct centre is placed
TERRITORY_OVERLAP = {"LAD": (16,), "RCA": (5, 11, 16), "LCX": (4, 10, 15)}
#: share of slices without infarct
NO_INFARCT_FRACTION = 0.15


def periodic_profile(rng, *, base, rel_amp, kmax, decay=1.0):
    """``base * (1 + sum_k a_k cos(k theta + phi_k))`` with a_k ~ N(0, rel_amp / k**decay)."""
    p = np.ones(N_ANGLES)
    for k in range(1, kmax + 1):
        p += rng.normal(0, rel_amp / k ** decay) * np.cos(k * THETA + rng.uniform(0, 2 * np.pi))
    return base * p


def sample_profile(profile, theta):
    """Linear interpolation of a periodic profile at angles ``theta`` (radians)."""
    u = np.mod(theta, 2 * np.pi) * (N_ANGLES / (2 * np.pi))
    i0 = np.floor(u).astype(np.intp)
    w = u - i0
    i0 %= N_ANGLES
    return profile.take(i0) * (1 - w) + profile.take((i0 + 1) % N_ANGLES) * w  # take: a faster gather


def angle_diff(a, b):
    """Signed smallest difference a - b in (-pi, pi]."""
    return np.angle(np.exp(1j * (np.asarray(a) - b)))


def aha_segment(theta, level, *, anterior_insertion, inferior_insertion, rv_centre):
    """AHA segment number of angles ``theta`` for a slice level.

    Basal and mid slices: the septum between the RV insertion points makes two segments, the free
    wall four of equal width (Cerqueira et al. 2002). Apical slices: four 90-degree segments
    centred on the septum (13 anterior, 14 septal, 15 inferior, 16 lateral).
    """
    theta = np.asarray(theta)
    if level == "apical":
        u = np.mod(theta - rv_centre + np.pi / 4, 2 * np.pi)  # 0 at the septal segment's start
        k = np.minimum((u // (np.pi / 2)).astype(int), 3)
        return np.array([14, 15, 16, 13], np.uint8)[k]
    septum = np.mod(inferior_insertion - anterior_insertion, 2 * np.pi)
    u = np.mod(theta - anterior_insertion, 2 * np.pi)
    free = 2 * np.pi - septum
    k = np.where(u < septum, np.minimum(u // (septum / 2), 1),
                 2 + np.minimum((u - septum) // (free / 4), 3)).astype(int)
    first = 1 if level == "basal" else 7
    # order counter-clockwise from the anterior insertion: anteroseptal, inferoseptal, inferior,
    # inferolateral, anterolateral, anterior
    return (first + np.array([1, 2, 3, 4, 5, 0])[k]).astype(np.uint8)


@dataclass
class Infarct:
    """A scar in material coordinates: transmural extent tau(theta) from the endocardium."""

    territory: str
    centre: float  # rad
    transmurality: np.ndarray  # (N_ANGLES,) fraction of the wall from the endocardium, 0..1
    chronic_thinning: float  # 0..1, share of the maximal thinning of transmural scar

    @property
    def max_transmurality(self):
        return float(self.transmurality.max())


@dataclass
class Anatomy:
    level: str
    centre_mm: np.ndarray  # (y, x) of the LV centre in image mm (row, col) * spacing
    r_endo: np.ndarray  # (N_ANGLES,) ED endocardial radius, mm (after scar thinning)
    r_epi: np.ndarray  # (N_ANGLES,) ED epicardial radius, mm
    rv_depth: np.ndarray  # (N_ANGLES,) RV cavity depth beyond the LV epicardium, mm (0 = no RV)
    rv_wall: float
    fat: np.ndarray  # (N_ANGLES,) epicardial fat thickness, mm
    rv_centre: float
    anterior_insertion: float
    inferior_insertion: float
    papillary: list = field(default_factory=list)  # (theta, radius mm) attached to the endocardium
    trabeculae: list = field(default_factory=list)  # (theta, depth mm, radius mm)
    infarct: Infarct | None = None
    body: dict = field(default_factory=dict)

    @property
    def heart_radius(self):
        """Largest material radius of the heart with its fat (mm)."""
        return float(np.max(self.r_epi + np.where(self.rv_depth > 0, self.rv_depth + self.rv_wall, 0) + self.fat))

    def aha(self, theta):
        return aha_segment(theta, self.level, anterior_insertion=self.anterior_insertion,
                           inferior_insertion=self.inferior_insertion, rv_centre=self.rv_centre)


def _bump(u):
    """Flat-topped bump on |u| < 1 (infarcts: a core of near-constant transmurality)."""
    v = np.clip(1 - np.abs(u) ** 2.5, 0, None)
    return v ** 0.6


def sample_infarct(rng, anatomy: Anatomy):
    """Sample a coronary-territory infarct for this slice, or None.

    Size: a share of the slice myocardium drawn around that of real LGE scars (EMIDEC).
    Transmurality: a wavefront from the endocardium
    (Reimer & Jennings, Lab Invest 40:633 (1979)); about 30 % subendocardial (max 30-60 %),
    the rest reaching 70-100 %, as in LGE series of chronic MI (EMIDEC: Lalande et al., Data 5:89
    (2020)). The lateral edges and the epicardial front are irregular (low-order angular noise).
    """
    if rng.random() < NO_INFARCT_FRACTION:
        return None
    names = list(TERRITORY_P)
    territory = names[rng.choice(len(names), p=[TERRITORY_P[n] for n in names])]
    segs = [s for s in TERRITORIES[territory] + TERRITORY_OVERLAP[territory]
            if s in {"basal": range(1, 7), "mid": range(7, 13), "apical": range(13, 17)}[anatomy.level]]
    own = [s for s in segs if s in TERRITORIES[territory]]
    target = own[rng.integers(len(own))] if rng.random() < 0.85 or len(segs) == len(own) else \
        [s for s in segs if s not in own][rng.integers(len(segs) - len(own))]
    seg_of_theta = anatomy.aha(THETA)
    candidates = THETA[seg_of_theta == target]
    centre = float(candidates[rng.integers(len(candidates))])
    tau_max = rng.uniform(0.3, 0.6) if rng.random() < 0.3 else rng.uniform(0.7, 1.0)
    # share of the slice myocardium: log-normal around EMIDEC's LGE slices with scar (median 22 %,
    # interquartile range 14-37 % measured on /shared/data/emidec), clipped to 5-45 %
    share = float(np.clip(0.24 * np.exp(rng.normal(0, 0.55)), 0.05, 0.45))
    edge_noise = periodic_profile(rng, base=1.0, rel_amp=0.12, kmax=6) - 1
    front_noise = periodic_profile(rng, base=1.0, rel_amp=0.10, kmax=12, decay=0.5)
    chronic = float(rng.uniform(0.3, 1.0))

    def scar(half_width):
        u = angle_diff(THETA, centre) / half_width + edge_noise
        tau = np.clip(tau_max * _bump(u) * front_noise, 0, 1)
        tau[tau < 0.05] = 0
        # areas per unit angle of the (thinned, see thinning()) wall and of its scar
        r_endo = anatomy.r_epi - (anatomy.r_epi - anatomy.r_endo) * (1 - thinning(tau, chronic))
        wall = anatomy.r_epi - r_endo
        scar_area = tau * wall * (r_endo + tau * wall / 2)
        return tau, scar_area.sum() / (wall * (r_endo + wall / 2)).sum()

    # one territory spans at most about half a slice: the half-width is capped at 90 deg, which
    # also bounds what a subendocardial scar can reach; two secant steps hit the share otherwise
    lo, hi = np.deg2rad(10), np.deg2rad(90)
    half_width = np.clip(np.pi * share / (tau_max * 0.77), lo, hi)
    for _ in range(3):
        tau, got = scar(half_width)
        half_width = float(np.clip(half_width * share / max(got, 1e-6), lo, hi))
    tau, _ = scar(half_width)
    return Infarct(territory=territory, centre=centre, transmurality=tau, chronic_thinning=chronic)


def thinning(transmurality, chronic):
    """Share of the ED wall lost in chronic scar: up to 40 % (times ``chronic`` in 0.3-1) where
    transmurality exceeds 50 % (Shah et al., JAMA 309:909 (2013): thinned segments are mostly
    scar). The endocardium recedes; the epicardium stays."""
    return 0.4 * chronic * np.clip((np.asarray(transmurality) - 0.5) / 0.5, 0, 1)


#: half-extent (row, col mm) about the LV centre over which vessels cut by the slice are scattered
#: (the chest and upper abdomen); those outside lung, liver or spleen are not painted
VESSEL_SPREAD_MM = (120.0, 180.0)


def sample_anatomy(rng, level, *, fov_mm):
    """Sample one subject's ED anatomy (heart and torso) for a slice level.

    The heart sits near the centre of the field of view with random offset, size and rotation
    (no two subjects alike); the torso (body wall, lungs, liver, stomach, spine, aorta) is laid
    out around it as on a short-axis localizer.
    """
    size = LV_SIZE[level]
    r0 = max(8.0, rng.normal(*size["r_endo"]))
    wall0 = max(4.0, rng.normal(*size["wall"]))
    # ellipticity and regional wall variation (septum and lateral wall differ by ~1-2 mm)
    r_endo = periodic_profile(rng, base=r0, rel_amp=0.05, kmax=3)
    wall = periodic_profile(rng, base=wall0, rel_amp=0.08, kmax=3)
    # in-plane orientation: the RV seen from the LV centre points to the image left, turned by
    # 15 +- 30 deg (measured on ACDC 061-080 by `make realism-calibrate`: median 195 deg, IQR
    # 174-216 deg; planning tilts the short axis differently in every patient)
    orient = rng.normal(np.deg2rad(15), np.deg2rad(30))
    rv_centre = np.pi + orient
    half = np.deg2rad(rng.uniform(58, 72))
    d = np.abs(angle_diff(THETA, rv_centre)) / half
    rv_max = max(4.0, rng.normal(*RV_DEPTH[level]))
    rv_depth = np.where(d < 1, rv_max * np.clip(np.cos(np.pi / 2 * d), 0, 1) ** 0.7, 0.0)
    fat = np.clip(periodic_profile(rng, base=1.5, rel_amp=0.8, kmax=5), 0, None)
    # more fat along the RV free wall and in the grooves at the insertion points
    fat += 3.0 * np.exp(-(angle_diff(THETA, rv_centre - half) / 0.25) ** 2)
    fat += 3.0 * np.exp(-(angle_diff(THETA, rv_centre + half) / 0.25) ** 2)
    fat += np.where(d < 1, rng.uniform(1, 3), 0.0)
    # the LV centre lies off the frame's centre by 0.36 (IQR 0.18-0.57) epicardial LV diameters in
    # ACDC 061-080 and 0.26 in SC-HF-I-1 (the phantom's former sd of 8 mm gave 0.15, 14 mm gives
    # 0.24; tuning cohort): the field of view is placed on the chest as well as on the heart
    centre = np.array([fov_mm[0] / 2, fov_mm[1] / 2]) + rng.normal(0, 14, 2)
    anatomy = Anatomy(level=level, centre_mm=centre, r_endo=r_endo, r_epi=r_endo + wall, rv_depth=rv_depth,
                      rv_wall=float(rng.uniform(2.5, 4.0)), fat=fat, rv_centre=float(rv_centre),
                      anterior_insertion=float(rv_centre - half), inferior_insertion=float(rv_centre + half))
    # papillary muscles: anterolateral and posteromedial heads (mid and basal slices)
    if level != "apical":
        pm_r = (4.0, 6.0) if level == "mid" else (2.5, 4.0)
        for mean in (np.deg2rad(45), np.deg2rad(300)):
            anatomy.papillary.append((mean + orient + rng.normal(0, 0.15), rng.uniform(*pm_r)))
    n_trab = rng.integers(14, 26) if level == "apical" else rng.integers(8, 18)
    for _ in range(n_trab):
        anatomy.trabeculae.append((rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 2.0), rng.uniform(0.6, 1.3)))
    anatomy.infarct = sample_infarct(rng, anatomy)
    if anatomy.infarct is not None:
        # post-MI remodelling dilates the cavity (heart-failure patients reach LVEDD 65-75 mm);
        # the wall keeps its thickness
        grow = anatomy.r_endo * (rng.uniform(1.0, 1.3) - 1)
        anatomy.r_endo, anatomy.r_epi = anatomy.r_endo + grow, anatomy.r_epi + grow
        thin = thinning(anatomy.infarct.transmurality, anatomy.infarct.chronic_thinning)
        anatomy.r_endo = anatomy.r_endo + thin * (anatomy.r_epi - anatomy.r_endo)
    anatomy.body = _sample_body(rng, level, centre, fov_mm)
    return anatomy


def _sample_body(rng, level, centre, fov_mm):
    """Torso layout around the heart, in image mm (row, col).

    The oblique short-axis plane cuts the chest wide: the body usually overflows the field of
    view at the sides, the heart lies anterior, close to the chest wall, with lungs lateral (the
    diaphragm's dome, :func:`ofrnn.simulate.scene.sample_scene`, leaves little lung behind it), the
    liver below-left, spine and descending aorta posterior. Layers (subcutaneous fat, chest-wall
    muscle with ribs) vary in thickness around the body. This is the layout before
    the scene's turn about the heart (:func:`ofrnn.simulate.render.material_map`).
    """
    cy, cx = centre
    # semi-axes: adult chests are 250-350 mm deep and 300-450 mm wide at the heart (more with the
    # arms and soft tissue of heavier patients); cine FOVs of 330-410 mm cut them at the sides, so
    # the body fills about 3/4 of the frame (ACDC 061-080, `make realism-calibrate`)
    ry, rx = rng.uniform(150, 200), rng.uniform(210, 280)
    # the heart lies near the anterior chest wall: the skin 95-130 mm in front of the LV centre
    # (LV radius, RV, mediastinal fat, chest wall), the rest of the chest behind it. With the body
    # wall 28-66 mm deep (subcutaneous fat and muscle) the wall reaches the heart's outer radius in
    # about a third of subjects (the heart is drawn over it), against a tenth with the former 8-22 mm
    # of fat: the skin distance below was kept, as it matches the real frames.
    # The nearest skin lies 1.91 (IQR 1.53-2.46) epicardial LV diameters from the LV's blood pool in
    # ACDC 061-080 and 1.27 in SC-HF-I-1 (`make realism-calibrate`); the former 75-100 mm gave 1.53
    oy, ox = cy + ry - rng.uniform(95, 130), cx + rng.normal(0, 12)
    n_ribs = int(rng.integers(6, 11))
    body = dict(
        outline=(oy, ox, ry, rx),
        # subcutaneous fat 18-48 mm deep (the former 8-22 mm left 16 % of the body at or above 0.7
        # of the blood level, against 23 % in ACDC 061-080 and 21 % in SC-HF-I-1, where fat and fluid
        # are the bright tissues; 18-48 mm and the diaphragm of scene.sample_scene give 25 %, tuning
        # cohort, `make realism-calibrate`): cardiac patients are mostly overweight
        subcut_fat=periodic_profile(rng, base=rng.uniform(18, 48), rel_amp=0.35, kmax=3),
        muscle=periodic_profile(rng, base=rng.uniform(10, 18), rel_amp=0.35, kmax=3),
        ribs=[(rng.uniform(0, 2 * np.pi), rng.uniform(4, 7), rng.uniform(9, 15)) for _ in range(n_ribs)],
        liver=(cy + rng.uniform(60, 90), cx - rng.uniform(50, 80),
               {"apical": 85, "mid": 70, "basal": 55}[level] * rng.uniform(0.85, 1.15), rng.uniform(80, 110)),
        stomach=None if level == "basal" else (cy + rng.uniform(45, 65), cx + rng.uniform(80, 100),
                                              rng.uniform(20, 30), rng.uniform(25, 35)),
        aorta=(cy + rng.uniform(60, 75), cx + rng.uniform(35, 50), rng.uniform(10, 13)),
        spine=(cy + rng.uniform(95, 110), cx + rng.uniform(15, 30), rng.uniform(15, 19)),
        # anterior mediastinal (prevascular) fat: a thin pad between the heart and the chest wall
        mediastinum=(cy - rng.uniform(40, 55), cx - rng.uniform(0, 25), rng.uniform(10, 18), rng.uniform(25, 45)),
        # pulmonary and hepatic vessels: (row, col, radius mm, bright?)
        vessels=[(cy + rng.uniform(-VESSEL_SPREAD_MM[0], VESSEL_SPREAD_MM[0]),
                  cx + rng.uniform(-VESSEL_SPREAD_MM[1], VESSEL_SPREAD_MM[1]), rng.uniform(1.0, 3.5), rng.random() < 0.5)
                 for _ in range(int(rng.integers(40, 80)))],
    )
    return body
