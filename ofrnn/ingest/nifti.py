"""Ingest NIfTI cines and label maps into a cohort (``ofrnn ingest nifti``), with nibabel.

Each slice of each file is one subject. The rules, and the choices behind them:

* **Files.** NIfTI-1 or NIfTI-2 (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pairs). A 4-D file is
  (x, y, slice, time), as ACDC and M&Ms ship their cines; a 3-D file is read as (x, y, time), one
  slice (a 3-D *volume* has no time axis and is not a cine). Trailing axes of length 1 beyond the
  fourth are dropped. Intensities are the stored values times ``scl_slope`` plus ``scl_inter``
  (nibabel applies them), as float32.
* **Orientation.** NIfTI's first array axis runs along image columns: a slice is stored as
  ``data[x, y]``. Ingestion transposes it, ``cine[t, row, col] = data[col, row, slice, t]``, so that
  images come out as (row, column) like DICOM ones, and nothing is flipped or resampled. The file's
  affine (nibabel's ``img.affine``: the sform where set, else the qform) is kept per subject with the
  slice index and the spatial shape (:data:`ofrnn.store.NIFTI_ATTRS`), so a result on the (row,
  column) image goes back to the input's voxels: :func:`nifti_volume_for`.
* **Spacing** is ``(pixdim[2], pixdim[1])`` (row, column) in mm, converted from the header's spatial
  unit (``xyzt_units``: metres, micrometres; an unknown unit is taken as mm, with a note).
  ``slice_position_mm`` is the slice's origin projected on the slice normal (the cross product of the
  affine's first two columns).
* **Frame times.** Frame ``k`` lies at ``k * pixdim[4]`` for a 4-D file whose header gives a time
  unit (s, ms, us) and a cycle (frames x interval) of 250-2500 ms, a human R-R interval. Otherwise
  (no unit; ACDC, for one, stores a placeholder of 1 s) the frames are spread evenly over
  ``cycle_ms`` (``--cycle-ms``, else 1000 ms), ``times_assumed`` is 1 and a note says why. Frame 0 is
  taken as end-diastole, as in ACDC; resampling to ``frames`` per cycle is periodic
  (:mod:`ofrnn.ingest.common`).
* **Label maps** (``--labels``, one group per input, in input order; optional): integer maps on the
  cine's grid (same affine), of the cine's full shape (every frame) or of its spatial shape (one
  frame: frame 0, the end-diastole of ACDC's ``frame01`` files, or frame ``N`` when the file is
  given as ``FILE@N``, 0-based). The codes default to ACDC's: 1 RV cavity, 2 LV myocardium, 3 LV
  cavity (``myocardium_label`` 2, ``cavity_label`` 3; M&Ms uses 1 LV cavity, 2 myocardium, 3 RV:
  ``cavity_label`` 1). On each slice and labelled frame with any myocardium or cavity label, the
  cavity becomes the endocardial fill and cavity plus myocardium the epicardial fill, which give
  ``lv_cavity_t``, ``myocardium_t``, ``myocardium`` and ``lv_box`` as for DICOM contours; a slice
  without either label on a frame (beyond the apex or the base) leaves that frame unannotated.
* **AHA segments and levels** come from the frame-0 labels (the RV code, ``rv_label``, marks the
  septum) when the input has at least three LV slices: see :mod:`ofrnn.ingest.aha` for the level
  heuristic (thirds in slice order, the base at the end with the larger LV cavity) and the
  orientation rule (the affine where it shows a short-axis view, else an assumption and a note).
* **Privacy.** Only the voxels, the spacing, the times and the affine are read: never the header's
  ``descrip``, ``aux_file``, ``db_name`` or intent name, nor any extension (dcm2niix and others put
  DICOM header values there). No path is stored; subject ids come from the user or are a hash of
  the file's content and the slice index.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import OfrnnError
from ..files import content_digest
from ..store import NIFTI_ATTRS
from .aha import label_segments
from .common import ASSUMED_CYCLE_MS, DEFAULT_FRAMES, CineSlice, IngestReport, check_frames, short_hash, write_slices

#: ACDC's label codes (Bernard et al. 2018): 1 RV cavity, 2 LV myocardium, 3 LV cavity
ACDC_RV, ACDC_MYOCARDIUM, ACDC_CAVITY = 1, 2, 3
#: cycles (frames x header frame interval) accepted as one heartbeat, ms: 24-240 beats per minute
_CYCLE_RANGE_MS = (250.0, 2500.0)
_SPACE_MM = {"mm": 1.0, "meter": 1000.0, "micron": 1e-3}
_TIME_MS = {"sec": 1000.0, "msec": 1.0, "usec": 1e-3}
_FRAME_SUFFIX = re.compile(r"^(.*)@(\d+)$")


def _load(path, what="NIfTI file"):
    """A NIfTI-1/2 image, or OfrnnError naming the file."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise OfrnnError(f"no such {what}", path=path)
    try:
        img = nib.load(path)
    except ImageFileError:
        raise OfrnnError(f"not a {what} (nibabel recognises no image format in it)", path=path) from None
    except Exception as e:  # truncated gzip, bad header sizes, ...
        raise OfrnnError(f"unreadable {what} ({type(e).__name__})", path=path) from None
    if not isinstance(img, (nib.Nifti1Pair, nib.Nifti2Pair)):
        raise OfrnnError(f"a {type(img).__name__}, not NIfTI", path=path)
    return img


def _trim(shape):
    """``shape`` without trailing axes of length 1 beyond the fourth."""
    shape = tuple(int(n) for n in shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _cine(img, path):
    """Voxels as float32 (X, Y, Z, T), and whether the file was (x, y, time)."""
    shape = _trim(img.shape)
    if len(shape) not in (3, 4):
        raise OfrnnError(f"shape {shape}: expected 4-D (x, y, slice, time) or 3-D (x, y, time)", path=path,
                         field="dim")
    if shape[-1] < 2:
        raise OfrnnError(f"{shape[-1]} frame(s) on the time axis; a cine needs at least 2", path=path, field="dim")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as e:
        raise OfrnnError(f"cannot read the voxels ({type(e).__name__})", path=path, field="data") from None
    if not np.all(np.isfinite(data)):
        raise OfrnnError("contains NaN or inf", path=path, field="data")
    if len(shape) == 3:
        return data[:, :, None, :], True
    return data, False


def _spacing(img, path, report):
    """(row, column) pixel size in mm from pixdim[2], pixdim[1] and the spatial unit."""
    unit = img.header.get_xyzt_units()[0]
    if unit not in _SPACE_MM:
        report.notes.append(f"{path}: spatial unit {unit!r} in xyzt_units; pixdim taken as mm")
    factor = _SPACE_MM.get(unit, 1.0)
    zooms = img.header.get_zooms()
    spacing = (float(zooms[1]) * factor, float(zooms[0]) * factor)
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise OfrnnError(f"pixel size {spacing} is not positive", path=path, field="pixdim")
    return spacing


def _times(img, path, n, three_d, cycle_ms, report):
    """Frame times (ms), the cycle they tile, and whether they are assumed (see the module docstring)."""
    if not three_d and cycle_ms is None:
        unit = img.header.get_xyzt_units()[1]
        dt = float(img.header.get_zooms()[3]) * _TIME_MS.get(unit, np.nan)
        if np.isfinite(dt) and _CYCLE_RANGE_MS[0] <= n * dt <= _CYCLE_RANGE_MS[1]:
            return np.arange(n) * dt, n * dt, False
        why = (f"time unit {unit!r} in xyzt_units" if unit not in _TIME_MS
               else f"pixdim[4] = {img.header.get_zooms()[3]:g} {unit}: {n} frames would span {n * dt:g} ms, "
                    f"not a heartbeat")
    else:
        why = "a 3-D file has no frame interval" if cycle_ms is None else "--cycle-ms"
    cycle = float(cycle_ms or ASSUMED_CYCLE_MS)
    report.notes.append(f"{path}: {why}; the {n} frames are spread evenly over {cycle:g} ms"
                        + ("" if cycle_ms else " (give --cycle-ms for the real R-R interval)"))
    return np.arange(n) * cycle / n, cycle, True


def read_nifti_slices(path, *, cycle_ms=None, report=None):
    """Read one NIfTI cine into :class:`~ofrnn.ingest.common.CineSlice` records, one per slice.

    Parameters
    ----------
    path : path
        A 4-D (x, y, slice, time) or 3-D (x, y, time) NIfTI file.
    cycle_ms : float or None
        R-R interval over which to spread the frames evenly, instead of the header's frame interval.
    report : IngestReport or None
        Collects the notes (unit and time assumptions).

    Returns
    -------
    slices : list of CineSlice
        In slice order; frames (T, H, W) float32 with H = y, W = x (the transpose of the NIfTI slice).
    geometry : dict
        ``affine`` (4, 4), ``shape`` (cine shape as stored, trailing ones dropped), ``digest`` (content).

    Raises
    ------
    OfrnnError
        Naming the file, the header field and the cause.
    """
    path = Path(path)
    report = report if report is not None else IngestReport()
    img = _load(path)
    data, three_d = _cine(img, path)
    X, Y, Z, T = data.shape
    spacing = _spacing(img, path, report)
    times, cycle, assumed = _times(img, path, T, three_d, cycle_ms, report)
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise OfrnnError("the voxel-to-world affine is singular or not finite", path=path, field="sform/qform")
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    normal /= np.linalg.norm(normal)
    digest = content_digest(path, digits=64)
    slices = []
    for k in range(Z):
        position = float((affine @ [0.0, 0.0, k, 1.0])[:3] @ normal)
        attrs = dict(nifti_affine=affine, nifti_shape=np.array([X, Y, Z], dtype=np.int64), nifti_slice=k)
        slices.append(CineSlice(
            key=short_hash(f"{digest}|{k}"), series_number=None, study_hash=digest[:12], series_hash=digest[:12],
            series_uid=digest, position_mm=position, frames=np.ascontiguousarray(data[:, :, k, :].transpose(2, 1, 0)),
            times_ms=times, cycle_ms=cycle, times_assumed=assumed, spacing_mm=spacing, instances=[None] * T,
            paths=[path] * T, attrs=attrs))
    return slices, dict(affine=affine, shape=_trim(img.shape), digest=digest)


def _label_entry(entry):
    """``FILE`` or ``FILE@N``: the path and the 0-based frame (None: not given)."""
    text = str(entry)
    m = _FRAME_SUFFIX.match(text)
    if m and not Path(text).exists():
        return Path(m.group(1)), int(m.group(2))
    return Path(text), None


def read_label_masks(entries, geometry, *, myocardium_label=ACDC_MYOCARDIUM, cavity_label=ACDC_CAVITY, rv_label):
    """LV fills per slice and frame, and the frame-0 labels, from one cine's label maps.

    Parameters
    ----------
    entries : list of str or path
        Label map files, each ``FILE`` or ``FILE@N`` (see the module docstring).
    geometry : dict
        The cine's, from :func:`read_nifti_slices`.
    myocardium_label, cavity_label : int
        Label codes of the LV myocardium and the LV cavity.
    rv_label : int or None
        Label code of the RV cavity; None: no RV labels (the ``rv`` fills are empty).

    Returns
    -------
    lv : dict
        ``{slice index: {frame index: (endo, epi)}}``, bool (H, W) fills in the cine's (row, column)
        orientation; slices and frames without myocardium or cavity labels are left out.
    ed : dict
        ``{slice index: (myocardium, cavity, rv)}``, bool (H, W) labels of frame 0 (end-diastole),
        same orientation, for the slices with myocardium or cavity labels on frame 0 (for
        :func:`ofrnn.ingest.aha.label_segments`).
    """
    full = geometry["shape"]
    spatial = full[:-1] if len(full) == 4 else full[:2]
    T = full[-1]
    X, Y, Z = full[0], full[1], full[2] if len(full) == 4 else 1
    out, ed = {}, {}
    for entry in entries:
        path, frame = _label_entry(entry)
        img = _load(path, "NIfTI label map")
        shape = _trim(img.shape)
        while len(shape) > len(spatial) and shape[-1] == 1:
            shape = shape[:-1]  # an (x, y, z, 1) map is a spatial one
        if shape == full:
            if frame is not None:
                raise OfrnnError(f"@{frame} names one frame, but this map has all {T}", path=path, field="dim")
            frames = list(range(T))
        elif shape == spatial:
            frames = [frame or 0]
            if frames[0] >= T:
                raise OfrnnError(f"frame {frames[0]} of a {T}-frame cine (frames count from 0)", path=path,
                                 field="@frame")
        else:
            raise OfrnnError(f"shape {shape}, expected the cine's {full} (every frame) or {spatial} (one frame)",
                             path=path, field="dim")
        if not np.allclose(img.affine, geometry["affine"], rtol=1e-4, atol=1e-3):
            raise OfrnnError("affine differs from the cine's: not the same voxel grid", path=path,
                             field="sform/qform")
        labels = np.asanyarray(img.dataobj).reshape(X, Y, Z, len(frames))
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise OfrnnError("label values must be integers", path=path, field="data")
        for j, fi in enumerate(frames):
            for k in range(Z):
                lab = labels[:, :, k, j].T
                cavity, myo = lab == cavity_label, lab == myocardium_label
                if not (cavity.any() or myo.any()):
                    continue
                slot = out.setdefault(k, {})
                if fi in slot:
                    raise OfrnnError(f"a second label map for frame {fi}", path=path, field="@frame")
                slot[fi] = (cavity, cavity | myo)
                if fi == 0:
                    rv = lab == rv_label if rv_label is not None else np.zeros_like(myo)
                    ed[k] = (myo, cavity, rv)
    return out, ed


def ingest_nifti(files, out, *, labels=None, frames=DEFAULT_FRAMES, masks=None, ids=None, id_prefix=None,
                 cycle_ms=None, myocardium_label=ACDC_MYOCARDIUM, cavity_label=ACDC_CAVITY, rv_label=None):
    """Read NIfTI cines (and optional label maps and infarct masks) and write a ``nifti`` cohort.

    Parameters
    ----------
    files : list of path
        4-D (x, y, slice, time) or 3-D (x, y, time) NIfTI cines; every slice is a subject.
    out : path
        Cohort file to write (atomically: on any error or interruption the target is left as it was).
    labels : list of list of str, or None
        One group of label map entries (``FILE`` or ``FILE@N``) per input, in input order.
    frames : int
        Frames per cardiac cycle after resampling.
    masks : path or None
        Folder of infarct masks ``<subject id>.png`` / ``.npy``.
    ids, id_prefix : list of str, str
        Subject ids, one per slice in listing order (files in the order given, slices in file
        order), or a prefix numbered 01, 02, ...; default: hashes of content and slice.
    cycle_ms : float or None
        R-R interval (ms) over which to spread every file's frames, instead of the header's.
    myocardium_label, cavity_label : int
        Label codes (ACDC's 2 and 3 by default).
    rv_label : int or None
        Label code of the RV cavity, for AHA segments; None: the one code of 1-3 that is neither
        of the other two (ACDC's 1, M&Ms' 3), or no RV when that leaves none or several.

    Returns
    -------
    rows : list of dict
        One summary row per subject written.
    report : IngestReport
        Notes (assumed units and times, repeated files); they name input files: print, never store.

    Raises
    ------
    OfrnnError
        Bad input, naming the file, the field and the cause.
    """
    check_frames(frames)
    if cycle_ms is not None and not (np.isfinite(cycle_ms) and cycle_ms > 0):
        raise OfrnnError(f"{cycle_ms}; must be a positive number of ms", field="--cycle-ms")
    if myocardium_label == cavity_label:
        raise OfrnnError("myocardium and cavity need different label codes", field="--cavity-label")
    if rv_label is None:
        rest = {1, 2, 3} - {myocardium_label, cavity_label}
        rv_label = rest.pop() if len(rest) == 1 else None
    elif rv_label in (myocardium_label, cavity_label):
        raise OfrnnError(f"{rv_label} is also the myocardium or cavity code", field="--rv-label")
    if labels is not None and len(labels) != len(files):
        raise OfrnnError(f"{len(labels)} --labels group(s) for {len(files)} input file(s): give one --labels per "
                         f"input, in the same order", field="--labels")
    report = IngestReport()
    slices, masks_by_slice, aha_by_slice, seen = [], [], [], {}
    for i, path in enumerate(files):
        file_slices, geometry = read_nifti_slices(path, cycle_ms=cycle_ms, report=report)
        if geometry["digest"] in seen:
            report.drop_duplicate(f"{path}: the same content as {seen[geometry['digest']]}; dropped")
            continue
        seen[geometry["digest"]] = Path(path).name
        lv, ed = (read_label_masks(labels[i], geometry, myocardium_label=myocardium_label, cavity_label=cavity_label,
                                   rv_label=rv_label) if labels else ({}, {}))
        segments, assumed = label_segments(ed, geometry["affine"], file_slices[0].spacing_mm)
        if segments and assumed:
            report.notes.append(f"{path}: the affine does not show slices seen along the heart's long axis; AHA "
                                f"segments assume images seen from the apex (anterior up, the patient's right on "
                                f"the image left), else anterior and inferior segments are swapped")
        slices.extend(file_slices)
        masks_by_slice.extend(lv.get(k) for k in range(len(file_slices)))
        aha_by_slice.extend(segments.get(k) for k in range(len(file_slices)))
    params = dict(labels=bool(labels), myocardium_label=myocardium_label, cavity_label=cavity_label,
                  rv_label=rv_label, cycle_ms=cycle_ms)
    rows = write_slices(out, slices, ids=ids, id_prefix=id_prefix, masks=masks, source="nifti", params=params,
                        frames=frames, lv_masks=lambda i: masks_by_slice[i], aha=lambda i: aha_by_slice[i])
    return rows, report


def nifti_volume_for(slices, *, dtype=np.uint8):
    """A NIfTI-1 image on one input's voxel grid from per-subject (row, column) images.

    For results (e.g. infarct masks) that must overlay the input in ITK-SNAP or 3D Slicer: same
    spatial shape, same affine (sform and qform, code 1), mm.

    Parameters
    ----------
    slices : iterable of (dict, ndarray)
        ``(attrs, image)`` per subject of one input file, ``image`` (H, W) in the cohort's
        orientation and frame-0 coordinates; attrs (``Subject.attrs`` or ``Cohort.meta(id)["attrs"]``)
        with :data:`ofrnn.store.NIFTI_ATTRS`.
    dtype : numpy dtype
        Voxel type of the volume.

    Returns
    -------
    nibabel.Nifti1Image
        Shape (X, Y, Z) of the input; voxels of slices not given are 0.

    Raises
    ------
    OfrnnError
        A subject without NIfTI geometry, subjects of different inputs, or an image of the wrong shape.
    """
    import nibabel as nib

    volume, affine = None, None
    for attrs, image in slices:
        missing = [k for k in NIFTI_ATTRS if k not in attrs]
        if missing:
            raise OfrnnError("not a NIfTI subject (no input geometry)", field=missing[0])
        shape = tuple(int(n) for n in attrs["nifti_shape"])
        if volume is None:
            volume, affine = np.zeros(shape, dtype=dtype), np.asarray(attrs["nifti_affine"], dtype=np.float64)
        elif shape != volume.shape or not np.allclose(attrs["nifti_affine"], affine):
            raise OfrnnError("subjects of different NIfTI inputs in one volume", field="nifti_affine")
        image = np.asarray(image)
        if image.shape != (shape[1], shape[0]):
            raise OfrnnError(f"image of shape {image.shape}, expected {(shape[1], shape[0])} (rows = y, columns = x)",
                             field="image")
        volume[:, :, int(attrs["nifti_slice"])] = image.T
    if volume is None:
        raise OfrnnError("no slices given", field="slices")
    img = nib.Nifti1Image(volume, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


__all__ = ["ACDC_RV", "ACDC_MYOCARDIUM", "ACDC_CAVITY", "read_nifti_slices", "read_label_masks", "ingest_nifti",
           "nifti_volume_for"]
