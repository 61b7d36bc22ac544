"""The HDF5 cohort store: the one module that owns the schema.

Every other module reads and writes cohorts through :class:`CohortWriter` and :func:`open_cohort`;
``data/README.md`` documents the same schema field by field for tools outside ofrnn.

Layout (schema version 1)::

    /                         attrs: schema_version, source ("simulated" | "dicom" | "nifti"), created_by,
                                     generator parameters (JSON in attr ``params``)
    /subjects/<id>/           one short-axis slice, attrs: level, spacing_mm (2,), extra scalars
        cine          float32 (T,H,W)   attrs spacing_mm, level, frame_times_ms (T,)
        frame_times_ms float64 (T,)     copy of the cine attr, for tools that do not read attrs
        infarct       uint8 (H,W)       LGE-traced infarct at frame 0 (ED); zeros if none
        myocardium    uint8 (H,W)       LV myocardium at frame 0
        aha_segments  uint8 (H,W)       AHA segment 1..16 inside the myocardium, else 0
        lv_box        int32 (T,4)       (y0, x0, y1, x1), half-open, tight around the LV epicardium;
                                        a row of -1 marks a frame without annotation
        myocardium_t  uint8 (T,H,W)     LV myocardium per frame  (attr ``annotated`` uint8 (T,))
        lv_cavity_t   uint8 (T,H,W)     LV blood pool per frame (attr ``annotated`` uint8 (T,))
        flow          float32 (T-1,2,H,W) exact forward displacement (dy, dx) from frame t to t+1
        flow_valid    uint8 (T-1,H,W)   1 where ``flow`` is tissue ground truth

Simulated subjects carry every field. DICOM and NIfTI subjects carry ``cine`` and whatever
annotations the user supplied; an absent field means *unknown*, never *none*.

NIfTI subjects also carry the input's geometry as subject attrs (:data:`NIFTI_ATTRS`), so results
can be written back in the input's voxel space: ``nifti_affine`` float64 (4,4), the input's
voxel-to-world (RAS+, mm) affine; ``nifti_shape`` int (3,), its spatial shape (X, Y, Z), Z = 1 for a
(x, y, time) file; ``nifti_slice`` int, this slice's index along the third axis. The image is the
transpose of the NIfTI slice: ``cine[t, row, col] = data[col, row, nifti_slice, t]``.

Writes are atomic: :class:`CohortWriter` fills a temporary file in the target folder and renames
it over the target only when every subject has been written, so an interrupted run leaves no
half cohort behind (:func:`ofrnn.files.atomic_output`: Ctrl-C and SIGTERM remove the temporary
file; one a killed run left is removed by the next write to the same target).
"""
from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ._version import __version__
from .errors import OfrnnError
from .files import atomic_output, json_default

SCHEMA_VERSION = 1
LEVELS = ("apical", "mid", "basal")
SOURCES = ("simulated", "dicom", "nifti")
#: real slices (DICOM, NIfTI) whose level nobody stated
UNKNOWN_LEVEL = "unknown"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

# name -> (dtype, shape spec). Letters are bound per subject: T frames, H x W pixels.
_ARRAYS = {
    "cine": (np.float32, ("T", "H", "W")),
    "infarct": (np.uint8, ("H", "W")),
    "myocardium": (np.uint8, ("H", "W")),
    "aha_segments": (np.uint8, ("H", "W")),
    "lv_box": (np.int32, ("T", 4)),
    "myocardium_t": (np.uint8, ("T", "H", "W")),
    "lv_cavity_t": (np.uint8, ("T", "H", "W")),
    "flow": (np.float32, ("T-1", 2, "H", "W")),
    "flow_valid": (np.uint8, ("T-1", "H", "W")),
}
#: fields a simulated subject must have; a DICOM or NIfTI subject needs only ``cine``
REQUIRED = {
    "simulated": tuple(_ARRAYS),
    "dicom": ("cine",),
    "nifti": ("cine",),
}
#: subject attrs every NIfTI subject carries: the input's affine, spatial shape and this slice's index
NIFTI_ATTRS = ("nifti_affine", "nifti_shape", "nifti_slice")
#: per-frame masks whose ``annotated`` flags say which frames carry an annotation
_PER_FRAME_MASKS = ("myocardium_t", "lv_cavity_t")
_BINARY = ("infarct", "myocardium", "myocardium_t", "lv_cavity_t", "flow_valid")


def _no_times(plist, *, track_order):
    """``plist`` (a file or group creation property list) set to record no object timestamps.

    HDF5 stamps every object header it creates with the wall-clock time unless told not to; h5py
    turns that off for datasets but not for groups, and a group that tracks creation order (new-style
    object header) does store them. Same content would then give different bytes, and a different
    :func:`ofrnn.files.content_digest`, on every run.
    """
    if track_order:
        flags = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED
        plist.set_link_creation_order(flags)
        plist.set_attr_creation_order(flags)
    plist.set_obj_track_times(False)
    return plist


def create_h5(path, *, track_order=False):
    """A new, writable :class:`h5py.File` at ``path`` (truncated) whose bytes depend only on what is
    written into it: no object timestamps in the root group. Create its groups with
    :func:`create_group`, and its datasets as usual (h5py records no dataset times)."""
    fcpl = _no_times(h5py.h5p.create(h5py.h5p.FILE_CREATE), track_order=track_order)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)  # h5py.File's default
    fid = h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl)
    return h5py.File(fid)


def create_group(parent, name, *, track_order=False):
    """``parent.create_group(name)`` without object timestamps (see :func:`create_h5`)."""
    gcpl = _no_times(h5py.h5p.create(h5py.h5p.GROUP_CREATE), track_order=track_order)
    h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl)
    return parent[name]


@dataclass
class Subject:
    """One short-axis cine slice and its annotations (see the module docstring for units)."""

    id: str
    cine: np.ndarray | None
    spacing_mm: tuple[float, float]
    level: str
    frame_times_ms: np.ndarray
    infarct: np.ndarray | None = None
    myocardium: np.ndarray | None = None
    aha_segments: np.ndarray | None = None
    lv_box: np.ndarray | None = None
    myocardium_t: np.ndarray | None = None
    lv_cavity_t: np.ndarray | None = None
    flow: np.ndarray | None = None
    flow_valid: np.ndarray | None = None
    #: frames annotated in myocardium_t / lv_cavity_t (uint8 (T,)); all ones if omitted
    annotated: dict = field(default_factory=dict)
    #: extra scalar metadata (e.g. snr, field_t, ef); JSON-serialisable values only
    attrs: dict = field(default_factory=dict)

    @property
    def shape(self):
        """(T, H, W) of the cine."""
        return tuple(self.cine.shape)

    def arrays(self):
        """The array fields that are present, by name."""
        return {name: getattr(self, name) for name in _ARRAYS if getattr(self, name) is not None}


def _where(path, sid, name=None):
    return f"subjects/{sid}" + (f"/{name}" if name else "")


def _check_shape(path, sid, name, shape, dtype, T, H, W):
    want_dtype, spec = _ARRAYS[name]
    dims = {"T": T, "T-1": T - 1, "H": H, "W": W}
    want = tuple(dims[s] if isinstance(s, str) else s for s in spec)
    if tuple(shape) != want:
        raise OfrnnError(f"shape {tuple(shape)}, expected {want}", path=path, field=_where(path, sid, name))
    if np.dtype(dtype) != np.dtype(want_dtype):
        raise OfrnnError(f"dtype {np.dtype(dtype)}, expected {np.dtype(want_dtype)}",
                         path=path, field=_where(path, sid, name))


def _check_meta(path, sid, source, level, spacing, times, T):
    if not _ID_RE.match(sid):
        raise OfrnnError("subject id must be 1-64 characters of letters, digits, '_', '.', '-'",
                         path=path, field=_where(path, sid))
    allowed = LEVELS if source == "simulated" else LEVELS + (UNKNOWN_LEVEL,)
    if level not in allowed:
        raise OfrnnError(f"level {level!r} is not one of {allowed}", path=path, field=_where(path, sid, "cine.level"))
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (2,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise OfrnnError(f"spacing_mm {spacing.tolist()} must be two positive numbers",
                         path=path, field=_where(path, sid, "cine.spacing_mm"))
    times = np.asarray(times, dtype=float)
    if times.shape != (T,) or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise OfrnnError(f"frame_times_ms must be {T} increasing finite values",
                         path=path, field=_where(path, sid, "cine.frame_times_ms"))


def validate_subject(subject: Subject, *, source: str, path="<memory>"):
    """Check one subject against the schema; raise :class:`OfrnnError` naming the field at fault.

    Checks shapes, dtypes, required fields for the source, finite values, binary masks, AHA codes
    and boxes inside the image.
    """
    sid = subject.id
    if subject.cine is None or np.ndim(subject.cine) != 3:
        raise OfrnnError("cine must be a (T,H,W) array", path=path, field=_where(path, sid, "cine"))
    T, H, W = subject.cine.shape
    if T < 2:
        raise OfrnnError(f"{T} frame(s); a cine needs at least 2", path=path, field=_where(path, sid, "cine"))
    _check_meta(path, sid, source, subject.level, subject.spacing_mm, subject.frame_times_ms, T)
    for name in REQUIRED[source]:
        if getattr(subject, name) is None:
            raise OfrnnError(f"missing (required for {source} subjects)", path=path, field=_where(path, sid, name))
    for name, arr in subject.arrays().items():
        _check_shape(path, sid, name, arr.shape, arr.dtype, T, H, W)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise OfrnnError("contains NaN or inf", path=path, field=_where(path, sid, name))
        if name in _BINARY and arr.size and arr.max() > 1:
            raise OfrnnError("mask values must be 0 or 1", path=path, field=_where(path, sid, name))
    if subject.aha_segments is not None and subject.aha_segments.max(initial=0) > 16:
        raise OfrnnError("AHA segments are 1..16 (0 outside the myocardium)",
                         path=path, field=_where(path, sid, "aha_segments"))
    if subject.lv_box is not None:
        box = subject.lv_box
        known = np.all(box >= 0, axis=1)
        b = box[known]
        bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]) | (b[:, 2] > H) | (b[:, 3] > W)
        unknown_bad = np.any(box[~known] != -1)
        if np.any(bad) or unknown_bad:
            raise OfrnnError("boxes must be (y0, x0, y1, x1), half-open, inside the image, or all -1",
                             path=path, field=_where(path, sid, "lv_box"))
    for name, flags in subject.annotated.items():
        if name not in _PER_FRAME_MASKS or np.shape(flags) != (T,):
            raise OfrnnError(f"annotated flags must be (T,) for one of {_PER_FRAME_MASKS}",
                             path=path, field=_where(path, sid, name + ".annotated"))
    if source == "nifti" or any(k in subject.attrs for k in NIFTI_ATTRS):
        _check_nifti_attrs(path, sid, subject.attrs)


def _check_nifti_attrs(path, sid, attrs):
    """The NIfTI geometry attrs: all present, a finite invertible affine, a slice inside the shape."""
    for key in NIFTI_ATTRS:
        if key not in attrs:
            raise OfrnnError("missing (required for NIfTI subjects)", path=path, field=_where(path, sid, key))
    affine = np.asarray(attrs["nifti_affine"], dtype=float)
    if (affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9
            or not np.array_equal(affine[3], [0, 0, 0, 1])):
        raise OfrnnError("must be a finite 4x4 affine with an invertible 3x3 part and last row 0 0 0 1",
                         path=path, field=_where(path, sid, "nifti_affine"))
    shape = np.asarray(attrs["nifti_shape"])
    if shape.shape != (3,) or shape.dtype.kind not in "iu" or np.any(shape < 1):
        raise OfrnnError("must be 3 positive integers (X, Y, Z)", path=path, field=_where(path, sid, "nifti_shape"))
    k = attrs["nifti_slice"]
    if not isinstance(k, (int, np.integer)) or not 0 <= k < shape[2]:
        raise OfrnnError(f"must be an integer slice index in [0, {shape[2]})", path=path,
                         field=_where(path, sid, "nifti_slice"))


class CohortWriter:
    """Write a cohort atomically: a temporary file in the target folder, renamed on success.

    Use as a context manager::

        with CohortWriter("data/phantom.h5", source="simulated", params={...}) as w:
            for subject in subjects:
                w.add(subject)

    If the block raises (Ctrl-C and SIGTERM included), the target is untouched and the temporary
    file is removed; after a SIGKILL the ``.<name>.*.tmp`` left beside it is removed by the next
    writer of the same target.
    """

    def __init__(self, path, *, source, params=None, compression_level=1):
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        self.path = Path(path)
        self.source = source
        self.params = dict(params or {})
        self.compression_level = compression_level
        self._file = None
        self._tmp = None
        self.ids = []

    def __enter__(self):
        folder = self.path.parent
        if not folder.is_dir():
            raise OfrnnError("output folder does not exist", path=folder)
        # atomic_output renames the finished file over the target, removes it on any exception
        # (Ctrl-C and SIGTERM included) and removes what a killed earlier run left
        self._output = contextlib.ExitStack()
        self._tmp = self._output.enter_context(atomic_output(self.path))
        try:
            self._file = create_h5(self._tmp, track_order=True)
        except BaseException:
            self._output.close()
            raise
        self._file.attrs["schema_version"] = SCHEMA_VERSION
        self._file.attrs["source"] = self.source
        self._file.attrs["created_by"] = f"ofrnn {__version__}"
        self._file.attrs["params"] = json.dumps(self.params, sort_keys=True, default=json_default)
        self._subjects = create_group(self._file, "subjects", track_order=True)
        return self

    def add(self, subject: Subject):
        """Validate and write one subject."""
        validate_subject(subject, source=self.source, path=self.path)
        if subject.id in self._subjects:
            raise OfrnnError("duplicate subject id", path=self.path, field=_where(self.path, subject.id))
        g = create_group(self._subjects, subject.id)
        g.attrs["level"] = subject.level
        g.attrs["spacing_mm"] = np.asarray(subject.spacing_mm, dtype=np.float64)
        for k, v in subject.attrs.items():
            g.attrs[k] = v
        T, H, W = subject.cine.shape
        for name, arr in subject.arrays().items():
            kw = {}
            if arr.ndim >= 2 and arr.size > 64:
                chunks = (1,) * (arr.ndim - 2) + arr.shape[-2:] if arr.ndim > 2 else arr.shape
                kw = dict(chunks=chunks, compression="gzip", compression_opts=self.compression_level,
                          shuffle=True)
            ds = g.create_dataset(name, data=np.ascontiguousarray(arr), **kw)
            if name in _PER_FRAME_MASKS:
                ds.attrs["annotated"] = np.asarray(subject.annotated.get(name, np.ones(T)), dtype=np.uint8)
        cine = g["cine"]
        cine.attrs["spacing_mm"] = np.asarray(subject.spacing_mm, dtype=np.float64)
        cine.attrs["level"] = subject.level
        cine.attrs["frame_times_ms"] = np.asarray(subject.frame_times_ms, dtype=np.float64)
        g.create_dataset("frame_times_ms", data=np.asarray(subject.frame_times_ms, dtype=np.float64))
        self.ids.append(subject.id)

    def __exit__(self, exc_type, exc, tb):
        try:
            self._file.close()
        finally:
            self._output.__exit__(exc_type, exc, tb)
        return False


def write_cohort(path, subjects, *, source, params=None):
    """Write an iterable of :class:`Subject` atomically to ``path``; return the ids written."""
    with CohortWriter(path, source=source, params=params) as w:
        for s in subjects:
            w.add(s)
    return w.ids


class Cohort:
    """A read-only cohort, validated on open (schema version, fields, shapes, dtypes).

    ``cohort.ids`` lists subject ids in stored order; ``cohort[id]`` reads one whole subject and
    ``cohort.read(id, fields=(...))`` only the arrays named. Iteration yields whole subjects.
    Values (NaN, mask codes) are checked when a subject is read.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise OfrnnError("no such cohort file", path=self.path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise OfrnnError(f"not an HDF5 cohort ({e.__class__.__name__})", path=self.path) from None
        try:
            self._validate_layout()
        except Exception:
            self._file.close()
            raise

    def _validate_layout(self):
        a = self._file.attrs
        if "schema_version" not in a:
            raise OfrnnError("missing root attribute (not an ofrnn cohort?)", path=self.path, field="schema_version")
        if int(a["schema_version"]) != SCHEMA_VERSION:
            raise OfrnnError(f"schema version {int(a['schema_version'])}, this ofrnn reads {SCHEMA_VERSION}",
                             path=self.path, field="schema_version")
        self.source = _text(a.get("source", ""))
        if self.source not in SOURCES:
            raise OfrnnError(f"source {self.source!r} is not one of {SOURCES}", path=self.path, field="source")
        self.params = json.loads(_text(a.get("params", "{}")))
        if "subjects" not in self._file:
            raise OfrnnError("missing group", path=self.path, field="subjects")
        self.ids = list(self._file["subjects"].keys())
        for sid in self.ids:
            g = self._file["subjects"][sid]
            for name in REQUIRED[self.source]:
                if name not in g:
                    raise OfrnnError("missing", path=self.path, field=_where(self.path, sid, name))
            if "cine" not in g:
                raise OfrnnError("missing", path=self.path, field=_where(self.path, sid, "cine"))
            cine = g["cine"]
            if cine.ndim != 3:
                raise OfrnnError(f"shape {cine.shape}, expected (T,H,W)", path=self.path,
                                 field=_where(self.path, sid, "cine"))
            T, H, W = cine.shape
            for name in _ARRAYS:
                if name in g:
                    _check_shape(self.path, sid, name, g[name].shape, g[name].dtype, T, H, W)
            for key in ("level", "spacing_mm", "frame_times_ms"):
                if key not in cine.attrs:
                    raise OfrnnError("missing attribute", path=self.path, field=_where(self.path, sid, f"cine.{key}"))
            _check_meta(self.path, sid, self.source, _text(cine.attrs["level"]), cine.attrs["spacing_mm"],
                        cine.attrs["frame_times_ms"], T)

    # -- access -----------------------------------------------------------------------------
    def __len__(self):
        return len(self.ids)

    def __iter__(self):
        for sid in self.ids:
            yield self.read(sid)

    def __getitem__(self, sid):
        return self.read(sid)

    def __contains__(self, sid):
        return sid in self.ids

    def group(self, sid):
        """The raw h5py group of a subject (for partial reads such as one frame)."""
        if sid not in self.ids:
            raise OfrnnError("no such subject", path=self.path, field=_where(self.path, sid))
        return self._file["subjects"][sid]

    def meta(self, sid):
        """Level, spacing, frame times, shape and extra attrs of a subject, without reading arrays."""
        g = self.group(sid)
        c = g["cine"]
        extra = {k: _plain(v) for k, v in g.attrs.items() if k not in ("level", "spacing_mm")}
        return dict(id=sid, level=_text(c.attrs["level"]), spacing_mm=tuple(float(v) for v in c.attrs["spacing_mm"]),
                    frame_times_ms=np.asarray(c.attrs["frame_times_ms"]), shape=tuple(c.shape),
                    fields=[n for n in _ARRAYS if n in g], attrs=extra)

    def read(self, sid, fields=None):
        """Read one subject; ``fields`` limits which arrays are loaded (``cine`` is loaded only if named)."""
        g = self.group(sid)
        m = self.meta(sid)
        names = [n for n in _ARRAYS if n in g] if fields is None else list(fields)
        unknown = set(names) - set(_ARRAYS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        arrays = {}
        annotated = {}
        for n in names:
            if n not in g:
                arrays[n] = None
                continue
            arr = g[n][()]
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise OfrnnError("contains NaN or inf", path=self.path, field=_where(self.path, sid, n))
            arrays[n] = arr
            if n in _PER_FRAME_MASKS and "annotated" in g[n].attrs:
                annotated[n] = np.asarray(g[n].attrs["annotated"])
        arrays.setdefault("cine", None)
        return Subject(id=sid, spacing_mm=m["spacing_mm"], level=m["level"], frame_times_ms=m["frame_times_ms"],
                       annotated=annotated, attrs=m["attrs"], **arrays)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_cohort(path) -> Cohort:
    """Open and validate a cohort file; raises :class:`OfrnnError` naming the subject and field at fault."""
    return Cohort(path)


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


__all__ = ["SCHEMA_VERSION", "LEVELS", "SOURCES", "UNKNOWN_LEVEL", "REQUIRED", "NIFTI_ATTRS", "Subject",
           "CohortWriter", "Cohort", "open_cohort", "write_cohort", "validate_subject"]
