"""Rendering: material label map, supersampled frames, masks and exact ground-truth flow.

Partial volume comes from supersampling: every output pixel averages K x K sub-samples, each
taking the signal of the material point that the inverse motion map sends it to. Labels and
flow come from the same map, so the ground truth is exact for the images produced.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .anatomy import Anatomy, sample_profile
from .kinematics import FrameMap, Motion
from .mri import SOLID, Tissue
from .scene import paint_planned, paint_scene, subsample_positions

#: sub-samples per pixel side
SUPERSAMPLE = 3


def _grid_mm(n, spacing, k):
    """Sub-sample positions (mm) along one axis: k per pixel, pixel centres at i * spacing."""
    return subsample_positions(n, k) * spacing


def _ellipse(rows, cols, cy, cx, ry, rx):
    return ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1


def _paint(lab, rows, cols, cy, cx, ry, rx, value, within=None):
    """Set ``lab`` to ``value`` inside an ellipse, touching only its bounding window (small
    structures on a large grid); ``within`` restricts it to labels in that tuple."""
    r0, r1 = np.searchsorted(rows[:, 0], [cy - ry, cy + ry])
    c0, c1 = np.searchsorted(cols[0], [cx - rx, cx + rx])
    if r1 <= r0 or c1 <= c0:
        return
    win = lab[r0:r1, c0:c1]
    inside = _ellipse(rows[r0:r1], cols[:, c0:c1], cy, cx, ry, rx)
    if within is not None:
        inside &= np.isin(win, within)
    win[inside] = value


def heart_labels(anatomy: Anatomy, R, theta, rows, cols):
    """Tissue labels of material points given in LV polar (R, Theta) and image mm (row, col).

    Returns uint8 labels and a boolean 'is heart' mask (points the heart model claims).
    """
    a = anatomy
    r_endo = sample_profile(a.r_endo, theta)
    r_epi = sample_profile(a.r_epi, theta)
    depth = sample_profile(a.rv_depth, theta)
    fat = sample_profile(a.fat, theta)
    rv_out = np.where(depth > 0.3, r_epi + depth + a.rv_wall, r_epi)
    lab = np.full(R.shape, Tissue.AIR, np.uint8)
    inside = R < rv_out + fat + 1.0
    lab[inside] = Tissue.PERICARDIUM
    lab[R < rv_out + fat] = Tissue.FAT
    rv = depth > 0.3
    lab[rv & (R < rv_out)] = Tissue.RV_MYOCARDIUM
    lab[rv & (R < r_epi + depth)] = Tissue.RV_BLOOD
    lab[R < r_epi] = Tissue.LV_MYOCARDIUM
    if a.infarct is not None:
        tau = sample_profile(a.infarct.transmurality, theta)
        scar = (R >= r_endo) & (R < r_endo + tau * (r_epi - r_endo)) & (tau > 0)
        lab[scar] = Tissue.LV_INFARCT
    cavity = R < r_endo
    lab[cavity] = Tissue.LV_BLOOD
    c = a.centre_mm
    for th, rad in a.papillary:
        rc = sample_profile(a.r_endo, np.array([th]))[0] - 0.6 * rad
        py, px = c[0] - rc * np.sin(th), c[1] + rc * np.cos(th)
        lab[cavity & ((rows - py) ** 2 + (cols - px) ** 2 < rad ** 2)] = Tissue.PAPILLARY
    for th, depth_t, rad in a.trabeculae:
        rc = sample_profile(a.r_endo, np.array([th]))[0] - depth_t
        py, px = c[0] - rc * np.sin(th), c[1] + rc * np.cos(th)
        lab[cavity & ((rows - py) ** 2 + (cols - px) ** 2 < rad ** 2)] = Tissue.TRABECULAE
    return lab, inside


def _torso(anatomy: Anatomy, rows, cols):
    """Label map of everything but the heart and the structures planned with it, on the grid of
    sub-sample positions ``rows`` (column vector, mm) x ``cols`` (row vector, mm)."""
    b = anatomy.body
    lab = np.full((rows.shape[0], cols.shape[1]), Tissue.AIR, np.uint8)
    oy, ox, ry, rx = b["outline"]
    # elliptic radius rho (1 on the skin) and depth below the skin along the body's polar angle
    phi = np.arctan2(-(rows - oy), cols - ox)
    rho = np.sqrt(((rows - oy) / ry) ** 2 + ((cols - ox) / rx) ** 2)
    r_skin = rx * ry / np.sqrt((ry * np.cos(phi)) ** 2 + (rx * np.sin(phi)) ** 2)
    depth = (1 - rho) * r_skin
    fat = sample_profile(b["subcut_fat"], phi)
    wall = fat + sample_profile(b["muscle"], phi)
    lab[depth >= 0] = Tissue.SUBCUTANEOUS_FAT
    lab[depth >= fat] = Tissue.MUSCLE
    interior = depth >= wall
    lab[interior] = Tissue.LUNG
    # the oblique short-axis plane leaves the chest around the heart: under the diaphragm's dome
    # (highest in the middle, deepest laterally, where the costophrenic recesses hold lung) lie
    # the upper-abdominal viscera
    if "scene" in b:
        dy, dx, curve = b["scene"]["diaphragm"]
        lab[interior & (rows > dy + curve * (cols - dx) ** 2)] = Tissue.ABDOMEN
    for ang, ry_r, rx_r in b["ribs"]:
        # a rib in the chest wall: cortex around marrow, cut obliquely
        d_mid = sample_profile(b["subcut_fat"], np.array([ang]))[0] + 0.5 * sample_profile(b["muscle"],
                                                                                           np.array([ang]))[0]
        r_e = rx * ry / np.hypot(ry * np.cos(ang), rx * np.sin(ang)) - d_mid
        py, px = oy - r_e * np.sin(ang), ox + r_e * np.cos(ang)
        _paint(lab, rows, cols, py, px, ry_r, rx_r, Tissue.CORTICAL_BONE)
        _paint(lab, rows, cols, py, px, ry_r - 1.5, rx_r - 1.5, Tissue.MARROW)
    ly, lx, lry, lrx = b["liver"]
    liver = interior & _ellipse(rows, cols, ly, lx, lry, lrx)
    lab[liver] = Tissue.LIVER
    for vy, vx, vr, bright in b["vessels"]:
        # vessels in lungs and liver; blood is bright in bSSFP, walls and bronchi darker
        _paint(lab, rows, cols, vy, vx, vr, vr, Tissue.AORTA_BLOOD if bright else Tissue.SOFT_TISSUE,
               within=(Tissue.LUNG, Tissue.LIVER))
    if b["stomach"] is not None:
        sy, sx, sry, srx = b["stomach"]
        lab[interior & _ellipse(rows, cols, sy, sx, sry, srx)] = Tissue.STOMACH
    my, mx, mry, mrx = b["mediastinum"]
    lab[interior & _ellipse(rows, cols, my, mx, mry, mrx)] = Tissue.FAT
    vy, vx, vr = b["spine"]
    # paraspinal muscles, vertebral body (cortex + marrow), spinal canal behind it
    lab[_ellipse(rows, cols, vy + 1.3 * vr, vx, 1.5 * vr, 2.6 * vr) & (lab != Tissue.AIR)] = Tissue.MUSCLE
    lab[_ellipse(rows, cols, vy, vx, vr, vr)] = Tissue.CORTICAL_BONE
    lab[_ellipse(rows, cols, vy, vx, vr - 1.5, vr - 1.5)] = Tissue.MARROW
    lab[_ellipse(rows, cols, vy + vr + 6, vx, 6, 5)] = Tissue.CSF
    ay, ax, ar = b["aorta"]
    lab[_ellipse(rows, cols, ay, ax, ar + 1.5, ar + 1.5)] = Tissue.SOFT_TISSUE
    lab[_ellipse(rows, cols, ay, ax, ar, ar)] = Tissue.AORTA_BLOOD
    # oesophagus between aorta and spine
    lab[_ellipse(rows, cols, ay + 2, ax - 2.2 * ar, 6, 8)] = Tissue.SOFT_TISSUE
    if "scene" in b:  # bowel, spleen, IVC, fat pads (ofrnn.simulate.scene)
        paint_scene(lab, rows, cols, b, _paint)
    return lab


def _turned_torso(anatomy: Anatomy, rows, cols, turn):
    """:func:`_torso` turned by ``turn`` (rad, counter-clockwise on the display) about the LV
    centre: built on a grid of the same step and phase around the turned field of view, then read
    at each sub-sample's nearest point."""
    cy, cx = anatomy.centre_mm
    c, s = np.cos(turn), np.sin(turn)
    # the point of the unturned torso that lands at display (row, col): turn back by -turn
    # (display angles run counter-clockwise with rows pointing down)
    src_r = cy + c * (rows - cy) + s * (cols - cx)
    src_c = cx - s * (rows - cy) + c * (cols - cx)
    step = rows[1, 0] - rows[0, 0]
    lo_r, lo_c = (np.floor((v.min() - a[0]) / step) for v, a in ((src_r, rows[:, 0]), (src_c, cols[0])))
    hi_r, hi_c = (np.ceil((v.max() - a[0]) / step) for v, a in ((src_r, rows[:, 0]), (src_c, cols[0])))
    grid_r = rows[0, 0] + step * np.arange(lo_r, hi_r + 1)[:, None]
    grid_c = cols[0, 0] + step * np.arange(lo_c, hi_c + 1)[None, :]
    big = _torso(anatomy, grid_r, grid_c)
    ir = np.rint((src_r - grid_r[0, 0]) / step).astype(np.intp)
    ic = np.rint((src_c - grid_c[0, 0]) / step).astype(np.intp)
    return big[np.clip(ir, 0, big.shape[0] - 1), np.clip(ic, 0, big.shape[1] - 1)]


def material_map(anatomy: Anatomy, shape, spacing, k=SUPERSAMPLE):
    """End-diastolic label map on the K-times supersampled grid of the whole field of view.

    The torso is laid out with the chest wall above the heart and then turned about the LV
    centre by the scene's ``turn_deg`` (the oblique short-axis plane is planned on the heart,
    so the body shows at any angle around it); the heart and the great vessels and atrium
    planned with it are drawn unturned.
    """
    H, W = shape
    rows = _grid_mm(H, spacing, k)[:, None]
    cols = _grid_mm(W, spacing, k)[None, :]
    b = anatomy.body
    turn = np.deg2rad(b["scene"].get("turn_deg", 0.0)) if "scene" in b else 0.0
    lab = _turned_torso(anatomy, rows, cols, turn) if turn else _torso(anatomy, rows, cols)
    if "scene" in b:
        paint_planned(lab, rows, cols, b, _paint)
    # the heart, inside its pericardial sac, over everything else
    c = anatomy.centre_mm
    reach = anatomy.heart_radius + 2.0
    r0, r1 = np.searchsorted(rows[:, 0], [c[0] - reach, c[0] + reach])
    c0, c1 = np.searchsorted(cols[0], [c[1] - reach, c[1] + reach])
    rr, cc = np.broadcast_arrays(rows[r0:r1], cols[:, c0:c1])
    R = np.hypot(rr - c[0], cc - c[1])
    theta = np.arctan2(-(rr - c[0]), cc - c[1])
    hl, inside = heart_labels(anatomy, R, theta, rr, cc)
    sub = lab[r0:r1, c0:c1]
    sub[inside] = hl[inside]
    return lab


def soften_fat_boundaries(smap, mat, sigma_px):
    """Through-plane partial volume at the boundaries of the fat inside the body (``Tissue.FAT``:
    epicardial and mediastinal fat, fat pads, septa, mesentery).

    A cine's 6-10 mm slice cuts these thin, curved fat sheets obliquely, so across a boundary the
    fat-water mixture of a voxel changes over a millimetre or so in-plane, not at one point of the
    2-D material map. The signal map is blended with its Gaussian blur by the weight
    ``4 e (1 - e)`` of the blurred fat indicator ``e``: 1 on a boundary, 0 away from it, so only a
    band about the boundaries changes. Fat is read in opposed phase (:func:`ofrnn.simulate.mri.signal_table`),
    so a sharp boundary is a sharp zero of the signed signal, which the magnitude turns into a kink
    with far more power in the finest spectral bands than real frames hold (docs/phantom-realism.md).

    Parameters
    ----------
    smap : (H, W) float32 or complex64
        Signal per point of the material grid.
    mat : (H, W) uint8
        Labels of the same grid (:class:`ofrnn.simulate.mri.Tissue`).
    sigma_px : float
        Gaussian sigma in grid points; 0 returns ``smap`` itself.

    Returns
    -------
    (H, W) array of ``smap``'s dtype. Labels, and so masks and flow, are untouched.
    """
    if sigma_px <= 0:
        return smap
    e = ndi.gaussian_filter((mat == Tissue.FAT).astype(np.float32), sigma_px)
    w = 4 * e * (1 - e)
    return (w * ndi.gaussian_filter(smap, sigma_px) + (1 - w) * smap).astype(smap.dtype)  # complex too


#: the ventricles' blood (:func:`blood_inflow`); papillary muscles and trabeculae are walls to it
VENTRICULAR_BLOOD = (Tissue.LV_BLOOD, Tissue.RV_BLOOD)


def blood_inflow(lab, step_mm, *, amplitude, length_mm, blood=VENTRICULAR_BLOOD):
    """Signal factor of the ventricles' blood across a chamber: darker at the walls, brighter in the
    core, about the blood's steady-state level.

    In bSSFP, blood that entered the slice a few RF pulses ago has not yet fallen to the steady
    state and reads brighter (in-flow); blood next to walls, papillary muscles and trabeculae is slow,
    stays in the slice longer, and is saturated towards the steady state; at the wall itself the
    voxel also holds trabeculae too fine to draw (Scheffler & Lehnhardt, Eur Radiol 13:2409 (2003);
    Markl et al., MRM 50:892 (2003)). Vessels cut across by the slice are left alone: their blood
    is fast throughout, and a wall layer millimetres deep would dim the small ones.

    With ``d`` the distance (mm) from a blood point to the nearest point that is not ``blood``, the
    factor is ``1 - a + 2 a (1 - exp(-d / L))``: about ``1 - a`` at the wall (``d`` is one grid step
    there), ``1 + a`` in the core. It is centred on the steady state because the table's blood level
    (:func:`ofrnn.simulate.mri.signal_table`) was set on the calibration frames' median myocardium /
    blood. The shape was set on the calibration frames' LV blood by depth from the
    contour (``make realism-calibrate``, "blood core / rim").

    Parameters
    ----------
    lab : (H, W) integer array of :class:`ofrnn.simulate.mri.Tissue` labels.
    step_mm : float
        Grid spacing of ``lab`` (mm).
    amplitude : float, keyword-only
        ``a``, in [0, 1).
    length_mm : float, keyword-only
        ``L`` (mm), the depth over which the blood brightens.
    blood : tuple of Tissue, keyword-only
        The labels whose blood takes the profile.

    Returns
    -------
    (H, W) float32: the factor, 1 outside ``blood``.
    """
    if not 0 <= amplitude < 1 or length_mm <= 0:
        raise ValueError(f"amplitude must be within [0, 1) and length_mm positive, got {amplitude}, {length_mm}")
    inside = np.isin(lab, blood)
    out = np.ones(lab.shape, np.float32)
    if inside.any():
        d = ndi.distance_transform_edt(inside) * step_mm
        out[inside] = 1 - amplitude + 2 * amplitude * (1 - np.exp(-d[inside] / length_mm))
    return out


def _block_mean(a, k):
    h, w = a.shape[0] // k, a.shape[1] // k
    return a.reshape(h, k, w, k).mean(axis=(1, 3))


def _block_frac(mask, k):
    return _block_mean(mask.astype(np.float32), k)


def render(anatomy: Anatomy, motion: Motion, *, shape, spacing, signal, texture, band=None, k=SUPERSAMPLE,
           fat_partial_volume_mm=0.0, inflow=None):
    """Render noise-free frames, masks and exact flow.

    Parameters
    ----------
    anatomy, motion : the subject's model.
    shape : (H, W) output matrix; spacing : pixel size (mm).
    signal : float32 or complex64 (n_labels,) signal per tissue label (see
        :func:`ofrnn.simulate.mri.signal_table`; complex when fat is read off the centre of TR).
    texture : float32 (H*k, W*k) multiplicative tissue texture on the material grid (1 = none).
    band : optional ``(table, index)``: off-resonance signal ratio per label and phase bin
        (:func:`ofrnn.simulate.mri.band_table`, signed or not) and the bin of every material point
        (:func:`ofrnn.simulate.scene.band_index`), for bSSFP banding.
    fat_partial_volume_mm : Gaussian sigma (mm) of :func:`soften_fat_boundaries` (0: sharp boundaries).
    inflow : optional ``(amplitude, length_mm)`` of :func:`blood_inflow`, by each frame's walls
        (None: uniform blood).

    Returns
    -------
    dict with ``frames`` (T,H,W) float32 (complex64 for a complex ``signal``), ``myocardium_t``, ``lv_cavity_t`` (T,H,W) uint8,
    ``infarct``, ``myocardium``, ``aha_segments`` (H,W) uint8, ``flow`` (T-1,2,H,W) float32 in
    pixels (dy, dx), ``flow_valid`` (T-1,H,W) uint8.
    """
    H, W = shape
    T = len(motion.phases)
    mat = material_map(anatomy, shape, spacing, k)
    smap = signal[mat] * texture
    if band is not None:
        table, index = band
        smap = smap * table[mat, index]
    smap = soften_fat_boundaries(smap, mat, fat_partial_volume_mm / spacing * k)
    # the in-flow profile is applied frame by frame below: the ventricles lie inside the moving window
    # (the heart's radius with its RV and fat is within r_taper < r_window), which every frame overwrites
    frame0 = _block_mean(smap, k).astype(np.complex64 if np.iscomplexobj(smap) else np.float32)
    myo_labels = (Tissue.LV_MYOCARDIUM, Tissue.LV_INFARCT)
    cav_labels = (Tissue.LV_BLOOD, Tissue.PAPILLARY, Tissue.TRABECULAE)
    solid = np.isin(mat, SOLID)

    # the moving part: a box of output pixels covering the motion window
    c = anatomy.centre_mm / spacing
    rad = motion.r_window / spacing + 2
    y0, y1 = max(0, int(c[0] - rad)), min(H, int(np.ceil(c[0] + rad)) + 1)
    x0, x1 = max(0, int(c[1] - rad)), min(W, int(np.ceil(c[1] + rad)) + 1)
    rows = _grid_mm(H, spacing, k)[y0 * k:y1 * k][:, None]
    cols = _grid_mm(W, spacing, k)[x0 * k:x1 * k][None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    mid = k // 2  # the sub-sample at each pixel centre
    prow, pcol = rows[mid::k, mid::k], cols[mid::k, mid::k]

    frames = np.repeat(frame0[None], T, axis=0)
    myo_t = np.zeros((T, H, W), np.uint8)
    cav_t = np.zeros((T, H, W), np.uint8)
    flow = np.zeros((T - 1, 2, H, W), np.float32)
    # flow is tissue ground truth where most of a pixel is solid tissue (not blood, air or fluid)
    valid = np.repeat((_block_frac(solid, k) >= 0.5)[None], T - 1, axis=0).astype(np.uint8)
    maps = [FrameMap(anatomy, motion, t) for t in range(T)]
    nr, nc = mat.shape
    mat_flat, smap_flat = mat.ravel(), smap.ravel()

    for t in range(T):
        R, theta = maps[t].inverse(rows, cols)
        my, mx = anatomy.centre_mm[0] - R * np.sin(theta), anatomy.centre_mm[1] + R * np.cos(theta)
        # nearest material sub-sample (grid of _grid_mm)
        ir = np.clip(np.rint((my / spacing + 0.5) * k - 0.5).astype(np.intp), 0, nr - 1)
        ic = np.clip(np.rint((mx / spacing + 0.5) * k - 0.5).astype(np.intp), 0, nc - 1)
        at = ir * nc + ic  # flat gathers: faster than two-array indexing, the same values
        lab = mat_flat.take(at)
        values = smap_flat.take(at)
        if inflow is not None:  # by the distance from this frame's walls
            values = values * blood_inflow(lab, spacing / k, amplitude=inflow[0], length_mm=inflow[1])
        frames[t, y0:y1, x0:x1] = _block_mean(values, k)
        myo_t[t, y0:y1, x0:x1] = _block_frac(np.isin(lab, myo_labels), k) >= 0.5
        cav_t[t, y0:y1, x0:x1] = _block_frac(np.isin(lab, cav_labels), k) >= 0.5
        if t == 0:
            infarct = np.zeros((H, W), np.uint8)
            infarct[y0:y1, x0:x1] = _block_frac(lab == Tissue.LV_INFARCT, k) >= 0.5
        if t < T - 1:
            Rc, thc = R[mid::k, mid::k], theta[mid::k, mid::k]
            ny, nx = maps[t + 1].forward(Rc, thc)
            flow[t, 0, y0:y1, x0:x1] = (ny - prow) / spacing
            flow[t, 1, y0:y1, x0:x1] = (nx - pcol) / spacing
            valid[t, y0:y1, x0:x1] = _block_frac(np.isin(lab, SOLID), k) >= 0.5

    myocardium = myo_t[0].copy()
    infarct &= myocardium
    aha = np.zeros((H, W), np.uint8)
    yy, xx = np.nonzero(myocardium)
    cy, cx = anatomy.centre_mm
    aha[yy, xx] = anatomy.aha(np.arctan2(-(yy * spacing - cy), xx * spacing - cx))
    return dict(frames=frames, myocardium_t=myo_t, lv_cavity_t=cav_t, infarct=infarct, myocardium=myocardium,
                aha_segments=aha, flow=flow, flow_valid=valid)


def lv_boxes(myocardium_t, lv_cavity_t):
    """(T,4) int32 half-open boxes tight around the LV epicardium (myocardium plus cavity)."""
    T = myocardium_t.shape[0]
    boxes = np.full((T, 4), -1, np.int32)
    for t in range(T):
        ys, xs = np.nonzero(myocardium_t[t] | lv_cavity_t[t])
        if ys.size:
            boxes[t] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    return boxes
