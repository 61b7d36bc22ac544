"""Ingest short-axis cine DICOM, LV contours and infarct masks into a cohort (``ofrnn ingest dicom``).

One slice position of one series is one subject. The steps, and the choices behind them:

* **Files.** Every file under the folder (recursively, hidden ones and ``DICOMDIR`` excepted) whose
  name ends in ``.dcm``, ``.dicom``, ``.ima`` or has no alphabetic suffix (bare scanner names and
  UID-like names such as ``1.2.840.113619.2.5.78``) must be a single-frame DICOM image with pixel
  data; other files (``.txt``, ``.csv``, viewers on a CD) are skipped and counted.
* **Grouping.** Images are grouped by ``SeriesInstanceUID``, then by slice position: the
  ``ImagePositionPatient`` projected on the slice normal (the cross product of the two
  ``ImageOrientationPatient`` direction cosines), or ``SliceLocation`` when the geometry tags are
  missing. Positions within 0.05 mm are one slice.
* **Frame order.** By ``TriggerTime`` (ms after the R wave); when any frame of a slice lacks it, by
  ``InstanceNumber``, with frames assumed evenly spaced over one R-R interval (``NominalInterval``,
  else ``60000 / HeartRate``, else 1000 ms; the subject attr ``times_assumed`` is then 1).
* **Time resampling** to ``frames`` (25 by default, as in the paper) by *periodic linear
  interpolation over the cardiac cycle*. A cine's frames tile one R-R interval, so the cycle length
  is taken as ``n`` times the mean frame interval, ``(t[n-1] - t[0]) * n / (n - 1)``, and the last
  frame is followed, one mean interval later, by the first. Output frame ``k`` lies at
  ``t[0] + k * cycle / frames``: frame 0 is the original first frame unchanged (end-diastole, at the
  trigger) and every other frame is a linear blend of the two original frames around its time.
  ``frame_times_ms`` stores those times; ``cycle_ms`` and ``frames_original`` are subject attrs.
* **Intensities.** ``RescaleSlope`` and ``RescaleIntercept`` are applied; values stay float32.
* **Spacing.** ``PixelSpacing`` (row spacing, then column spacing) is kept as ``spacing_mm``: the
  images are not resampled in space.
* **Level.** DICOM does not say whether a slice is apical, mid or basal, so it is ``unknown``.
* **Contours** (``--contours``, the Sunnybrook layout): text files
  ``IM-0001-NNNN-icontour-manual.txt`` (endocardium) and ``...-ocontour-manual.txt`` (epicardium)
  anywhere under the folder, one ``x y`` vertex per line in (column, row) pixel coordinates, for the
  image whose ``InstanceNumber`` is ``NNNN`` (so the DICOM folder must hold one series). A polygon is
  rasterised on pixel centres (:func:`skimage.draw.polygon2mask`). The i-contour fill is
  ``lv_cavity_t``; the o-contour fill minus the i-contour fill is ``myocardium_t`` where a frame has
  both; frame 0's myocardium, when annotated, is also ``myocardium``. ``lv_box`` is tight
  (half-open) around the o-contour fill; a frame with only an i-contour gets the i-contour box
  widened by :data:`ENDO_BOX_MARGIN_MM` on every side (clipped to the image), an approximation of
  the epicardium. Frames without contours keep rows of -1 and ``annotated`` flags of 0.
  After resampling, an annotation lives on the output frame nearest to its original trigger time
  (at most half an output interval, ~15 ms at 25 frames per 750 ms, away); if two annotated
  frames fall on one output frame, the nearer one wins.
* **Infarct masks** (``--masks``): ``<subject id>.png`` or ``<subject id>.npy`` in the folder, of the
  slice's matrix size, in frame-0 (end-diastole) coordinates; nonzero is infarct. Colour PNGs count a
  pixel as infarct when any colour channel is nonzero. NPY files are read without pickle support.
* **Privacy.** Nothing that names, dates or locates the patient, study or site is copied: no names,
  IDs, dates, UIDs, institution or device fields, and no input paths (they often hold patient
  names). Subject ids come from the user (``ids`` / ``id_prefix``) or are a 12-hex-digit SHA-256 of
  ``SeriesInstanceUID|position``; ``study_hash`` and ``series_hash`` (SHA-256 prefixes of the UIDs)
  let later stages keep one examination's slices in one fold. pydicom warnings are silenced while
  reading because they quote header values.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import OfrnnError
from .store import UNKNOWN_LEVEL, CohortWriter, Subject

#: frames per cardiac cycle after resampling (the paper's 25)
DEFAULT_FRAMES = 25
#: margin added around an endocardial contour to stand in for the epicardium when a frame has no
#: o-contour: about one end-diastolic LV wall thickness (normal 6-11 mm), generous at end-systole
#: in thinned infarcted walls and tight in thickened normal ones
ENDO_BOX_MARGIN_MM = 10.0
#: positions along the slice normal closer than this (mm) are one slice
_POSITION_TOL_MM = 0.05
_DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
_CONTOUR_RE = re.compile(r"IM-\d+-(\d+)-([io])contour", re.IGNORECASE)
#: acquisition physics copied into subject attrs (DICOM keyword -> attr); nothing about the patient,
#: the site or the device
_PHYSICS = {
    "MagneticFieldStrength": "field_t",
    "RepetitionTime": "tr_ms",
    "EchoTime": "te_ms",
    "FlipAngle": "flip_deg",
    "SliceThickness": "slice_thickness_mm",
}


@dataclass
class _Image:
    """What ingestion needs from one DICOM file; the UIDs stay in memory, for grouping and hashing."""

    path: Path
    series_uid: str
    study_uid: str
    series_number: int | None
    instance: int | None
    trigger_ms: float | None
    orientation: np.ndarray | None
    position: np.ndarray | None
    slice_location: float | None
    spacing_mm: tuple[float, float]
    pixels: np.ndarray
    cycle_ms: float | None
    physics: dict


@dataclass
class CineSlice:
    """One slice position of one series: its frames in temporal order and their geometry.

    ``key`` is the default subject id (hash of series UID and position); ``instances`` and
    ``paths`` follow the frame order; ``times_ms`` are trigger times, or evenly spaced times over
    ``cycle_ms`` when ``times_assumed``.
    """

    key: str
    series_number: int | None
    study_hash: str
    series_hash: str
    series_uid: str
    position_mm: float
    frames: np.ndarray
    times_ms: np.ndarray
    cycle_ms: float
    times_assumed: bool
    spacing_mm: tuple[float, float]
    instances: list
    paths: list
    physics: dict = field(default_factory=dict)


def _hash(text, n=12):
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def find_dicom_files(folder):
    """DICOM candidates under ``folder`` (sorted) and the number of other files skipped.

    A candidate ends in ``.dcm``, ``.dicom`` or ``.ima``, or has no alphabetic suffix.
    """
    files, skipped = [], 0
    for p in sorted(Path(folder).rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts) or p.name.upper() == "DICOMDIR":
            continue
        suffix = p.suffix.lower()
        if suffix in _DICOM_SUFFIXES or not re.search(r"[a-z]", suffix):
            files.append(p)
        else:
            skipped += 1
    return files, skipped


def _number(ds, keyword, path, kind=float):
    """A numeric header value, or None when absent or empty."""
    v = ds.get(keyword)
    if v is None or v == "":
        return None
    try:
        x = kind(v)
    except (TypeError, ValueError):
        raise OfrnnError(f"not a number ({v!r})", path=path, field=keyword) from None
    if not np.isfinite(x):
        raise OfrnnError("not a finite number", path=path, field=keyword)
    return x


def _vector(ds, keyword, n, path):
    v = ds.get(keyword)
    if v is None or v == "":
        return None
    try:
        a = np.asarray([float(x) for x in v], dtype=float)
    except (TypeError, ValueError):
        raise OfrnnError("not numbers", path=path, field=keyword) from None
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise OfrnnError(f"expected {n} finite numbers", path=path, field=keyword)
    return a


def read_image(path):
    """Read one single-frame DICOM image; raise :class:`OfrnnError` naming the file and field at fault."""
    # pydicom's value warnings quote header values (names included) whenever an element is first
    # converted, so every access stays inside this block: none may reach the log.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _read_image(Path(path))


def _read_image(path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise OfrnnError("not a DICOM file (no 'DICM' preamble)", path=path) from None
    except Exception as e:  # truncated or corrupt files fail in many ways inside pydicom
        raise OfrnnError(f"unreadable DICOM ({type(e).__name__})", path=path) from None
    modality = str(ds.get("Modality", "MR") or "MR")
    if modality != "MR":
        raise OfrnnError(f"modality {modality}, expected MR", path=path, field="Modality")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise OfrnnError("no pixel data", path=path, field="PixelData")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise OfrnnError("multi-frame (enhanced) images are not supported; export single-frame images",
                         path=path, field="NumberOfFrames")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise OfrnnError("colour images are not supported", path=path, field="SamplesPerPixel")
    tsyntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    try:
        raw = ds.pixel_array
    except Exception as e:
        if tsyntax is not None and tsyntax.is_compressed:
            raise OfrnnError(f"unsupported compression {tsyntax.name!r}: no installed decoder reads it "
                             f"(see pydicom's pixel data handlers)", path=path, field="TransferSyntaxUID") from None
        raise OfrnnError(f"cannot decode pixel data ({type(e).__name__})", path=path, field="PixelData") from None
    if raw.ndim != 2:
        raise OfrnnError(f"pixel array of shape {raw.shape}, expected (Rows, Columns)", path=path, field="PixelData")
    slope = _number(ds, "RescaleSlope", path) or 1.0
    intercept = _number(ds, "RescaleIntercept", path) or 0.0
    pixels = (raw.astype(np.float64) * slope + intercept).astype(np.float32)
    if not np.all(np.isfinite(pixels)):
        raise OfrnnError("contains NaN or inf", path=path, field="PixelData")
    spacing = _vector(ds, "PixelSpacing", 2, path)
    if spacing is None or np.any(spacing <= 0):
        raise OfrnnError("missing or not positive", path=path, field="PixelSpacing")
    for keyword in ("SeriesInstanceUID", "StudyInstanceUID"):
        if not ds.get(keyword):
            raise OfrnnError("missing", path=path, field=keyword)
    nominal = _number(ds, "NominalInterval", path)
    heart_rate = _number(ds, "HeartRate", path)
    cycle = nominal if nominal and nominal > 0 else (60000.0 / heart_rate if heart_rate and heart_rate > 0 else None)
    physics = {}
    for keyword, name in _PHYSICS.items():
        value = _number(ds, keyword, path)
        if value is not None:
            physics[name] = value
    series_number = _number(ds, "SeriesNumber", path, int)
    return _Image(
        path=path, series_uid=str(ds.SeriesInstanceUID), study_uid=str(ds.StudyInstanceUID),
        series_number=series_number, instance=_number(ds, "InstanceNumber", path, int),
        trigger_ms=_number(ds, "TriggerTime", path),
        orientation=_vector(ds, "ImageOrientationPatient", 6, path),
        position=_vector(ds, "ImagePositionPatient", 3, path),
        slice_location=_number(ds, "SliceLocation", path),
        spacing_mm=(float(spacing[0]), float(spacing[1])), pixels=pixels, cycle_ms=cycle, physics=physics)


def _positions(images):
    """Position (mm) of each image of one series along the series' slice normal."""
    if all(im.orientation is not None and im.position is not None for im in images):
        ref = images[0].orientation
        normal = np.cross(ref[:3], ref[3:])
        if np.linalg.norm(normal) < 0.5:
            raise OfrnnError("row and column directions are parallel", path=images[0].path,
                             field="ImageOrientationPatient")
        for im in images:
            if np.max(np.abs(im.orientation - ref)) > 1e-3:
                raise OfrnnError(f"mixed series: orientation differs from {images[0].path.name} of the same series",
                                 path=im.path, field="ImageOrientationPatient")
        return [float(im.position @ normal) for im in images]
    if all(im.slice_location is not None for im in images):
        return [im.slice_location for im in images]
    bad = next(im for im in images if im.slice_location is None)
    raise OfrnnError("no slice position: needs ImagePositionPatient and ImageOrientationPatient, or SliceLocation",
                     path=bad.path, field="ImagePositionPatient")


def _frame_order(images):
    """Sort one slice's images in time; return (images, times_ms, cycle_ms, times_assumed)."""
    if all(im.trigger_ms is not None for im in images):
        images = sorted(images, key=lambda im: im.trigger_ms)
        times = np.array([im.trigger_ms for im in images])
        keyword = "TriggerTime"
    elif all(im.instance is not None for im in images):
        images = sorted(images, key=lambda im: im.instance)
        times = np.array([im.instance for im in images], dtype=float)
        keyword = "InstanceNumber"
    else:
        bad = next(im for im in images if im.instance is None)
        raise OfrnnError("cannot order frames: no TriggerTime or InstanceNumber", path=bad.path, field="TriggerTime")
    same = np.flatnonzero(np.diff(times) == 0)
    if same.size:
        a, b = images[same[0]], images[same[0] + 1]
        raise OfrnnError(f"mixed series: same slice position and {keyword} as {a.path.name}",
                         path=b.path, field=keyword)
    n = len(images)
    if keyword == "TriggerTime":
        return images, times, (times[-1] - times[0]) * n / (n - 1), False
    cycle = images[0].cycle_ms or 1000.0
    return images, np.arange(n) * cycle / n, cycle, True


def read_cine_slices(folder, *, progress=None):
    """Read every DICOM image under ``folder`` and group it into :class:`CineSlice` records.

    Slices are ordered by series (``SeriesNumber``), then by their first ``InstanceNumber``
    (acquisition order, as a viewer lists them), then by position. ``progress``: show a tqdm bar
    (None: only on a terminal). Returns the slices and the number of files skipped by name.
    """
    from tqdm import tqdm

    folder = Path(folder)
    files, skipped = find_dicom_files(folder)
    if not files:
        raise OfrnnError("no DICOM files (.dcm, .dicom, .ima or without extension)", path=folder)
    images = []
    # the context closes the bar (ending its line) before an error message is printed below it
    with tqdm(files, desc="reading DICOM", unit="file", disable=None if progress is None else not progress) as bar:
        for p in bar:
            images.append(read_image(p))
    series = {}
    for im in images:
        series.setdefault(im.series_uid, []).append(im)
    slices = []
    for uid, members in series.items():
        for im in members:
            if not np.allclose(im.spacing_mm, members[0].spacing_mm, rtol=1e-4):
                raise OfrnnError(f"mixed series: pixel spacing differs from {members[0].path.name} of the same series",
                                 path=im.path, field="PixelSpacing")
        pos = _positions(members)
        groups, last = [], None  # (position of the first member, members)
        for i in np.argsort(pos, kind="stable"):
            if last is None or pos[i] - last > _POSITION_TOL_MM:
                groups.append((pos[i], []))
            groups[-1][1].append(members[i])
            last = pos[i]
        slices.extend(_make_slice(uid, group, position) for position, group in groups)
    slices.sort(key=lambda s: (s.series_number if s.series_number is not None else np.inf, s.series_hash,
                               min((i for i in s.instances if i is not None), default=np.inf), s.position_mm))
    return slices, skipped


def _make_slice(uid, group, position):
    if len(group) < 2:
        raise OfrnnError("only 1 frame at this slice position; a cine needs at least 2",
                         path=group[0].path, field="ImagePositionPatient")
    shapes = Counter(im.pixels.shape for im in group)
    if len(shapes) > 1:
        (H, W), n = shapes.most_common(1)[0]
        odd = next(im for im in group if im.pixels.shape != (H, W))
        raise OfrnnError(f"inconsistent sizes: {odd.pixels.shape[0]}x{odd.pixels.shape[1]} here, {H}x{W} in the "
                         f"other {n} image(s) at the same slice position", path=odd.path, field="Rows/Columns")
    group, times, cycle, assumed = _frame_order(group)
    first = group[0]
    return CineSlice(
        key=_hash(f"{uid}|{position:.2f}"), series_number=first.series_number, study_hash=_hash(first.study_uid),
        series_hash=_hash(uid), series_uid=uid, position_mm=position,
        frames=np.stack([im.pixels for im in group]), times_ms=times, cycle_ms=float(cycle),
        times_assumed=assumed, spacing_mm=first.spacing_mm, instances=[im.instance for im in group],
        paths=[im.path for im in group], physics=dict(first.physics))


def resample_cycle(frames, times_ms, cycle_ms, n_out):
    """Resample a cine periodically in time (see the module docstring).

    Parameters
    ----------
    frames : ndarray (n, H, W)
        Frames in temporal order.
    times_ms : ndarray (n,)
        Their increasing times; ``times_ms[-1] < times_ms[0] + cycle_ms``.
    cycle_ms : float
        Length of the cardiac cycle the frames tile.
    n_out : int
        Output frames.

    Returns
    -------
    frames : ndarray (n_out, H, W) float32
    times_ms : ndarray (n_out,)
        ``times_ms[0] + k * cycle_ms / n_out``.
    """
    frames = np.asarray(frames, dtype=np.float32)
    n = len(frames)
    t = np.asarray(times_ms, dtype=float) - times_ms[0]
    new_t = np.arange(n_out) * (cycle_ms / n_out)
    ext = np.append(t, cycle_ms)  # the first frame again, one cycle later
    j = np.searchsorted(ext, new_t, side="right") - 1
    w = ((new_t - ext[j]) / (ext[j + 1] - ext[j])).astype(np.float32)[:, None, None]
    out = (1 - w) * frames[j] + w * frames[(j + 1) % n]
    return out.astype(np.float32), new_t + times_ms[0]


def nearest_frame(time_ms, t0_ms, cycle_ms, n_out):
    """Index of the resampled frame nearest (periodically) to ``time_ms`` and its distance in ms."""
    step = cycle_ms / n_out
    pos = (time_ms - t0_ms) / step
    k = int(np.floor(pos + 0.5))
    return k % n_out, abs(pos - k) * step


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


def find_masks(folder, ids):
    """``{subject id: mask path}`` for the ``<id>.png`` / ``<id>.npy`` files in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OfrnnError("not a folder", path=folder, field="--masks")
    found = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".png", ".npy") or p.name.startswith("."):
            continue
        if p.stem not in ids:
            listed = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise OfrnnError(f"no subject {p.stem!r} (subjects: {listed})", path=p)
        if p.stem in found:
            raise OfrnnError(f"a second mask for subject {p.stem!r} (first: {found[p.stem].name})", path=p)
        found[p.stem] = p
    if not found:
        raise OfrnnError("no <subject id>.png or .npy masks", path=folder, field="--masks")
    return found


def read_mask(path, shape):
    """Read an infarct mask (PNG or NPY, nonzero = infarct) as uint8 0/1 of ``shape``."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise OfrnnError(f"not a readable .npy array ({type(e).__name__})", path=path) from None
    else:
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise OfrnnError("not a readable PNG", path=path)
        if arr.ndim == 3:
            arr = arr[..., :3].max(axis=2)  # drop alpha; any nonzero colour channel marks infarct
    if arr.dtype.kind not in "biuf":
        raise OfrnnError(f"dtype {arr.dtype}, expected numbers", path=path, field="dtype")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise OfrnnError("contains NaN or inf", path=path)
    if arr.shape != tuple(shape):
        raise OfrnnError(f"shape {arr.shape}, expected {tuple(shape)} (the slice's Rows x Columns)",
                         path=path, field="shape")
    return (arr != 0).astype(np.uint8)


def _box(mask, margin_px=0):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    H, W = mask.shape
    return [max(rows[0] - margin_px, 0), max(cols[0] - margin_px, 0),
            min(rows[-1] + 1 + margin_px, H), min(cols[-1] + 1 + margin_px, W)]


def slice_to_subject(sl, sid, *, frames=DEFAULT_FRAMES, contours=None, infarct=None):
    """Resample one :class:`CineSlice` and attach its annotations as a :class:`~ofrnn.store.Subject`.

    ``contours``: ``{original frame index: {"i"|"o": path}}``; ``infarct``: a mask path or None.
    """
    cine, times = resample_cycle(sl.frames, sl.times_ms, sl.cycle_ms, frames)
    T, H, W = cine.shape
    attrs = dict(sl.physics, frames_original=len(sl.frames), cycle_ms=sl.cycle_ms, slice_position_mm=sl.position_mm,
                 times_assumed=int(sl.times_assumed), study_hash=sl.study_hash, series_hash=sl.series_hash)
    if sl.series_number is not None:
        attrs["series_number"] = sl.series_number
    subject = Subject(id=sid, cine=cine, spacing_mm=sl.spacing_mm, level=UNKNOWN_LEVEL, frame_times_ms=times,
                      attrs=attrs)
    if infarct is not None:
        subject.infarct = read_mask(infarct, (H, W))
    if contours:
        _attach_contours(subject, sl, contours, T, H, W)
    return subject


def _attach_contours(subject, sl, contours, T, H, W):
    hits = []
    for fi in contours:
        k, dist = nearest_frame(sl.times_ms[fi], sl.times_ms[0], sl.cycle_ms, T)
        hits.append((dist, fi, k))
    cavity = np.zeros((T, H, W), np.uint8)
    myo = np.zeros((T, H, W), np.uint8)
    box = np.full((T, 4), -1, np.int32)
    has_cavity, has_myo = np.zeros(T, np.uint8), np.zeros(T, np.uint8)
    margin = int(np.ceil(ENDO_BOX_MARGIN_MM / min(sl.spacing_mm)))
    for _, fi, k in sorted(hits):
        if box[k, 0] >= 0:
            continue  # a nearer annotated frame already owns output frame k
        files = contours[fi]
        endo = read_contour(files["i"], (H, W)) if "i" in files else None
        epi = read_contour(files["o"], (H, W)) if "o" in files else None
        if endo is not None:
            cavity[k], has_cavity[k] = endo, 1
        if endo is not None and epi is not None:
            myo[k], has_myo[k] = epi & ~endo, 1
        box[k] = _box(epi) if epi is not None else _box(endo, margin)
    subject.lv_box = box
    if has_cavity.any():
        subject.lv_cavity_t = cavity
        subject.annotated["lv_cavity_t"] = has_cavity
    if has_myo.any():
        subject.myocardium_t = myo
        subject.annotated["myocardium_t"] = has_myo
        if has_myo[0]:
            subject.myocardium = myo[0].copy()


def subject_ids(slices, ids=None, id_prefix=None):
    """Subject ids: the user's ``ids`` (one per slice, in listing order), ``<prefix>NN``, or hashes."""
    n = len(slices)
    if ids and id_prefix:
        raise OfrnnError("give --ids or --id-prefix, not both", field="--ids")
    if ids:
        if len(ids) != n:
            raise OfrnnError(f"{len(ids)} id(s) for {n} slice(s); run without --ids to list the slices",
                             field="--ids")
        return list(ids)
    if id_prefix:
        width = max(2, len(str(n)))
        return [f"{id_prefix}{k:0{width}d}" for k in range(1, n + 1)]
    return [s.key for s in slices]


def ingest_dicom(folder, out, *, frames=DEFAULT_FRAMES, masks=None, contours=None, ids=None, id_prefix=None,
                 progress=None):
    """Read a cine DICOM folder (and optional contours and masks) and write a ``dicom`` cohort to ``out``.

    Parameters
    ----------
    folder : path
        Folder searched recursively for the DICOM images.
    out : path
        Cohort file to write (atomically: on any error the target is left as it was).
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
        One summary row per subject written (id, series, position, frames, matrix, annotations).
    skipped : int
        Files skipped by name as not DICOM.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OfrnnError("not a folder", path=folder)
    if frames < 2:
        raise OfrnnError(f"{frames}; a cine needs at least 2 frames", field="--frames")
    slices, skipped = read_cine_slices(folder, progress=progress)
    sids = subject_ids(slices, ids, id_prefix)
    contour_files = find_contours(contours, slices) if contours else {}
    mask_files = find_masks(masks, sids) if masks else {}
    params = dict(frames=frames, resampling="periodic-linear over the cardiac cycle", contours=bool(contours),
                  masks=bool(masks), endo_box_margin_mm=ENDO_BOX_MARGIN_MM)
    rows = []
    with CohortWriter(out, source="dicom", params=params) as writer:
        for si, (sl, sid) in enumerate(zip(slices, sids)):
            subject = slice_to_subject(sl, sid, frames=frames, contours=contour_files.get(si),
                                       infarct=mask_files.get(sid))
            writer.add(subject)
            rows.append(dict(id=sid, series_number=sl.series_number, position_mm=sl.position_mm,
                             frames_original=len(sl.frames), frames=frames, matrix=sl.frames.shape[1:],
                             spacing_mm=sl.spacing_mm, contour_frames=len(contour_files.get(si, {})),
                             infarct=sid in mask_files))
    return rows, skipped


__all__ = ["DEFAULT_FRAMES", "ENDO_BOX_MARGIN_MM", "CineSlice", "find_dicom_files", "read_image",
           "read_cine_slices", "resample_cycle", "nearest_frame", "find_contours", "read_contour", "find_masks",
           "read_mask", "slice_to_subject", "subject_ids", "ingest_dicom"]
