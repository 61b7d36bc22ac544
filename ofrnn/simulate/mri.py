"""Image formation: tissue relaxation, the bSSFP steady state, coils, noise and k-space.

The phantom renders a tissue label map; this module turns labels into the magnitude images a
1.5 T or 3 T scanner would give for a balanced steady-state free-precession (bSSFP) cine.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np
from scipy import fft
from scipy import ndimage as ndi


class Tissue(IntEnum):
    """Label codes of the phantom's material map (one byte per point)."""

    AIR = 0
    LUNG = 1
    SUBCUTANEOUS_FAT = 2
    MUSCLE = 3
    LIVER = 4
    MARROW = 5
    CSF = 6
    AORTA_BLOOD = 7
    STOMACH = 8
    FAT = 9  # epicardial / pericardial / mediastinal fat
    PERICARDIUM = 10
    RV_MYOCARDIUM = 11
    RV_BLOOD = 12
    LV_MYOCARDIUM = 13
    LV_INFARCT = 14  # same MR properties as LV_MYOCARDIUM: a cine shows the scar only by motion
    LV_BLOOD = 15
    PAPILLARY = 16
    TRABECULAE = 17
    SOFT_TISSUE = 18  # oesophagus, vessels' walls, connective tissue
    CORTICAL_BONE = 19
    GUT_CONTENT = 20  # semi-solid bowel content (chyme)
    SPLEEN = 21
    ABDOMEN = 22  # upper-abdominal viscera below the diaphragm: bowel, mesentery, vessels, muscle


#: (proton density relative to water, T1 ms, T2 ms) at 1.5 T and 3 T.
#:
#: Myocardium, blood, liver, skeletal muscle: Stanisz et al., MRM 54:507 (2005), Table 1.
#: Fat and vertebral marrow: de Bazelaire et al., Radiology 230:652 (2004).
#: CSF: Lu et al., JMRI 22:13 (2005) (T1 about 4.2 s at 3 T; T2 about 2 s).
#: Lung: Stadler et al., MRM 53:1099 (2005) (T1 about 1.2 s at 1.5 T); proton density 0.3 (tissue
#: density of aerated lung, 0.2-0.3, plus the blood of its capillaries and small vessels, which a
#: cine voxel of 1.5 x 1.5 x 8 mm averages in); T2 40 / 30 ms at 1.5 / 3 T, shorter than the
#: parenchyma's own to stand in for the intravoxel dephasing that darkens lung in bSSFP (more at
#: 3 T). They put lung at 0.08-0.17 of blood over the flip angles drawn: the calibration frames'
#: lung reads 0.098 of blood in ACDC 061-080 and 0.062 in SC-HF-I-1 (median of the body's pixels
#: below 0.15 of blood, `make realism-calibrate`); the former 0.2 and 30 / 20 ms (0.035-0.085)
#: left a third more of the body at the bottom of the intensity histogram than in those frames.
#: Proton densities follow tissue water content (myocardium ~0.78, blood ~0.85, liver ~0.71).
#: Pericardium and cortical bone: fibrous / mineral, little mobile water.
#: Spleen: de Bazelaire et al. (2004). Semi-solid bowel content: assumed between soft tissue and
#: fluid (no reference value; it varies with the meal). Abdominal viscera below the diaphragm: as
#: soft tissue (a mixture; the scene's texture and bowel loops vary it).
TISSUE_PROPERTIES = {
    1.5: {
        Tissue.AIR: (0.0, 1000.0, 1.0),
        Tissue.LUNG: (0.30, 1200.0, 40.0),
        Tissue.SUBCUTANEOUS_FAT: (0.90, 343.0, 58.0),
        Tissue.MUSCLE: (0.75, 1008.0, 44.0),
        Tissue.LIVER: (0.71, 576.0, 46.0),
        Tissue.MARROW: (0.80, 549.0, 49.0),
        Tissue.CSF: (1.00, 4200.0, 2000.0),
        Tissue.AORTA_BLOOD: (0.85, 1441.0, 290.0),
        Tissue.STOMACH: (0.90, 2500.0, 300.0),
        Tissue.FAT: (0.90, 343.0, 58.0),
        Tissue.PERICARDIUM: (0.30, 800.0, 15.0),
        Tissue.RV_MYOCARDIUM: (0.78, 1030.0, 40.0),
        Tissue.RV_BLOOD: (0.85, 1441.0, 290.0),
        Tissue.LV_MYOCARDIUM: (0.78, 1030.0, 40.0),
        Tissue.LV_INFARCT: (0.78, 1030.0, 40.0),
        Tissue.LV_BLOOD: (0.85, 1441.0, 290.0),
        Tissue.PAPILLARY: (0.78, 1030.0, 40.0),
        Tissue.TRABECULAE: (0.78, 1030.0, 40.0),
        Tissue.SOFT_TISSUE: (0.75, 900.0, 50.0),
        Tissue.CORTICAL_BONE: (0.05, 1000.0, 5.0),
        Tissue.GUT_CONTENT: (0.80, 1100.0, 70.0),
        Tissue.SPLEEN: (0.80, 1057.0, 79.0),
        Tissue.ABDOMEN: (0.75, 900.0, 50.0),
    },
    3.0: {
        Tissue.AIR: (0.0, 1000.0, 1.0),
        Tissue.LUNG: (0.30, 1300.0, 30.0),
        Tissue.SUBCUTANEOUS_FAT: (0.90, 382.0, 68.0),
        Tissue.MUSCLE: (0.75, 1412.0, 50.0),
        Tissue.LIVER: (0.71, 812.0, 42.0),
        Tissue.MARROW: (0.80, 586.0, 49.0),
        Tissue.CSF: (1.00, 4300.0, 1800.0),
        Tissue.AORTA_BLOOD: (0.85, 1932.0, 275.0),
        Tissue.STOMACH: (0.90, 3000.0, 280.0),
        Tissue.FAT: (0.90, 382.0, 68.0),
        Tissue.PERICARDIUM: (0.30, 1100.0, 13.0),
        Tissue.RV_MYOCARDIUM: (0.78, 1471.0, 47.0),
        Tissue.RV_BLOOD: (0.85, 1932.0, 275.0),
        Tissue.LV_MYOCARDIUM: (0.78, 1471.0, 47.0),
        Tissue.LV_INFARCT: (0.78, 1471.0, 47.0),
        Tissue.LV_BLOOD: (0.85, 1932.0, 275.0),
        Tissue.PAPILLARY: (0.78, 1471.0, 47.0),
        Tissue.TRABECULAE: (0.78, 1471.0, 47.0),
        Tissue.SOFT_TISSUE: (0.75, 1200.0, 50.0),
        Tissue.CORTICAL_BONE: (0.05, 1200.0, 5.0),
        Tissue.GUT_CONTENT: (0.80, 1400.0, 60.0),
        Tissue.SPLEEN: (0.80, 1328.0, 61.0),
        Tissue.ABDOMEN: (0.75, 1200.0, 50.0),
    },
}

#: chemical shift of fat's main (methylene) resonance from water, ppm (Hamilton G et al., In vivo
#: characterization of the liver fat 1H MR spectrum, NMR Biomed 24:784 (2011): about 70 % of the fat
#: signal at -3.4 ppm; the smaller peaks are left out)
FAT_SHIFT_PPM = -3.4
#: proton gyromagnetic ratio over 2 pi, MHz/T
GAMMA_MHZ_PER_T = 42.577
#: labels whose signal is fat's
FATTY = (Tissue.SUBCUTANEOUS_FAT, Tissue.FAT)
#: fat's proton spectrum: its resonances relative to water (ppm) and their shares of fat's protons
#: (summing to 1 to three decimals, as published), the six-peak model of Hamilton et al., "In vivo
#: characterization of the liver fat 1H MR spectrum", NMR Biomed 24:784 (2011), the default of
#: multi-peak fat-water separation. The methylene peak (FAT_SHIFT_PPM) holds 69 %; the olefinic and
#: glycerol peaks near water (+0.60, -0.39 ppm) lie in water's pass band and are read in phase with
#: it, against the main peak's opposed phase (:func:`fat_spectrum_factor`). Adipose tissue's spectrum differs from liver fat's by a few
#: percent per peak (more unsaturated); the liver model stands in for both fatty labels.
FAT_PEAKS_PPM = (-3.80, -3.40, -2.60, -1.94, -0.39, 0.60)
FAT_PEAK_SHARES = (0.087, 0.693, 0.128, 0.004, 0.039, 0.048)


def chemical_shift_beta(tissue, *, field_t, tr_ms):
    """Phase per TR (rad, wrapped to (-pi, pi]) from a tissue's resonance offset: fat's chemical
    shift (-217 Hz at 1.5 T, -434 Hz at 3 T), 0 for water-based tissues.

    bSSFP reads every tissue at its own off-resonance: fat sits between the pass band and the
    dark band, so its brightness depends on field and TR (Scheffler & Lehnhardt 2003, Sec. "fat").
    """
    if tissue not in FATTY:
        return 0.0
    return float(np.angle(np.exp(1j * _fat_precession(field_t, tr_ms))))


def _fat_precession(field_t, ms, ppm=FAT_SHIFT_PPM):
    """Fat's precession relative to water over ``ms`` milliseconds (rad, not wrapped): per TR when
    given TR; of the main peak, or of the resonances ``ppm`` (array) of :data:`FAT_PEAKS_PPM`."""
    hz = np.asarray(ppm, float) * GAMMA_MHZ_PER_T * float(field_t)
    return 2 * np.pi * hz * ms * 1e-3


def chemical_shift_sign(tissue, *, field_t, tr_ms):
    """Sign (+1 or -1) of a tissue's echo relative to water's at TE = TR / 2.

    A resonance that precesses ``beta = 2 pi k + b`` per TR (``b`` in (-pi, pi]) lies ``k`` pass
    bands from water's. At TE = TR / 2 the echo of every pass band is real, its sign alternating
    from band to band, so it is read with the extra phase ``k pi`` (Scheffler & Hennig, MRM 49:395
    (2003); used for fat-water separation by Hargreaves et al., Fat-suppressed steady-state free
    precession imaging using phase detection, MRM 50:210 (2003)). Fat precesses -3.8 to -4.4 rad
    per TR at 1.5 T and -8.2 to -9.3 rad at 3 T for the TRs drawn, one band away: it is read in
    opposed phase, so a voxel holding fat and water cancels. That is the dark line at every
    fat-water boundary of a bSSFP cine (epicardial fat, the body wall, the fat planes of the
    abdomen); an echo read before TR / 2 leaves it a floor (:func:`echo_phase`).

    Returns
    -------
    float: -1.0 for a fatty tissue an odd number of bands from water, else 1.0.
    """
    if tissue not in FATTY:
        return 1.0
    return float(pass_band_sign(_fat_precession(field_t, tr_ms)))


def fat_spectrum_factor(*, field_t, flip_deg, tr_ms, t1, t2, peaks_ppm=FAT_PEAKS_PPM, shares=FAT_PEAK_SHARES):
    """Fat's bSSFP echo at TE = TR / 2 from its whole spectrum, over that of its main peak alone.

    Each peak precesses ``beta_i = 2 pi f_i TR`` per TR (``f_i``: its offset from water) and is read
    at its own place on the bSSFP profile (:func:`bssfp_profile`) with the sign of its pass band
    (:func:`pass_band_sign`): the echo is the shares' weighted sum; the main peak alone at
    :data:`FAT_SHIFT_PPM` is the single-peak model of :func:`chemical_shift_beta`. All peaks take
    fat's T1 and T2.

    Parameters
    ----------
    field_t, flip_deg, tr_ms : float, keyword-only
        Field (T), flip angle (degrees), repetition time (ms).
    t1, t2 : float, keyword-only
        Fat's relaxation times (ms).
    peaks_ppm, shares : sequences of float, keyword-only
        The spectrum (default :data:`FAT_PEAKS_PPM`, :data:`FAT_PEAK_SHARES`).

    Returns
    -------
    float
        The ratio, signed (positive: the whole spectrum keeps the main peak's phase). Over the fields,
        TRs (2.8-3.4 ms) and flip angles (22-60 degrees) the phantom draws it is 0.52-0.79: the peaks
        near water cancel a fifth to a half of fat's opposed-phase echo.

    References
    ----------
    Hamilton et al., NMR Biomed 24:784 (2011) (the spectrum); Scheffler & Hennig, MRM 49:395 (2003)
    (the echo's sign from pass band to pass band).
    """
    def echo(ppm, share):
        beta = _fat_precession(field_t, tr_ms, ppm)
        return float(np.sum(np.asarray(share, float) * pass_band_sign(beta)
                            * bssfp_profile(1.0, t1, t2, beta, flip_deg=flip_deg, tr_ms=tr_ms)))

    return echo(peaks_ppm, shares) / echo([FAT_SHIFT_PPM], [1.0])


def pass_band_sign(beta):
    """Sign of the bSSFP echo at TE = TR / 2 for a phase per TR ``beta`` (rad, not wrapped),
    relative to the pass band about resonance: ``(-1) ** k`` for the pass band ``k = round(beta / 2 pi)``
    (see :func:`chemical_shift_sign`). Returns float64 +1 / -1 of ``beta``'s shape."""
    return np.where(np.round(np.asarray(beta, np.float64) / (2 * np.pi)) % 2 == 0, 1.0, -1.0)


def echo_phase(tissue, *, field_t, tr_ms, te_ms):
    """Phase (rad) of a tissue's echo relative to water's, beyond the sign of
    :func:`chemical_shift_sign`, when the echo is read ``te_ms - tr_ms / 2`` off the centre of TR.

    The bSSFP echo is real only at TE = TR / 2; scanners shorten TR with an asymmetric echo read
    earlier, and each resonance then turns by ``2 pi f (TE - TR / 2)`` before it is read (f: its
    offset from water, fat's chemical shift; Scheffler & Hennig, MRM 49:395 (2003)). Fat and water
    then meet at ``pi`` minus that angle rather than at ``pi``: a voxel holding equal shares of both
    keeps ``2 sin(|phase| / 2)`` of one share's signal instead of cancelling, so the dark line at a
    fat-water boundary has a floor. Sunnybrook's GE cines read TE / TR = 0.44-0.46 (DICOM
    EchoTime over RepetitionTime, ``../shared/data/sunnybrook``).

    Returns
    -------
    float: 0.0 for water-based tissues and for a symmetric echo.
    """
    if tissue not in FATTY:
        return 0.0
    return float(_fat_precession(field_t, te_ms - tr_ms / 2))


#: static, macromolecule-rich tissues around the heart whose bSSFP signal reads lower than the
#: relaxation times predict: the short, strong RF pulses of a cine saturate their bound pool, and
#: magnetization transfer pulls the free water down with it (Bieri & Scheffler, "On the origin of
#: apparent low tissue signals in balanced SSFP", MRM 56:1067 (2006)). Blood, fluids and fat have
#: no such pool. The myocardium has one too, but it is left as tabled: its ratio to blood is set
#: through the transmit field against the calibration frames instead (see
#: :func:`ofrnn.simulate.simulate_subject`), so one factor does not move it twice. The factor is
#: drawn per subject from ``MT_RANGE``, set on the body's intensity quantiles over blood of the
#: calibration frames (no tissue labels exist there for liver or muscle).
MT_TISSUES = (Tissue.LIVER, Tissue.SPLEEN, Tissue.MUSCLE, Tissue.ABDOMEN, Tissue.SOFT_TISSUE)
MT_RANGE = (0.5, 0.85)

#: labels whose ground-truth flow is tissue motion (blood and air move on their own)
SOLID = tuple(t for t in Tissue if t not in (Tissue.AIR, Tissue.LUNG, Tissue.LV_BLOOD, Tissue.RV_BLOOD,
                                             Tissue.AORTA_BLOOD, Tissue.STOMACH, Tissue.CSF))


def bssfp_signal(pd, t1, t2, *, flip_deg, tr_ms, te_ms=None):
    """On-resonance bSSFP steady-state magnitude.

    Parameters
    ----------
    pd, t1, t2 : array_like
        Proton density (relative) and relaxation times (ms).
    flip_deg : float, keyword-only
        Flip angle (degrees).
    tr_ms : float, keyword-only
        Repetition time (ms).
    te_ms : float, keyword-only
        Echo time (ms); TR/2 (the usual symmetric echo) when omitted.

    Returns
    -------
    ndarray
        M0-relative signal.

    References
    ----------
    Scheffler K, Lehnhardt S. Principles and applications of balanced SSFP techniques.
    Eur Radiol 13:2409 (2003), Eq. 1: S = M0 sin(a) (1 - E1) / (1 - (E1 - E2) cos(a) - E1 E2),
    times exp(-TE/T2) at the echo.
    """
    te_ms = tr_ms / 2 if te_ms is None else te_ms
    a = np.deg2rad(flip_deg)
    e1 = np.exp(-tr_ms / np.asarray(t1, float))
    e2 = np.exp(-tr_ms / np.asarray(t2, float))
    ss = np.sin(a) * (1 - e1) / (1 - (e1 - e2) * np.cos(a) - e1 * e2)
    return np.asarray(pd, float) * ss * np.exp(-te_ms / np.asarray(t2, float))


def bssfp_profile(pd, t1, t2, beta, *, flip_deg, tr_ms, te_ms=None):
    """bSSFP steady-state magnitude off resonance: the banding profile.

    Solves the Bloch equations' steady state for a train of RF pulses with alternating phase
    (0, pi), as balanced SSFP cines are run, with free precession ``beta`` (rad per TR) from
    off-resonance: M+ = (I - Rx(a) E Rz(beta + pi))^-1 Rx(a) (1 - E1) z, then relaxation and
    precession to the echo. Signal is flat near ``beta = 0`` and drops to a dark band near
    ``beta = +-pi`` (off-resonance 1 / (2 TR)).

    Parameters
    ----------
    pd, t1, t2, beta : array_like
        Broadcast together: proton density, relaxation times (ms), phase per TR (rad).
    flip_deg, tr_ms, te_ms : float, keyword-only
        As :func:`bssfp_signal` (``beta = 0`` gives its value).

    Returns
    -------
    ndarray
        M0-relative magnitude.

    References
    ----------
    Hargreaves BA et al. Characterization and reduction of the transient response in
    steady-state MR imaging. MRM 46:149 (2001), Eqs. 1-4; Scheffler & Lehnhardt (2003), Fig. 2.
    """
    te_ms = tr_ms / 2 if te_ms is None else te_ms
    pd, t1, t2, beta = np.broadcast_arrays(*(np.asarray(v, float) for v in (pd, t1, t2, beta)))
    a = np.deg2rad(flip_deg)
    e1, e2 = np.exp(-tr_ms / t1), np.exp(-tr_ms / t2)
    th = beta + np.pi
    c, s = np.cos(th), np.sin(th)
    z, o = np.zeros_like(th), np.ones_like(th)
    rz = np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)
    relax = np.stack([np.stack([e2, z, z], -1), np.stack([z, e2, z], -1), np.stack([z, z, e1], -1)], -2)
    rx = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
    lhs = np.eye(3) - rx @ relax @ rz
    rhs = (rx @ np.array([0.0, 0.0, 1.0]))[..., None] * (1 - e1)[..., None, None]
    m = np.linalg.solve(lhs, np.broadcast_to(rhs, lhs.shape[:-1] + (1,)))[..., 0]
    # the echo: half a TR of relaxation (precession by beta / 2 leaves the magnitude unchanged)
    return pd * np.hypot(m[..., 0], m[..., 1]) * np.exp(-te_ms / t2)


def band_table(*, field_t, flip_deg, tr_ms, n_bins=64, signed=False):
    """Off-resonance signal relative to on-resonance, per label and phase bin.

    Bin ``j`` holds ``beta = -pi + 2 pi j / n_bins`` (see :func:`ofrnn.simulate.scene.band_index`).
    Each tissue is read at its own resonance (fat at its chemical shift), so its column is
    relative to its own signal at zero field offset.

    With ``signed`` the table spans two periods, ``beta = -2 pi + 2 pi j / n_bins`` for
    ``j < 2 n_bins``, and each ratio carries the sign of the pass band the tissue then falls in
    relative to its own: the echo at TE = TR / 2 is real and alternates in sign from pass band to
    pass band (:func:`chemical_shift_sign`), so a voxel across a stop band cancels, which draws the
    thin black lines of real bSSFP banding. Unsigned, the ratio is the magnitude alone, and a band
    only dims.

    Returns
    -------
    float32 (n_labels, n_bins), or (n_labels, 2 n_bins) with ``signed``.
    """
    props = TISSUE_PROPERTIES[float(field_t)]
    periods = 2 if signed else 1
    beta = -periods * np.pi + 2 * np.pi * np.arange(periods * n_bins) / n_bins
    table = np.ones((len(Tissue), periods * n_bins), np.float32)
    for tissue, (pd, t1, t2) in props.items():
        # relative to the tissue's own signal at zero field offset (fat: at its chemical shift,
        # wrapped into the band about its own resonance)
        shift = chemical_shift_beta(tissue, field_t=field_t, tr_ms=tr_ms)
        on = bssfp_profile(1.0, t1, t2, shift, flip_deg=flip_deg, tr_ms=tr_ms)
        if on > 0:
            ratio = bssfp_profile(1.0, t1, t2, beta + shift, flip_deg=flip_deg, tr_ms=tr_ms) / on
            if signed:
                ratio = ratio * pass_band_sign(beta + shift)
            table[int(tissue)] = ratio
    return table


def signal_table(*, field_t, flip_deg, tr_ms, mt=1.0, scale=10000.0, te_ms=None, fat_spectrum=True):
    """Signal per label code (array indexed by :class:`Tissue`): the bSSFP steady state at each
    tissue's resonance (fat at its chemical shift, :func:`chemical_shift_beta`), signed by its
    phase at the echo (:func:`chemical_shift_sign`: fat is negative, read in opposed phase, so
    partial volume with water cancels; take ``abs`` for brightness), times ``mt`` for the tissues
    of :data:`MT_TISSUES` (magnetization transfer; 1: none).

    With ``fat_spectrum`` (the default) fat's signal is that of its six-peak spectrum
    (:func:`fat_spectrum_factor`), 0.52-0.79 of the single peak's; off it, the main peak alone. The
    off-resonance table (:func:`band_table`) and the echo's turn before TR / 2 (:func:`echo_phase`)
    stay the main peak's, which holds 69 % of fat's protons.

    ``te_ms`` (default TR / 2, a symmetric echo: float32, real) other than TR / 2 turns fat by
    :func:`echo_phase` and returns complex64. The magnitudes stay those at TR / 2 (T2 decay over
    the fraction of a millisecond the echo moves changes them by well under 1 %).

    ``scale`` puts blood near 1500-1900, the range of a scanner's 12-bit magnitude images.
    """
    props = TISSUE_PROPERTIES[float(field_t)]
    table = np.zeros(len(Tissue), np.float32)
    for tissue, (pd, t1, t2) in props.items():
        beta = chemical_shift_beta(tissue, field_t=field_t, tr_ms=tr_ms)
        table[int(tissue)] = (scale * chemical_shift_sign(tissue, field_t=field_t, tr_ms=tr_ms)
                              * bssfp_profile(pd, t1, t2, beta, flip_deg=flip_deg, tr_ms=tr_ms))
        if fat_spectrum and tissue in FATTY:
            table[int(tissue)] *= fat_spectrum_factor(field_t=field_t, flip_deg=flip_deg, tr_ms=tr_ms, t1=t1, t2=t2)
    table[list(MT_TISSUES)] *= mt
    if te_ms is None or te_ms == tr_ms / 2:
        return table
    turn = np.array([echo_phase(t, field_t=field_t, tr_ms=tr_ms, te_ms=te_ms) for t in Tissue])
    return (table * np.exp(1j * turn)).astype(np.complex64)


def coil_sensitivity(shape, rng, *, n_coils=8, spacing_mm=1.4):
    """Smooth receive-field shading: root-sum-of-squares of surface-coil profiles.

    Coils sit on an ellipse around the body (anterior and posterior arrays, as in a cardiac
    phased array); each profile decays with distance from its coil. The result is normalised to
    mean 1 over the central quarter of the field of view, so shading spans roughly 0.5-2x.
    """
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) * spacing_mm
    cy, cx = H * spacing_mm / 2, W * spacing_mm / 2
    angles = np.linspace(0, 2 * np.pi, n_coils, endpoint=False) + rng.uniform(0, 2 * np.pi)
    radius = 0.55 * min(H, W) * spacing_mm
    total = np.zeros(shape, np.float32)
    for a in angles:
        py, px = cy + radius * np.sin(a), cx + radius * np.cos(a)
        d2 = (yy - py) ** 2 + (xx - px) ** 2
        depth = rng.uniform(70, 120)  # mm: penetration of a ~10-15 cm loop
        total += rng.uniform(0.7, 1.3) * np.exp(-d2 / (2 * depth ** 2)) ** 2
    sens = np.sqrt(total)
    centre = sens[H // 4: 3 * H // 4, W // 4: 3 * W // 4].mean()
    return sens / centre


def intensity_correction(coil, centre, *, residual):
    """Divisor of a surface-coil intensity correction that leaves ``coil ** residual`` shading.

    Scanners normalise phased-array images by an estimate of the receive field (prescan
    normalise, PURE, CLEAR); the correction is imperfect and amplifies noise where the coils are
    weak. ``residual`` 0 is a perfect correction, 1 none. The divisor is 1 at ``centre`` (row, col),
    so the heart keeps its signal and its SNR.
    """
    rel = coil / coil[centre]
    return rel ** (1.0 - residual)


def smooth_field(shape, rng, *, sigma_px, amplitude):
    """A zero-mean smooth Gaussian random field of standard deviation ``amplitude``."""
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    f *= amplitude / max(f.std(), 1e-12)
    return f


def acquire(images, rng, *, noise_sigma, phase_resolution=1.0, phase_axis=0, readout_resolution=1.0, channels=1):
    """Truncate k-space (phase and readout), add complex Gaussian noise to the acquired samples,
    zero-fill, take the magnitude.

    Parameters
    ----------
    images : ndarray (T, H, W)
        Noise-free complex (or real) images.
    noise_sigma : float, keyword-only
        Standard deviation of each of the real and imaginary noise channels in the final image.
    phase_resolution : float, keyword-only
        Fraction of the phase-encoding lines acquired (centre of k-space); the rest are
        zero-filled, which blurs and rings edges (Gibbs) as in clinical cine protocols.
    phase_axis : {0, 1}, keyword-only
        Image axis along which phase encoding runs.
    readout_resolution : float, keyword-only
        Fraction of the readout samples kept: a protocol acquired coarser than it is reconstructed
        (interpolated by zero-filling), which correlates the noise of neighbouring pixels.
    channels : int, keyword-only
        Receive channels combined by root-sum-of-squares: the signal in one, noise of
        ``noise_sigma`` in each (the effective-channel model of Constantinides et al., MRM 38:852
        (1997)). Where the signal is high the noise stays ``noise_sigma``; where it is nil the
        magnitude follows a chi distribution with ``2 * channels`` degrees of freedom, so air reads
        brighter than one channel's Rayleigh floor (2.7 sigma on average for 4 channels, against
        1.25), as in a phased-array cine.

    Returns
    -------
    ndarray (T, H, W) float32
        Magnitude images, Rician (non-central chi for several channels) where the signal is low,
        rounded to integers as scanners store them (DICOM magnitude images are integer-valued).
    """
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    images = np.asarray(images)
    T, H, W = images.shape

    def kept(n, fraction):
        # the acquired lines: the centre of k-space, in the unshifted order of an FFT's output
        keep = max(int(round(n * fraction)), 1)
        mask = np.zeros(n, bool)
        mask[(n - keep) // 2:(n - keep) // 2 + keep] = True
        return np.flatnonzero(fft.ifftshift(mask))

    fractions = (phase_resolution, readout_resolution) if phase_axis == 0 else (readout_resolution, phase_resolution)
    rows, cols = kept(H, fractions[0]), kept(W, fractions[1])

    # white noise in the image is white in k-space (orthonormal FFT), so only the acquired samples
    # are drawn; zero-filling keeps their share of its power, and the sigma is set so that the image
    # has noise_sigma per real channel after it
    sigma = np.float32(noise_sigma / np.sqrt(rows.size * cols.size / (H * W)))

    def noise():
        shape = (T, rows.size, cols.size)
        return (rng.standard_normal(shape, np.float32) + 1j * rng.standard_normal(shape, np.float32)) * sigma

    def image(acquired):
        # zero-filled reconstruction; the inverse runs along the phase axis on the acquired readout
        # columns only (the rest are zero), then along the readout
        k = np.zeros((T, H, cols.size), np.complex64)
        k[:, rows] = acquired
        grid = np.zeros((T, H, W), np.complex64)
        grid[:, :, cols] = fft.ifft(k, axis=1, norm="ortho")
        return fft.ifft(grid, axis=2, norm="ortho")

    signal = fft.fft2(images.astype(np.complex64), norm="ortho")[:, rows[:, None], cols]
    power = np.abs(image(signal + noise())) ** 2
    for _ in range(channels - 1):  # the noise-only channels, each through the same reconstruction
        power += np.abs(image(noise())) ** 2
    return np.rint(np.sqrt(power)).astype(np.float32)
