"""Ingest short-axis cine DICOM, LV contours and infarct masks into a cohort (``ofrnn ingest dicom``).

One slice position of one cine series is one subject. The steps, and the choices behind them:

* **Files.** Every file under the folder (recursively; hidden ones excepted) is looked at by its
  content, not its name. A file with the 128-byte preamble and the ``DICM`` marker is DICOM. A file
  without them (older exports, some PACS and CD writers) is read as a bare DICOM dataset only when its
  first bytes are a group 0002 or 0008 element and it then parses as an image dataset (``PixelData``,
  ``Rows``, ``Columns``); anything else (a licence text, a viewer program) is *not a DICOM file*.
* **What is skipped, with one note line each** (and a count in the summary): files that are not
  DICOM; DICOM objects without an image (DICOMDIR, reports, presentation states); images that are not
  MR or not greyscale; and every series, geometry stack or slice position that is not a cine (a
  localizer, a single image, two acquisitions at one place). The run fails only when no cine remains,
  naming the cause. A file that is an MR image but cannot be read right (corrupt, an undecodable
  compression, NaN pixels, a non-numeric header value) is an error: it would leave a hole in a cine.
* **Compressed pixel data** is decoded by pydicom's plugins: pylibjpeg-libjpeg for JPEG Lossless
  (including SV1), JPEG-LS and baseline/extended JPEG; pylibjpeg-openjpeg (or Pillow) for JPEG 2000;
  pydicom itself for RLE and deflate.
* **Enhanced (multi-frame) MR**: every frame of a multi-frame file is an image of its own. Its trigger
  delay (``NominalCardiacTriggerDelayTime``), ``ImagePositionPatient``, ``ImageOrientationPatient``,
  ``PixelSpacing``, ``RescaleSlope`` and ``RescaleIntercept`` come from the frame's functional groups
  (``PerFrameFunctionalGroupsSequence``), else the shared ones, else the top-level dataset; its
  fallback order is ``TemporalPositionIndex``, else the frame number.
* **Duplicates.** A second file with the same ``SOPInstanceUID`` and the same pixels (a repeated copy
  such as ``X(1).dcm``) is dropped with a note; the same UID with different pixels is an error.
* **Grouping.** Images are grouped by ``SeriesInstanceUID``, then into stacks of one geometry
  (orientation within 1e-3, pixel spacing, matrix size), then by slice position: the
  ``ImagePositionPatient`` projected on the slice normal (the cross product of the two
  ``ImageOrientationPatient`` direction cosines), or ``SliceLocation`` when the geometry tags are
  missing. Positions within 0.05 mm are one slice; a cine slice needs at least 2 frames.
* **Frame order.** By ``TriggerTime`` (ms after the R wave). When any frame of a slice lacks it, or
  when it is the same on every frame (it then says nothing about the order), by ``InstanceNumber``
  (``TemporalPositionIndex`` or frame number in a multi-frame file), with frames assumed evenly spaced
  over one R-R interval (``NominalInterval``, else ``60000 / HeartRate``, else 1000 ms): the subject
  attr ``times_assumed`` is then 1 and a note says why. Two frames of one slice with the same trigger
  time and different pixels are two acquisitions, not one cine: that slice is skipped.
* **Time resampling, annotations, masks**: see :mod:`ofrnn.ingest.common`. The cycle length is ``n``
  times the mean frame interval, ``(t[n-1] - t[0]) * n / (n - 1)``.
* **Intensities.** ``RescaleSlope`` and ``RescaleIntercept`` (per frame where given) are applied;
  values stay float32.
* **Spacing.** ``PixelSpacing`` (row spacing, then column spacing) is kept as ``spacing_mm``: the
  images are not resampled in space.
* **Level.** DICOM does not say whether a slice is apical, mid or basal, so it is ``unknown``.
* **Contours** (``--contours``, the Sunnybrook layout): text files
  ``IM-0001-NNNN-icontour-manual.txt`` (endocardium) and ``...-ocontour-manual.txt`` (epicardium)
  anywhere under the folder, one ``x y`` vertex per line in (column, row) pixel coordinates, for the
  image whose ``InstanceNumber`` is ``NNNN`` (so the DICOM folder must hold one series of single-frame
  files). A polygon is rasterised on pixel centres (:func:`skimage.draw.polygon2mask`); the fills
  become ``lv_cavity_t``, ``myocardium_t`` and ``lv_box`` as :mod:`ofrnn.ingest.common` describes.
* **Privacy.** Nothing that names, dates or locates the patient, study or site is copied: no names,
  IDs, dates, UIDs, institution or device fields, and no input paths (they often hold patient
  names). Subject ids come from the user (``ids`` / ``id_prefix``) or are a 12-hex-digit SHA-256 of
  ``SeriesInstanceUID|position``; ``study_hash`` and ``series_hash`` (SHA-256 prefixes of the UIDs)
  let later stages keep one examination's slices in one fold. Notes and errors name input files and
  header fields, never header values that identify anyone. pydicom warnings are silenced while
  reading because they quote header values.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OfrnnError
from .common import (ASSUMED_CYCLE_MS, DEFAULT_FRAMES, ENDO_BOX_MARGIN_MM, CineSlice, IngestReport, check_frames,
                     short_hash, subject_ids, write_slices)

#: positions along the slice normal closer than this (mm) are one slice
_POSITION_TOL_MM = 0.05
#: direction cosines closer than this are one orientation
_ORIENTATION_TOL = 1e-3
_CONTOUR_RE = re.compile(r"IM-\d+-(\d+)-([io])contour", re.IGNORECASE)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: a DICOM stream without preamble starts with its file meta group (0002) or its first data element,
#: which in an image dataset is in group 0008 (SpecificCharacterSet, ImageType, SOPClassUID, ...)
_FIRST_GROUPS = (0x0002, 0x0008)
#: acquisition physics copied into subject attrs (DICOM keyword -> attr; the first keyword found for
#: an attr wins); nothing about the patient, the site or the device
_PHYSICS = {
    "MagneticFieldStrength": "field_t",
    "RepetitionTime": "tr_ms",
    "EchoTime": "te_ms",
    "EffectiveEchoTime": "te_ms",
    "FlipAngle": "flip_deg",
    "SliceThickness": "slice_thickness_mm",
}


class _NotCine(OfrnnError):
    """Input that is not cine material: skipped with a note, never fatal on its own."""


@dataclass
class _Image:
    """One frame of one DICOM file, as ingestion needs it; the UIDs stay in memory, for grouping.

    ``instance`` is the InstanceNumber of a single-frame file (None in multi-frame files);
    ``order`` is the fallback order key, named by ``order_field``; ``trigger_ms`` is named by
    ``time_field``.
    """

    path: Path
    frame: int | None
    sop_uid: str | None
    series_uid: str
    study_uid: str
    series_number: int | None
    instance: int | None
    order: float | None
    order_field: str
    trigger_ms: float | None
    time_field: str
    orientation: np.ndarray | None
    position: np.ndarray | None
    slice_location: float | None
    spacing_mm: tuple[float, float]
    pixels: np.ndarray
    cycle_ms: float | None
    physics: dict

    @property
    def where(self):
        """The file, and the frame in a multi-frame file, for notes and errors."""
        return f"{self.path} (frame {self.frame + 1})" if self.frame is not None else str(self.path)


def _number(value, path, field, kind=float):
    """A numeric header value, or None when absent or empty."""
    if value is None or value == "":
        return None
    try:
        x = kind(value)
    except (TypeError, ValueError):
        raise OfrnnError("not a number", path=path, field=field) from None
    if not np.isfinite(x):
        raise OfrnnError("not a finite number", path=path, field=field)
    return x


def _vector(value, n, path, field):
    """``n`` finite numbers, or None when absent or empty."""
    if value is None or value == "":
        return None
    try:
        a = np.asarray([float(x) for x in value], dtype=float)
    except (TypeError, ValueError):
        raise OfrnnError("not numbers", path=path, field=field) from None
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise OfrnnError(f"expected {n} finite numbers", path=path, field=field)
    return a


def _functional(ds, frame, keyword):
    """A value for one frame: its per-frame functional groups, else the shared ones, else the top level.

    Each functional group macro (PlanePositionSequence, PixelMeasuresSequence,
    PixelValueTransformationSequence, CardiacSynchronizationSequence, FrameContentSequence, ...) is a
    sequence of one item inside the frame's group item, so the keyword is looked for one level down.
    """
    for seq, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(seq)
        if not groups or index >= len(groups):
            continue
        for macro in groups[index]:
            if macro.VR == "SQ" and macro.value and keyword in macro.value[0]:
                return macro.value[0].get(keyword)
    return ds.get(keyword)


def find_files(folder):
    """Every file under ``folder`` (sorted), hidden files and folders excepted."""
    folder = Path(folder)
    return [p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def _open(path):
    """The dataset of ``path``; :class:`_NotCine` when it is not DICOM, OfrnnError when DICOM but unreadable."""
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    with open(path, "rb") as f:
        head = f.read(132)
    if head[128:132] == b"DICM":
        try:
            return pydicom.dcmread(path)
        except Exception as e:  # truncated or corrupt files fail in many ways inside pydicom
            raise OfrnnError(f"unreadable DICOM ({type(e).__name__})", path=path) from None
    not_dicom = _NotCine("not a DICOM file (no 'DICM' marker, and not a DICOM image dataset)", path=path)
    if len(head) < 8 or int.from_bytes(head[:2], "little") not in _FIRST_GROUPS:
        raise not_dicom
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:
        raise not_dicom from None
    if not (any(k in ds for k in _PIXEL_KEYWORDS) and "Rows" in ds and "Columns" in ds):
        raise not_dicom
    if "TransferSyntaxUID" not in ds.file_meta:
        # a bare dataset has no file meta; pydicom found its encoding while parsing, and such a
        # stream can only hold uncompressed pixels
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _check_image(ds, path):
    """Raise :class:`_NotCine` unless ``ds`` is a greyscale MR image."""
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or "object"
        raise _NotCine(f"a DICOM {kind} without an image", path=path, field="PixelData")
    modality = str(ds.get("Modality", "MR") or "MR")
    if modality != "MR":
        raise _NotCine(f"modality {modality}, not MR", path=path, field="Modality")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise _NotCine(f"a colour image ({samples} samples per pixel), not a greyscale cine frame",
                       path=path, field="SamplesPerPixel")


def _decode(ds, path, n_frames):
    """Stored pixel values as (n_frames, Rows, Columns), through pydicom's decoder plugins."""
    from pydicom.pixels import get_decoder

    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        raw = ds.pixel_array
    except Exception as e:
        if tsyntax is not None and tsyntax.is_compressed:
            try:
                available = get_decoder(tsyntax).is_available
            except NotImplementedError:
                available = False
            if not available:
                raise OfrnnError(f"unsupported compression {tsyntax.name!r}: no installed decoder reads it",
                                 path=path, field="TransferSyntaxUID") from None
            raise OfrnnError(f"cannot decode the {tsyntax.name!r} pixel data ({type(e).__name__}: corrupt?)",
                             path=path, field="PixelData") from None
        raise OfrnnError(f"cannot decode pixel data ({type(e).__name__})", path=path, field="PixelData") from None
    shape = (n_frames, int(ds.Rows), int(ds.Columns))
    if raw.size != np.prod(shape) or raw.shape[-2:] != shape[1:]:
        raise OfrnnError(f"pixel array of shape {raw.shape}, expected {shape} (NumberOfFrames, Rows, Columns)",
                         path=path, field="PixelData")
    return raw.reshape(shape)


def _trigger(ds, frame, multi, path):
    """Trigger delay (ms) and the field it came from; enhanced MR keeps it in its functional groups."""
    keywords = ("NominalCardiacTriggerDelayTime", "TriggerTime") if multi else ("TriggerTime",
                                                                                "NominalCardiacTriggerDelayTime")
    for keyword in keywords:
        value = _number(_functional(ds, frame, keyword), path, keyword)
        if value is not None:
            return value, keyword
    return None, keywords[0]


def _order(ds, frame, multi, path):
    """Fallback order key and its field: InstanceNumber, or TemporalPositionIndex / frame number."""
    if not multi:
        return _number(ds.get("InstanceNumber"), path, "InstanceNumber", int), "InstanceNumber"
    index = _number(_functional(ds, frame, "TemporalPositionIndex"), path, "TemporalPositionIndex", int)
    return (index, "TemporalPositionIndex") if index is not None else (frame + 1, "frame number")


def _cycle(ds, path):
    """The R-R interval (ms) the header states, or None."""
    nominal = _number(_functional(ds, 0, "NominalInterval"), path, "NominalInterval")
    if nominal is None:
        nominal = _number(_functional(ds, 0, "RRIntervalTimeNominal"), path, "RRIntervalTimeNominal")
    if nominal and nominal > 0:
        return nominal
    heart_rate = _number(_functional(ds, 0, "HeartRate"), path, "HeartRate")
    return 60000.0 / heart_rate if heart_rate and heart_rate > 0 else None


def read_frames(path):
    """Read one DICOM file into its frames (one for a single-frame image, all of an enhanced one).

    Returns
    -------
    list of _Image
        In stored frame order, pixels rescaled to float32 (H, W).

    Raises
    ------
    _NotCine (an OfrnnError)
        The file is not a greyscale MR image: skip it.
    OfrnnError
        An MR image that cannot be read right; names the file, the field and the cause.
    """
    # pydicom's value warnings quote header values (names included) whenever an element is first
    # converted, so every access stays inside this block: none may reach the log.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _read_frames(Path(path))


def _read_frames(path):
    ds = _open(path)
    _check_image(ds, path)
    n = _number(ds.get("NumberOfFrames"), path, "NumberOfFrames", int) or 1
    # frames of one file have no InstanceNumber of their own; a one-frame file is named and ordered
    # as a single image, whatever its functional groups (GE writes an empty per-frame item)
    multi = n > 1
    raw = _decode(ds, path, n)
    for keyword in ("SeriesInstanceUID", "StudyInstanceUID"):
        if not ds.get(keyword):
            raise OfrnnError("missing", path=path, field=keyword)
    physics = {}
    for keyword, name in _PHYSICS.items():
        value = _number(_functional(ds, 0, keyword), path, keyword)
        if value is not None:
            physics.setdefault(name, value)
    common = dict(path=path, sop_uid=str(ds.get("SOPInstanceUID") or "") or None,
                  series_uid=str(ds.SeriesInstanceUID), study_uid=str(ds.StudyInstanceUID),
                  series_number=_number(ds.get("SeriesNumber"), path, "SeriesNumber", int),
                  instance=None if multi else _number(ds.get("InstanceNumber"), path, "InstanceNumber", int),
                  slice_location=_number(ds.get("SliceLocation"), path, "SliceLocation"),
                  cycle_ms=_cycle(ds, path), physics=physics)
    return [_frame(ds, f, multi, raw[f], common) for f in range(n)]


def _frame(ds, f, multi, raw, common):
    """One frame's geometry, timing and rescaled pixels."""
    path = common["path"]
    where = f"{path} (frame {f + 1})" if multi else path
    slope = _number(_functional(ds, f, "RescaleSlope"), where, "RescaleSlope")
    intercept = _number(_functional(ds, f, "RescaleIntercept"), where, "RescaleIntercept")
    pixels = (raw.astype(np.float64) * (1.0 if slope is None else slope) + (intercept or 0.0)).astype(np.float32)
    if not np.all(np.isfinite(pixels)):
        raise OfrnnError("contains NaN or inf", path=where, field="PixelData")
    spacing = _vector(_functional(ds, f, "PixelSpacing"), 2, where, "PixelSpacing")
    if spacing is None or np.any(spacing <= 0):
        raise OfrnnError("missing or not positive", path=where, field="PixelSpacing")
    trigger, time_field = _trigger(ds, f, multi, where)
    order, order_field = _order(ds, f, multi, where)
    orientation = _vector(_functional(ds, f, "ImageOrientationPatient"), 6, where, "ImageOrientationPatient")
    position = _vector(_functional(ds, f, "ImagePositionPatient"), 3, where, "ImagePositionPatient")
    return _Image(frame=f if multi else None, order=order, order_field=order_field, trigger_ms=trigger,
                  time_field=time_field, orientation=orientation, position=position,
                  spacing_mm=(float(spacing[0]), float(spacing[1])), pixels=pixels, **common)


def _drop_duplicates(files, report):
    """Keep the first file of each SOPInstanceUID; a later one with the same pixels is a copy.

    ``files`` is ``[(path, frames)]``; returns the frames kept. Of a set of copies the file with the
    shortest name is kept (``X.dcm`` rather than ``X(1).dcm``). A same-UID file with other pixels is
    an error: two different images cannot be one instance.
    """
    first, kept = {}, []
    for path, frames in sorted(files, key=lambda f: (len(f[0].name), f[0])):
        uid = frames[0].sop_uid
        if uid is None or uid not in first:
            if uid is not None:
                first[uid] = (path, frames)
            kept.extend(frames)
            continue
        other_path, other = first[uid]
        same = len(other) == len(frames) and all(
            a.pixels.shape == b.pixels.shape and np.array_equal(a.pixels, b.pixels) for a, b in zip(other, frames))
        if not same:
            raise OfrnnError(f"the same as in {other_path.name}, but the pixels differ: two images cannot be one "
                             f"instance", path=path, field="SOPInstanceUID")
        report.drop_duplicate(f"{path}: a copy of {other_path.name} (same SOPInstanceUID and pixels); dropped")
    return kept


def _same_geometry(a, b):
    """Whether two images share matrix, pixel spacing and orientation (both may lack one)."""
    if a.pixels.shape != b.pixels.shape or not np.allclose(a.spacing_mm, b.spacing_mm, rtol=1e-4):
        return False
    if a.orientation is None or b.orientation is None:
        return a.orientation is None and b.orientation is None
    return np.max(np.abs(a.orientation - b.orientation)) <= _ORIENTATION_TOL


def _stacks(members):
    """Split one series' images into stacks of one geometry: orientation, pixel spacing, matrix."""
    stacks = []
    for im in members:
        stack = next((st for st in stacks if _same_geometry(im, st[0])), None)
        if stack is None:
            stacks.append([im])
        else:
            stack.append(im)
    return stacks


def _positions(stack):
    """Position (mm) of each image of one stack along its slice normal."""
    ref = stack[0]
    if all(im.orientation is not None and im.position is not None for im in stack):
        normal = np.cross(ref.orientation[:3], ref.orientation[3:])
        if np.linalg.norm(normal) < 0.5:
            raise _NotCine("row and column directions are parallel", path=ref.where, field="ImageOrientationPatient")
        return [float(im.position @ normal) for im in stack]
    if all(im.slice_location is not None for im in stack):
        return [im.slice_location for im in stack]
    bad = next(im for im in stack if im.slice_location is None)
    raise _NotCine("no slice position: needs ImagePositionPatient and ImageOrientationPatient, or SliceLocation",
                   path=bad.where, field="ImagePositionPatient")


def _frame_order(images, report):
    """Sort one slice's images in time; return (images, times_ms, cycle_ms, times_assumed).

    Raises :class:`_NotCine` when the frames cannot be one cine (two frames at one time, no order).
    """
    triggers = [im.trigger_ms for im in images]
    if all(t is not None for t in triggers) and len(set(triggers)) > 1:
        images = sorted(images, key=lambda im: im.trigger_ms)
        times = np.array([im.trigger_ms for im in images])
        same = np.flatnonzero(np.diff(times) == 0)
        if same.size:
            a, b = images[same[0]], images[same[0] + 1]
            raise _NotCine(f"two frames at this slice position share {a.time_field} {a.trigger_ms:g} ms with other "
                           f"pixels (the other: {a.where}); two acquisitions in one series, not one cine",
                           path=b.where, field=a.time_field)
        n = len(images)
        return images, times, (times[-1] - times[0]) * n / (n - 1), False
    first = images[0]
    if not all(im.order is not None for im in images):
        bad = next(im for im in images if im.order is None)
        raise _NotCine(f"cannot order frames: no usable {first.time_field} and no {bad.order_field}",
                       path=bad.where, field=first.time_field)
    images = sorted(images, key=lambda im: im.order)
    order = np.array([im.order for im in images], dtype=float)
    same = np.flatnonzero(np.diff(order) == 0)
    if same.size:
        a, b = images[same[0]], images[same[0] + 1]
        raise _NotCine(f"the same {a.order_field} as {a.where} at this slice position, and no usable "
                       f"{a.time_field} to tell them apart", path=b.where, field=a.order_field)
    n = len(images)
    why = (f"no {first.time_field}" if any(t is None for t in triggers)
           else f"{first.time_field} is {triggers[0]:g} ms on all {n} frames")
    cycle = first.cycle_ms or ASSUMED_CYCLE_MS
    report.notes.append(f"{first.where}: frames ordered by {first.order_field} ({why}); times assumed evenly "
                        f"spaced over {cycle:g} ms")
    return images, np.arange(n) * cycle / n, cycle, True


def _make_slice(key, group, position, report):
    """One :class:`CineSlice` from the images at one position of one stack (:class:`_NotCine` if not a cine)."""
    if len(group) < 2:
        raise _NotCine("only 1 frame at this slice position; a cine needs at least 2", path=group[0].where,
                       field="ImagePositionPatient")
    group, times, cycle, assumed = _frame_order(group, report)
    first = group[0]
    return CineSlice(
        key=key, series_number=first.series_number, study_hash=short_hash(first.study_uid),
        series_hash=short_hash(first.series_uid), series_uid=first.series_uid, position_mm=position,
        frames=np.stack([im.pixels for im in group]), times_ms=times, cycle_ms=float(cycle),
        times_assumed=assumed, spacing_mm=first.spacing_mm, instances=[im.instance for im in group],
        paths=[im.path for im in group], attrs=dict(first.physics))


def _series_slices(uid, members, report):
    """The cine slices of one series; every stack or position that is not a cine goes to ``report``."""
    stacks = _stacks(members)
    slices, rejected = [], []
    for si, stack in enumerate(stacks):
        try:
            pos = _positions(stack)
        except _NotCine as e:
            rejected.append((e, len(stack)))
            continue
        groups, last = [], None  # (position of the first member, members)
        for i in np.argsort(pos, kind="stable"):
            if last is None or pos[i] - last > _POSITION_TOL_MM:
                groups.append((pos[i], []))
            groups[-1][1].append(stack[i])
            last = pos[i]
        for position, group in groups:
            # the first stack keeps the historical id (series and position); others add their index
            key = short_hash(f"{uid}|{position:.2f}" if si == 0 else f"{uid}|stack{si}|{position:.2f}")
            try:
                slices.append(_make_slice(key, group, position, report))
            except _NotCine as e:
                rejected.append((e, len(group)))
    if not slices:
        series = members[0].series_number
        e, _ = rejected[0]
        report.skip_part(e, len(members), what=f"series {series if series is not None else '(unnumbered)'}")
    else:
        for e, n in rejected:
            report.skip_part(e, n)
    return slices


def read_cine_slices(folder, *, progress=None):
    """Read every DICOM file under ``folder`` and group the cine images into :class:`CineSlice` records.

    Slices are ordered by series (``SeriesNumber``), then by their first ``InstanceNumber``
    (acquisition order, as a viewer lists them), then by position. ``progress``: show a tqdm bar
    (None: only on a terminal).

    Returns
    -------
    slices : list of CineSlice
    report : IngestReport
        Files, series and slices skipped, duplicates dropped, times assumed (one note line each).

    Raises
    ------
    OfrnnError
        An MR image that cannot be read right, or no cine left (naming the cause).
    """
    from tqdm import tqdm

    folder = Path(folder)
    files = find_files(folder)
    if not files:
        raise OfrnnError("no files", path=folder)
    report = IngestReport()
    read = []
    with tqdm(files, desc="reading DICOM", unit="file", disable=None if progress is None else not progress,
              leave=False) as bar:
        for p in bar:
            try:
                read.append((p, read_frames(p)))
            except _NotCine as e:
                report.skip_file(e)
    images = _drop_duplicates(read, report)
    series = {}
    for im in images:
        series.setdefault(im.series_uid, []).append(im)
    slices = []
    for uid, members in series.items():
        slices.extend(_series_slices(uid, members, report))
    if not slices:
        raise report.nothing_left(folder, "cine")
    slices.sort(key=lambda s: (s.series_number if s.series_number is not None else np.inf, s.series_hash,
                               min((i for i in s.instances if i is not None), default=np.inf), s.position_mm))
    return slices, report


def find_contours(folder, slices):
    """Link Sunnybrook-style contour files to frames: ``{slice index: {frame index: {"i"|"o": path}}}``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OfrnnError("not a folder", path=folder, field="--contours")
    if len({s.series_uid for s in slices}) != 1:
        raise OfrnnError("contours name images by InstanceNumber, which identifies an image only within one "
                         "series; give a DICOM folder holding one series", path=folder, field="--contours")
    where = {}
    for si, s in enumerate(slices):
        for fi, inst in enumerate(s.instances):
            if inst is None:
                raise OfrnnError("contours name images by InstanceNumber, which a frame of a multi-frame file "
                                 "does not have", path=s.paths[fi], field="--contours")
            if inst in where:
                raise OfrnnError(f"InstanceNumber {inst} is used twice in the series", path=s.paths[fi],
                                 field="InstanceNumber")
            where[inst] = (si, fi)
    found = {}
    for p in sorted(folder.rglob("*.txt")):
        m = _CONTOUR_RE.search(p.name)
        if not m:
            continue
        inst, kind = int(m.group(1)), m.group(2).lower()
        if inst not in where:
            raise OfrnnError(f"image {inst} (InstanceNumber) is not among the DICOM images", path=p,
                             field="InstanceNumber")
        si, fi = where[inst]
        slot = found.setdefault(si, {}).setdefault(fi, {})
        if kind in slot:
            raise OfrnnError(f"a second {kind}-contour for image {inst} (first: {slot[kind].name})", path=p)
        slot[kind] = p
    if not found:
        raise OfrnnError("no contour files named IM-<series>-<image>-{i,o}contour*.txt", path=folder,
                         field="--contours")
    return found


def read_contour(path, shape):
    """Rasterise one text polygon (``x y`` = column, row per line) into a bool mask of ``shape``."""
    from skimage.draw import polygon2mask

    H, W = shape
    points = []
    for lineno, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            x, y = (float(v) for v in parts)
        except ValueError:
            raise OfrnnError(f"expected 'x y', got {line.strip()[:40]!r}", path=path, field=f"line {lineno}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise OfrnnError("NaN or inf coordinate", path=path, field=f"line {lineno}")
        # a vertex may sit on the outer edge of the border pixels, half a pixel beyond their centres
        if not (-1 <= x <= W and -1 <= y <= H):
            raise OfrnnError(f"point ({x:g}, {y:g}) outside the {W}x{H} image", path=path, field=f"line {lineno}")
        points.append((y, x))
    if len(points) < 3:
        raise OfrnnError(f"{len(points)} point(s); a polygon needs at least 3", path=path)
    mask = polygon2mask(shape, np.asarray(points))
    if not mask.any():
        raise OfrnnError("the polygon encloses no pixel centre", path=path)
    return mask


def contour_masks(files, shape):
    """Rasterise one slice's contour files ``{frame: {"i"|"o": path}}`` into ``{frame: (endo, epi)}``."""
    return {fi: (read_contour(f["i"], shape) if "i" in f else None, read_contour(f["o"], shape) if "o" in f else None)
            for fi, f in files.items()}


def ingest_dicom(folder, out, *, frames=DEFAULT_FRAMES, masks=None, contours=None, ids=None, id_prefix=None,
                 progress=None):
    """Read a cine DICOM folder (and optional contours and masks) and write a ``dicom`` cohort to ``out``.

    Parameters
    ----------
    folder : path
        Folder searched recursively for the DICOM images (an exam or a CD; see the module docstring
        for what is skipped).
    out : path
        Cohort file to write (atomically: on any error or interruption the target is left as it was).
    frames : int
        Frames per cardiac cycle after resampling.
    masks, contours : path or None
        Folders of infarct masks and of Sunnybrook-style contour files (see the module docstring).
    ids, id_prefix : list of str, str
        Subject ids, one per slice in listing order, or a prefix numbered 01, 02, ...; default:
        hashes of series and position.
    progress : bool or None
        Progress bar while reading (None: only on a terminal).

    Returns
    -------
    rows : list of dict
        One summary row per subject written (id, series, position, frames, matrix, annotated frames).
    report : IngestReport
        What was skipped, dropped or assumed (notes name input files: print them, never store them).

    Raises
    ------
    OfrnnError
        Bad input, naming the file, the field and the cause.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OfrnnError("not a folder", path=folder)
    check_frames(frames)
    slices, report = read_cine_slices(folder, progress=progress)
    sids = subject_ids(slices, ids, id_prefix)  # a wrong --ids is reported before the contours are searched
    contour_files = find_contours(contours, slices) if contours else {}

    def lv_masks(i):
        return contour_masks(contour_files[i], slices[i].frames.shape[1:]) if i in contour_files else None

    rows = write_slices(out, slices, ids=sids, masks=masks, source="dicom", frames=frames, lv_masks=lv_masks,
                        params=dict(contours=bool(contours), endo_box_margin_mm=ENDO_BOX_MARGIN_MM))
    return rows, report

__all__ = ["find_files", "read_frames", "read_cine_slices", "find_contours", "read_contour", "contour_masks",
           "ingest_dicom"]
