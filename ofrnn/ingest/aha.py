"""AHA 16-segment maps and slice levels from short-axis label maps (LV myocardium, LV cavity, RV).

The segment rule itself is the simulator's, :func:`ofrnn.simulate.anatomy.aha_segment` (Cerqueira et
al., Circulation 105:539 (2002)); this module finds what it needs on a labelled end-diastolic slice:

* **Which slices.** A slice gets segments only when its frame-0 (end-diastolic) labels hold LV
  myocardium and RV cavity pixels within :data:`RV_REACH_PX` pixels of that myocardium (the RV
  marks the septum), and its level is known. Otherwise ``aha_segments`` stays absent (unknown) and
  the level ``unknown``.
* **Level.** The slices with LV labels (myocardium or cavity) at frame 0 are split, in slice order,
  into three near-equal groups (``numpy.array_split``): basal, mid, apical. Slice order in a NIfTI
  file need not run from base to apex, so the end whose third has the larger mean LV cavity area
  is taken as basal (the LV narrows towards the apex); equal areas decide nothing and leave the
  levels unknown. Fewer than :data:`MIN_LV_SLICES` LV slices (a 3-D+t file is one slice) cannot be
  split into thirds: levels stay unknown, and so do the segments, whose numbering needs the level.
* **Angles** follow the simulator (:mod:`ofrnn.simulate.anatomy`): around the LV centre (centroid
  of myocardium plus cavity), in mm, ``theta = atan2(-(row - cy), col - cx)``: 0 towards the image
  right, 90 degrees up, counter-clockwise positive, for an image viewed from the apex with anterior
  up and the patient's right on the image left. The RV insertion points are the two ends of the arc
  of myocardium pixels within :data:`RV_REACH_PX` of the RV: going counter-clockwise, the arc runs
  from the anterior insertion through the septum to the inferior one. The RV centre is the circular
  mean angle of the RV pixels (apical slices' septal segment is centred on it).
* **Orientation.** Labels alone cannot tell an image from its mirror: a mirrored image keeps the
  septum on the RV side but swaps anterior and inferior (segments 2 and 3, 1 and 4, 6 and 5, ...).
  The affine decides when it is unambiguous: the cine image, shown with rows down and columns right,
  is seen along ``n = a0 x a1`` (the affine's first two columns, world RAS+), and an image seen from
  the apex has ``n`` near the apex-to-base direction, about (+1, -1, +1)/sqrt(3) in RAS+ (the apex
  points to the patient's left, anterior and inferior). When ``|n . (1, -1, 1)/sqrt(3)|`` is at
  least :data:`SHORT_AXIS_COS` the sign of that product says whether to mirror the angles. Otherwise
  (axis-aligned placeholder affines such as ACDC's, oblique planes far from short axis) the image is
  assumed to be in the display convention above, and a note says so. Patients whose long axis lies
  far from the nominal one (dextrocardia, unusual positioning) defeat the affine test.
"""
from __future__ import annotations

import numpy as np

from ..simulate.anatomy import aha_segment

#: pixels (8-connected steps) within which myocardium counts as next to the RV: label maps often
#: leave a one- or two-pixel gap (the RV wall) between the RV cavity and the septum
RV_REACH_PX = 2
#: fewest LV slices that split into basal, mid and apical thirds
MIN_LV_SLICES = 3
#: apex-to-base direction in world RAS+ (right, anterior, superior), nominal
APEX_TO_BASE = np.array([1.0, -1.0, 1.0]) / np.sqrt(3.0)
#: cos 45 deg: a viewing direction this close to the nominal long axis decides the orientation;
#: an axial or otherwise axis-aligned plane (cos 0.58) does not
SHORT_AXIS_COS = float(np.cos(np.pi / 4))
#: septal arcs (between the insertion points) accepted, degrees: normal septa span about 100-150
#: degrees; a few pixels of contact or an RV wrapped round the LV give no usable insertion points
SEPTUM_RANGE_DEG = (30.0, 240.0)


def view_sign(affine):
    """Whether a cine image (rows down, columns right) is seen from the apex, from its affine.

    Parameters
    ----------
    affine : ndarray (4, 4)
        NIfTI voxel-to-world affine (RAS+, mm) of the (x, y, slice) grid; image columns run along x.

    Returns
    -------
    sign : int
        +1: seen from the apex (the simulator's display convention), -1: seen from the base
        (mirrored); angles are multiplied by it.
    assumed : bool
        True when the affine is ambiguous (see the module docstring) and +1 is the assumption.
    """
    affine = np.asarray(affine, dtype=float)
    n = np.cross(affine[:3, 0], affine[:3, 1])
    cos = float(n @ APEX_TO_BASE / np.linalg.norm(n))
    if abs(cos) < SHORT_AXIS_COS:
        return 1, True
    return (1 if cos > 0 else -1), False


def slice_levels(cavity_px):
    """Basal, mid and apical thirds of the LV slices (see the module docstring).

    Parameters
    ----------
    cavity_px : dict
        ``{slice index: frame-0 LV cavity area in pixels}`` for the slices with LV labels at frame 0.

    Returns
    -------
    dict
        ``{slice index: 'basal' | 'mid' | 'apical'}``; empty when fewer than :data:`MIN_LV_SLICES`
        slices or when both outer thirds have the same mean cavity area.
    """
    order = sorted(cavity_px)
    if len(order) < MIN_LV_SLICES:
        return {}
    thirds = np.array_split(np.array(order), 3)
    first, last = (np.mean([cavity_px[k] for k in part]) for part in (thirds[0], thirds[-1]))
    if first == last:
        return {}
    if last > first:
        thirds = thirds[::-1]
    return {int(k): level for part, level in zip(thirds, ("basal", "mid", "apical")) for k in part}


def slice_segments(myocardium, cavity, rv, level, spacing_mm, sign=1):
    """AHA segments of one labelled end-diastolic slice.

    Parameters
    ----------
    myocardium, cavity, rv : ndarray (H, W) bool
        LV myocardium, LV cavity and RV cavity labels of the slice's frame 0, (row, column).
    level : {'basal', 'mid', 'apical'}
    spacing_mm : (float, float)
        (row, column) pixel size in mm; angles are measured in mm.
    sign : {1, -1}
        -1 mirrors the angles (an image seen from the base; :func:`view_sign`).

    Returns
    -------
    ndarray (H, W) uint8 or None
        Segment 1-16 on every myocardium pixel, 0 elsewhere; None when no RV lies within
        :data:`RV_REACH_PX` of the myocardium or the septal arc is outside :data:`SEPTUM_RANGE_DEG`.
    """
    from scipy.ndimage import binary_dilation

    if not myocardium.any():
        return None
    near = myocardium & binary_dilation(rv, structure=np.ones((3, 3), bool), iterations=RV_REACH_PX)
    if not near.any():
        return None
    rows, cols = np.nonzero(myocardium | cavity)
    cy, cx = rows.mean(), cols.mean()
    sy, sx = spacing_mm

    def angles(mask):
        r, c = np.nonzero(mask)
        return np.mod(sign * np.arctan2(-(r - cy) * sy, (c - cx) * sx), 2 * np.pi)

    # the contact arc is the circle minus its largest gap: it starts (counter-clockwise) at the
    # anterior insertion and ends at the inferior one
    a = np.sort(angles(near))
    gaps = np.diff(np.append(a, a[0] + 2 * np.pi))
    j = int(np.argmax(gaps))
    anterior, inferior = a[(j + 1) % len(a)], a[j]
    septum = np.rad2deg(np.mod(inferior - anterior, 2 * np.pi))
    if not SEPTUM_RANGE_DEG[0] <= septum <= SEPTUM_RANGE_DEG[1]:
        return None
    rv_centre = float(np.angle(np.exp(1j * angles(rv)).mean()))
    segments = np.zeros(myocardium.shape, np.uint8)
    segments[myocardium] = aha_segment(angles(myocardium), level, anterior_insertion=anterior,
                                       inferior_insertion=inferior, rv_centre=rv_centre)
    return segments


def label_segments(ed_labels, affine, spacing_mm):
    """Levels and AHA segments for the slices of one labelled input.

    Parameters
    ----------
    ed_labels : dict
        ``{slice index: (myocardium, cavity, rv)}``, bool (H, W) frame-0 labels in (row, column)
        orientation, for the slices with LV labels at frame 0.
    affine : ndarray (4, 4)
        The input's voxel-to-world affine (:func:`view_sign`).
    spacing_mm : (float, float)
        (row, column) pixel size in mm.

    Returns
    -------
    segments : dict
        ``{slice index: (level, aha_segments (H, W) uint8)}`` for the slices that get segments.
    assumed : bool
        Whether the orientation was assumed rather than read from the affine (only meaningful when
        ``segments`` is not empty).
    """
    levels = slice_levels({k: int(cavity.sum()) for k, (_, cavity, _) in ed_labels.items()})
    sign, assumed = view_sign(affine)
    out = {}
    for k, level in levels.items():
        seg = slice_segments(*ed_labels[k], level, spacing_mm, sign)
        if seg is not None:
            out[k] = (level, seg)
    return out, assumed


__all__ = ["RV_REACH_PX", "MIN_LV_SLICES", "SHORT_AXIS_COS", "SEPTUM_RANGE_DEG", "view_sign", "slice_levels",
           "slice_segments", "label_segments"]
