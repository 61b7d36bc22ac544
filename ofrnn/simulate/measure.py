"""Physiology measured on rendered subjects: what a reader checks the phantom against.

These read only the stored masks (no model internals), so they apply to any cohort whose
subjects carry ``lv_cavity_t``, ``myocardium_t`` and ``infarct``.
"""
from __future__ import annotations

import numpy as np


def area_ejection_fraction(subject):
    """Slice ejection fraction from LV cavity areas: 1 - min area / end-diastolic area.

    A 2-D surrogate of the volumetric EF (cavity inside the endocardial border, papillary
    muscles and trabeculae included, as in the simulator's ``lv_cavity_t``).
    """
    area = subject.lv_cavity_t.reshape(len(subject.lv_cavity_t), -1).sum(1).astype(float)
    return float(1 - area.min() / max(area[0], 1.0))


def _sector_stats(myo, centre, spacing, n_sectors, offset):
    yy, xx = np.nonzero(myo)
    dy, dx = (yy - centre[0]) * spacing, (xx - centre[1]) * spacing
    theta = np.mod(np.arctan2(-dy, dx) - offset, 2 * np.pi)
    r = np.hypot(dy, dx)
    k = np.minimum((theta / (2 * np.pi) * n_sectors).astype(int), n_sectors - 1)
    area = np.bincount(k, minlength=n_sectors) * spacing * spacing
    rsum = np.bincount(k, weights=r, minlength=n_sectors)
    r_mid = rsum / np.maximum(np.bincount(k, minlength=n_sectors), 1)
    # a sector's area is its angular width x mid-wall radius x thickness
    return area / ((2 * np.pi / n_sectors) * np.maximum(r_mid, 1e-6)), k, yy, xx


def sector_thickening(subject, *, n_sectors=24):
    """Fractional systolic wall thickening per angular sector and each sector's infarct share.

    Thickness of a sector = its myocardial area / (angular width x mean radius), at end-diastole
    (frame 0) and end-systole (the frame of smallest cavity), about each frame's LV centroid. The
    end-systolic sectors are turned by the subject's recorded rotation (``rotation_es_deg``) so
    they cover the same tissue.

    Returns
    -------
    dict
        ``thickening`` (n_sectors,) = ES / ED thickness - 1; ``infarct_share`` (n_sectors,) the
        fraction of the sector's ED myocardium that is infarct; ``ed_mm`` and ``es_mm`` thickness.
    """
    s = subject
    cav = s.lv_cavity_t.reshape(len(s.lv_cavity_t), -1).sum(1)
    es = int(np.argmin(cav))
    spacing = float(s.spacing_mm[0])

    def centre(t):
        ys, xs = np.nonzero(s.myocardium_t[t] | s.lv_cavity_t[t])
        return ys.mean(), xs.mean()

    rot = np.deg2rad(float(s.attrs.get("rotation_es_deg", 0.0)))
    ed, k, yy, xx = _sector_stats(s.myocardium_t[0], centre(0), spacing, n_sectors, 0.0)
    es_t, _, _, _ = _sector_stats(s.myocardium_t[es], centre(es), spacing, n_sectors, rot)
    inf = np.bincount(k, weights=s.infarct[yy, xx].astype(float), minlength=n_sectors)
    share = inf / np.maximum(np.bincount(k, minlength=n_sectors), 1)
    return dict(thickening=es_t / np.maximum(ed, 1e-6) - 1, infarct_share=share, ed_mm=ed, es_mm=es_t)


def remote_and_scar_thickening(subject, *, n_sectors=24, scar_share=0.6, guard=2):
    """Mean thickening of scar sectors (infarct share >= ``scar_share``) and of remote sectors
    (no infarct within ``guard`` sectors on either side); NaN where a slice has none."""
    st = sector_thickening(subject, n_sectors=n_sectors)
    share = st["infarct_share"]
    near = np.zeros(n_sectors, bool)
    for g in range(-guard, guard + 1):
        near |= np.roll(share > 0, g)
    scar = share >= scar_share
    remote = ~near
    th = st["thickening"]
    return (float(th[scar].mean()) if scar.any() else np.nan,
            float(th[remote].mean()) if remote.any() else np.nan)
