"""What DICOM and NIfTI ingestion share: one cine slice in memory, periodic time resampling, LV
annotations on the resampled frames, infarct masks, subject ids, the skip report and the cohort write.

* **Time resampling** to ``frames`` (25 by default, as in the paper) by *periodic linear
  interpolation over the cardiac cycle*. A cine's frames tile one R-R interval, so the last frame is
  followed, one interval later, by the first. Output frame ``k`` lies at ``t[0] + k * cycle / frames``:
  frame 0 is the original first frame unchanged (end-diastole, at the trigger) and every other frame
  is a linear blend of the two original frames around its time. ``frame_times_ms`` stores those
  times; ``cycle_ms`` and ``frames_original`` are subject attrs.
* **LV annotations** arrive per original frame as an endocardial fill (the LV cavity) and an
  epicardial fill (cavity plus myocardium). The endocardial fill is ``lv_cavity_t``; the epicardial
  fill minus the endocardial one is ``myocardium_t`` where a frame has both; frame 0's myocardium,
  when annotated, is also ``myocardium``. ``lv_box`` is tight (half-open) around the epicardial
  fill; a frame with only an endocardial fill gets its box widened by :data:`ENDO_BOX_MARGIN_MM` on
  every side (clipped to the image), an approximation of the epicardium. Frames without annotation
  keep rows of -1 and ``annotated`` flags of 0. After resampling, an annotation lives on the output
  frame nearest to its original time (at most half an output interval, ~15 ms at 25 frames per
  750 ms, away); if two annotated frames fall on one output frame, the nearer one wins.
* **Infarct masks** (``--masks``): ``<subject id>.png`` or ``<subject id>.npy`` in the folder, of the
  slice's matrix size, in frame-0 (end-diastole) coordinates; nonzero is infarct. Colour PNGs count a
  pixel as infarct when any colour channel is nonzero. NPY files are read without pickle support.
* **Privacy.** :class:`IngestReport` notes name input files: they are printed, never stored.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import OfrnnError
from ..store import UNKNOWN_LEVEL, CohortWriter, Subject

#: frames per cardiac cycle after resampling (the paper's 25)
DEFAULT_FRAMES = 25
#: margin added around an endocardial contour to stand in for the epicardium when a frame has no
#: o-contour: about one end-diastolic LV wall thickness (normal 6-11 mm), generous at end-systole
#: in thinned infarcted walls and tight in thickened normal ones
ENDO_BOX_MARGIN_MM = 10.0
#: R-R interval assumed when the input states none (60 beats per minute)
ASSUMED_CYCLE_MS = 1000.0


@dataclass
class CineSlice:
    """One slice position of one input: its frames in temporal order and their geometry.

    ``key`` is the default subject id (a hash, never a path); ``series_uid`` groups the slices of one
    input (DICOM SeriesInstanceUID, or the NIfTI file's content hash); ``instances`` and ``paths``
    follow the frame order (DICOM InstanceNumber, None where the input has none); ``times_ms`` are
    trigger times, or evenly spaced times over ``cycle_ms`` when ``times_assumed``. ``attrs`` are
    extra subject attrs (acquisition physics, source geometry); ``paths`` stay in memory only.
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
    attrs: dict = field(default_factory=dict)


@dataclass
class IngestReport:
    """What an ingestion skipped, dropped or assumed.

    ``notes`` are one line each for the terminal; they may name input files, so they are never
    written to a cohort or a log. ``rejections`` keeps the :class:`OfrnnError` behind every skip so
    that, when nothing is left to ingest, the error can name the real cause.
    """

    notes: list = field(default_factory=list)
    files_skipped: int = 0
    parts_skipped: int = 0
    duplicates: int = 0
    rejections: list = field(default_factory=list)

    def skip_file(self, error):
        """A file that is not a cine image (not DICOM, not an MR image, no pixels)."""
        self.files_skipped += 1
        self.rejections.append(error)
        self.notes.append(f"{error}; skipped")

    def skip_part(self, error, n_images, what="slice"):
        """A series, stack or slice position that is not a cine."""
        self.parts_skipped += 1
        self.rejections.append(error)
        self.notes.append(f"{error}; {what} skipped ({n_images} image(s))")

    def drop_duplicate(self, note):
        """An input that repeats one already read (``note`` says which, ending in '; dropped')."""
        self.duplicates += 1
        self.notes.append(note)

    def summary(self):
        """One clause for the final line, e.g. ``'2 file(s) and 1 series or slice(s) skipped'``."""
        parts = []
        if self.files_skipped:
            parts.append(f"{self.files_skipped} file(s)")
        if self.parts_skipped:
            parts.append(f"{self.parts_skipped} series or slice(s)")
        text = " and ".join(parts) + " skipped" if parts else ""
        if self.duplicates:
            text += (", " if text else "") + f"{self.duplicates} duplicate file(s) dropped"
        return text

    def nothing_left(self, where, what):
        """The error when no cine remains: the one rejection itself, or a count and the first few."""
        if len(self.rejections) == 1:
            return self.rejections[0]
        listed = "; ".join(str(e) for e in self.rejections[:3])
        more = f"; and {len(self.rejections) - 3} more" if len(self.rejections) > 3 else ""
        return OfrnnError(f"no {what} to ingest ({self.summary()}): {listed}{more}", path=where)


def short_hash(text, n=12):
    """The first ``n`` hex digits of the SHA-256 of ``text``: ids and grouping keys that name nothing."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]


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
        raise OfrnnError(f"shape {arr.shape}, expected {tuple(shape)} (the slice's rows x columns)",
                         path=path, field="shape")
    return (arr != 0).astype(np.uint8)


def _box(mask, margin_px=0):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    H, W = mask.shape
    return [max(rows[0] - margin_px, 0), max(cols[0] - margin_px, 0),
            min(rows[-1] + 1 + margin_px, H), min(cols[-1] + 1 + margin_px, W)]


def slice_to_subject(sl, sid, *, frames=DEFAULT_FRAMES, lv_masks=None, infarct=None, level=UNKNOWN_LEVEL,
                     aha_segments=None):
    """Resample one :class:`CineSlice` and attach its annotations as a :class:`~ofrnn.store.Subject`.

    Parameters
    ----------
    sl : CineSlice
    sid : str
        Subject id.
    frames : int
        Output frames per cycle.
    lv_masks : dict or None
        ``{original frame index: (endo, epi)}``, each a bool (H, W) fill or None (see the module
        docstring); a frame needs at least one of them, and ``epi`` must not be empty.
    infarct : path or None
        Infarct mask file (:func:`read_mask`).
    level : str
        Slice level (:data:`ofrnn.store.LEVELS`, or ``unknown``).
    aha_segments : ndarray (H, W) uint8 or None
        AHA segments 1-16 on the frame-0 myocardium, 0 elsewhere (:mod:`ofrnn.ingest.aha`).
    """
    cine, times = resample_cycle(sl.frames, sl.times_ms, sl.cycle_ms, frames)
    T, H, W = cine.shape
    attrs = dict(sl.attrs, frames_original=len(sl.frames), cycle_ms=sl.cycle_ms, slice_position_mm=sl.position_mm,
                 times_assumed=int(sl.times_assumed), study_hash=sl.study_hash, series_hash=sl.series_hash)
    if sl.series_number is not None:
        attrs["series_number"] = sl.series_number
    subject = Subject(id=sid, cine=cine, spacing_mm=sl.spacing_mm, level=level, frame_times_ms=times,
                      attrs=attrs, aha_segments=aha_segments)
    if infarct is not None:
        subject.infarct = read_mask(infarct, (H, W))
    if lv_masks:
        _attach_lv(subject, sl, lv_masks, T, H, W)
    return subject


def _attach_lv(subject, sl, lv_masks, T, H, W):
    """Place per-frame LV fills on the nearest resampled frames (see the module docstring)."""
    hits = []
    for fi in lv_masks:
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
        endo, epi = lv_masks[fi]
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


def check_frames(frames):
    """Raise unless ``frames`` (output frames per cycle, ``--frames``) is at least 2."""
    if frames < 2:
        raise OfrnnError(f"{frames}; a cine needs at least 2 frames", field="--frames")


def write_slices(out, slices, *, ids=None, id_prefix=None, masks=None, source, params, frames, lv_masks=None,
                 aha=None):
    """Name, resample and write ``slices`` as the subjects of a new cohort (atomically).

    Parameters
    ----------
    out : path
        Cohort file; on any error or interruption the target is left as it was.
    slices : list of CineSlice
    ids, id_prefix : list of str, str
        Subject ids or their prefix (:func:`subject_ids`).
    masks : path or None
        Folder of infarct masks ``<subject id>.png`` / ``.npy`` (:func:`find_masks`), looked up
        before anything is written.
    source : str
        Cohort source (:data:`ofrnn.store.SOURCES`).
    params : dict
        The reader's own ingestion options for the root ``params`` attr (no paths, no header
        values); ``frames``, ``resampling`` and ``masks`` are added here.
    frames : int
        Output frames per cycle.
    lv_masks : callable or None
        ``lv_masks(i)`` gives slice ``i``'s ``{frame: (endo, epi)}`` (read lazily, one slice at a time).
    aha : callable or None
        ``aha(i)`` gives slice ``i``'s ``(level, aha_segments)``, or None where both are unknown.

    Returns
    -------
    rows : list of dict
        One summary row per subject (id, series, position, frames, matrix, spacing, annotated
        frames, infarct).
    """
    sids = subject_ids(slices, ids, id_prefix)
    infarct = find_masks(masks, sids) if masks else {}
    params = dict(params, frames=frames, resampling="periodic-linear over the cardiac cycle", masks=bool(masks))
    rows = []
    with CohortWriter(out, source=source, params=params) as writer:
        for i, (sl, sid) in enumerate(zip(slices, sids)):
            masks = lv_masks(i) if lv_masks else None
            level, segments = (aha(i) if aha else None) or (UNKNOWN_LEVEL, None)
            subject = slice_to_subject(sl, sid, frames=frames, lv_masks=masks, infarct=infarct.get(sid), level=level,
                                       aha_segments=segments)
            writer.add(subject)
            rows.append(dict(id=sid, series_number=sl.series_number, position_mm=sl.position_mm,
                             frames_original=len(sl.frames), frames=frames, matrix=sl.frames.shape[1:],
                             spacing_mm=sl.spacing_mm, annotated_frames=len(masks or {}), infarct=sid in infarct))
    return rows
