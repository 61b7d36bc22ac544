"""From cohort subjects to the OF-RNN's per-pixel inputs: ROI sequences, labels, flows, pixel batches.

Paper Sec. 2 hands the motion statistical layers one 64x64 ROI sequence of J = 25 frames per
slice. Here each subject becomes a :class:`RoiSubject`:

* **ROI**: one square crop per sequence (:func:`ofrnn.roi.sequence_transform`) from the LV
  boxes, either the store's annotated ``lv_box`` (``roi="gt"``) or the heart localization
  layers' detections (``roi="detector"``).
* **Time**: cines with T != J frames are resampled linearly in time to J frames (the LSTM-RNN and
  P_g(p) have fixed length); the simulated cohorts have J frames and pass unchanged.
* **Intensity**: per sequence, (I - q1) / (q99 - q1) with q1, q99 the 1st and 99th percentiles of
  the ROI sequence, so the network never depends on the scanner's arbitrary signal scale.
* **Labels**: the traced infarct at frame 0 (end-diastole), cropped with the same transform and
  nearest-neighbour sampling; myocardium and AHA segments likewise (for evaluation).
* **Global motion**: the forward flows of the ROI sequence, estimated by :mod:`ofrnn.flow`
  (``flow="estimated"``, the default and the paper's method) or, for development and ablation
  only, the simulator's exact flows (``flow="gt"``). P_g(p) itself comes from
  :func:`ofrnn.flow.global_features`.

Class imbalance (infarct is a few percent of ROI pixels, and the hard negatives, normal
myocardium, barely more): training draws a fixed number of pixels per subject from four strata
(infarct, normal myocardium, a ring around the myocardium, the rest of the ROI) with fixed quotas,
so infarct and normal myocardium are seen about as often as each other. Each drawn pixel then
weighs 1 (``weights="uniform"``, the default) or the number of ROI pixels it stands for
(``weights="represent"``: the weighted loss estimates the loss over all ROI pixels, dominated by
easy background); ``infarct_share`` optionally rescales the two classes' total weights (0.5: a
class-balanced loss). The quotas shift the posterior toward infarct against the cohort's own mix;
a threshold chosen on validation subjects could undo that, but for the full network it did worse on
ten subjects than the softmax's own 0.5; the default "auto" rule picks between the two per run
(:func:`ofrnn.evaluate.choose_threshold`, ``experiments/train.toml``).
See :func:`sample_pixels`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage as ndi

from . import roi as roimod
from .errors import OfrnnError
from .files import atomic_output
from .motion import LOCAL_FRAMES, pad_for_patches
from .wall import append_wall

#: where the sampling strata come from (order = stratum code)
STRATA = ("infarct", "myocardium", "ring", "background")
ROI_SOURCES = ("gt", "detector")
FLOW_SOURCES = ("estimated", "gt")


@dataclass
class RoiSubject:
    """One slice, cropped: everything the network and the evaluation need, in ROI pixels."""

    id: str
    level: str
    spacing_mm: tuple
    shape: tuple                      # (H, W) of the full image
    transform: roimod.RoiTransform
    roi: np.ndarray                   # float32 (J, 64, 64), normalised
    frame0: np.ndarray                # float32 (H, W), the full first frame (for overlays)
    flows: np.ndarray | None = None   # float32 (J-1, 2, 64, 64), ROI pixels
    infarct: np.ndarray | None = None     # uint8 (64, 64)
    myocardium: np.ndarray | None = None  # uint8 (64, 64)
    aha: np.ndarray | None = None         # uint8 (64, 64)
    wall: np.ndarray | None = None        # float32 (64, 64, 2), learned wall geometry (ofrnn.wall.with_wall)


def resample_frames(seq, frames):
    """Linear interpolation of a (T, ...) sequence to ``frames`` time points spanning the same cycle."""
    seq = np.asarray(seq, dtype=np.float32)
    T = seq.shape[0]
    if T == frames:
        return seq
    pos = np.linspace(0, T - 1, frames)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, T - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (seq.ndim - 1)).astype(np.float32)
    return (1 - w) * seq[lo] + w * seq[hi]


def normalise_intensity(seq):
    """(I - q1) / (q99 - q1) over the whole sequence (robust to outliers and the scanner's scale)."""
    q1, q99 = np.percentile(seq, [1, 99])
    return ((seq - q1) / max(q99 - q1, 1e-6)).astype(np.float32)


def subject_transform(subject, *, roi="gt", localizer=None, margin=0.15, path=None):
    """The ROI crop of a subject from its annotated boxes (``roi="gt"``) or a localizer's detection."""
    if roi == "gt":
        if subject.lv_box is None or not np.any(np.all(subject.lv_box >= 0, axis=1)):
            raise OfrnnError("no annotated LV box; use --roi detector --localizer DIR", path=path,
                             field=f"subjects/{subject.id}/lv_box")
        return roimod.sequence_transform(subject.lv_box, margin=margin)
    if roi == "detector":
        if localizer is None:
            raise OfrnnError("--roi detector needs --localizer DIR (a trained heart localization bundle)")
        return localizer(subject)
    raise OfrnnError(f"roi source {roi!r} is not one of {ROI_SOURCES}")


def prepare_subject(subject, *, frames, transform, flow="estimated", path=None):
    """Crop, resample, normalise and (optionally) attach flows and labels of one subject.

    Parameters
    ----------
    subject : ofrnn.store.Subject
    frames : int
        J, the network's sequence length.
    transform : ofrnn.roi.RoiTransform
    flow : {"estimated", "gt", None}
        Source of the ROI flows; None skips them.
    """
    cine = subject.cine
    roi = normalise_intensity(resample_frames(roimod.crop(cine, transform, order=1), frames))
    rs = RoiSubject(id=subject.id, level=subject.level, spacing_mm=tuple(subject.spacing_mm),
                    shape=tuple(cine.shape[1:]), transform=transform, roi=roi,
                    frame0=np.asarray(cine[0], dtype=np.float32))
    rs.flows = roi_flows(subject, rs, flow=flow, path=path)
    for name in ("infarct", "myocardium", "aha_segments"):
        arr = getattr(subject, name)
        if arr is not None:
            setattr(rs, "aha" if name == "aha_segments" else name, roimod.crop(arr, transform, order=0).astype(np.uint8))
    return rs


def roi_flows(subject, rs, *, flow="estimated", path=None):
    """Forward flows (J-1, 2, 64, 64) of a prepared subject's ROI from ``flow`` (None: skip)."""
    if flow is None:
        return None
    if flow == "estimated":
        return estimate_flows(rs.roi)
    if flow != "gt":
        raise OfrnnError(f"flow source {flow!r} is not one of {FLOW_SOURCES}")
    if subject.flow is None:
        raise OfrnnError("no ground-truth flow in this cohort (flow='gt' needs a simulated cohort)",
                         path=path, field=f"subjects/{subject.id}/flow")
    if subject.cine.shape[0] != rs.roi.shape[0]:
        raise OfrnnError(f"{subject.cine.shape[0]} frames; ground-truth flows cannot be resampled to "
                         f"{rs.roi.shape[0]}", path=path, field=f"subjects/{subject.id}/cine")
    return roimod.crop_flow(subject.flow, rs.transform).astype(np.float32)


def estimate_flows(roi):
    """Forward flows (J-1, 2, 64, 64) of a normalised ROI sequence by the paper's deep optical flow."""
    from .flow import sequence_flow

    return np.asarray(sequence_flow(roi), dtype=np.float32)


def global_motion(flows, *, patch=3, frame="heart", reference="none"):
    """P_g(p) for every ROI pixel: (64*64, J-1, F) float32, rows in row-major pixel order.

    ``frame``: "heart" (Lagrangian displacement since ED, radial / circumferential about the ROI
    centre) or "image" (per-frame flow in image axes); ``reference``: "none" or "slice" (relative
    to the slice's own motion, beyond the paper); see :mod:`ofrnn.flow.trajectory`.
    """
    from .flow import global_features

    g = np.asarray(global_features(flows, patch=patch, frame=frame, reference=reference),
                   dtype=np.float32)  # (H, W, J-1, F)
    return g.reshape(g.shape[0] * g.shape[1], g.shape[2], g.shape[3])


# -- the cache of prepared subjects --------------------------------------------------------------------
def _cache_key(cohort_path, settings):
    st = Path(cohort_path).stat()
    blob = json.dumps(dict(path=str(Path(cohort_path).resolve()), size=st.st_size, mtime=st.st_mtime_ns,
                           **settings), sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def prepare_cohort(cohort_path, *, frames, roi="gt", flow="estimated", margin=0.15, localizer=None,
                   cache_dir=None, ids=None, progress=True):
    """Prepare every subject of a cohort (or ``ids``), caching the result in ``cache_dir``.

    The flows are the expensive part; a cache file (one per cohort file, version and settings,
    written atomically) lets every fold of a cross-validation and every rerun reuse them.

    Returns
    -------
    list of RoiSubject
    """
    from tqdm import tqdm

    from ._version import __version__
    from .store import open_cohort

    settings = dict(frames=frames, roi=roi, flow=flow, margin=margin, version=__version__)
    if flow == "estimated":
        from .flow import DEFAULTS  # a change of the flow's settings must not reuse stale flows

        settings["flow_params"] = DEFAULTS
    cache = None
    if cache_dir is not None and roi == "gt":
        # named by a key of the cohort and settings, not by the cohort's file name (which may name a patient)
        cache = Path(cache_dir) / f"prepared-{_cache_key(cohort_path, settings)}.h5"
    with open_cohort(cohort_path) as c:
        want = list(c.ids) if ids is None else list(ids)
        cached = _read_cache(cache, want) if cache is not None and cache.is_file() else {}
        out = []
        fresh = []
        for sid in tqdm(want, desc="prepare", unit="subject", disable=not progress):
            if sid in cached:
                out.append(cached[sid])
                continue
            s = c.read(sid)
            t = subject_transform(s, roi=roi, localizer=localizer, margin=margin, path=c.path)
            rs = prepare_subject(s, frames=frames, transform=t, flow=flow, path=c.path)
            out.append(rs)
            fresh.append(rs)
    if cache is not None and fresh:
        _write_cache(cache, {**cached, **{r.id: r for r in fresh}}, settings)
    return out


_CACHE_FIELDS = ("roi", "frame0", "flows", "infarct", "myocardium", "aha")


def _write_cache(path, subjects, settings):
    with atomic_output(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["settings"] = json.dumps(settings, sort_keys=True)
        for sid, r in subjects.items():
            g = f.create_group(sid)
            g.attrs["level"] = r.level
            g.attrs["spacing_mm"] = np.asarray(r.spacing_mm, dtype=float)
            g.attrs["shape"] = np.asarray(r.shape)
            g.attrs["transform"] = json.dumps(r.transform.to_dict())
            for name in _CACHE_FIELDS:
                v = getattr(r, name)
                if v is not None:
                    g.create_dataset(name, data=v)


def _read_cache(path, ids):
    out = {}
    with h5py.File(path, "r") as f:
        for sid in ids:
            if sid not in f:
                continue
            g = f[sid]
            arrays = {name: (g[name][()] if name in g else None) for name in _CACHE_FIELDS}
            out[sid] = RoiSubject(id=sid, level=str(g.attrs["level"]), spacing_mm=tuple(g.attrs["spacing_mm"]),
                                  shape=tuple(int(v) for v in g.attrs["shape"]),
                                  transform=roimod.RoiTransform(**json.loads(g.attrs["transform"])), **arrays)
    return out


# -- pixel sampling and batches --------------------------------------------------------------------------
def strata(rs, *, ring=4):
    """Stratum code per ROI pixel (index into :data:`STRATA`)."""
    code = np.full(rs.roi.shape[1:], 3, dtype=np.uint8)
    myo = rs.myocardium.astype(bool)
    code[ndi.binary_dilation(myo, iterations=ring) & ~myo] = 2
    code[myo] = 1
    code[rs.infarct.astype(bool)] = 0
    return code


def sample_pixels(subjects, *, per_subject, fractions, seed, weights="uniform", infarct_share=None):
    """Draw training pixels per subject by stratum (see the module docstring on class imbalance).

    Parameters
    ----------
    subjects : list of RoiSubject
        Subjects with ``infarct`` and ``myocardium`` labels.
    per_subject : int
        Pixels drawn per subject (all of a stratum when it has fewer than its quota).
    fractions : sequence of 4 floats
        Quota of ``per_subject`` for each stratum of :data:`STRATA`.
    seed : int
    weights : {"uniform", "represent"}
        Every drawn pixel weighs 1, or the number of pixels of its stratum it stands for.
    infarct_share : float, optional
        Rescale the weights so infarct pixels carry this fraction of the total (0.5: balanced).

    Returns
    -------
    dict of arrays
        ``subject`` (index into ``subjects``), ``y``, ``x``, ``label``, ``weight`` (mean 1).
    """
    if weights not in ("uniform", "represent"):
        raise OfrnnError(f"pixel weights {weights!r} are not 'uniform' or 'represent'", field="pixel_weights")
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("subject", "y", "x", "label", "weight")}
    for i, rs in enumerate(subjects):
        code = strata(rs).ravel()
        for s, frac in enumerate(fractions):
            idx = np.flatnonzero(code == s)
            k = min(len(idx), int(round(per_subject * frac)))
            if k == 0:
                continue
            pick = rng.choice(idx, size=k, replace=False)
            cols["subject"].append(np.full(k, i, dtype=np.int32))
            cols["y"].append((pick // rs.roi.shape[2]).astype(np.int32))
            cols["x"].append((pick % rs.roi.shape[2]).astype(np.int32))
            cols["label"].append(rs.infarct.ravel()[pick].astype(np.int32))
            cols["weight"].append(np.full(k, len(idx) / k if weights == "represent" else 1.0, dtype=np.float64))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    w, lab = out["weight"], out["label"]
    if infarct_share is not None and 0 < lab.mean() < 1:
        w[lab == 1] *= infarct_share / w[lab == 1].sum()
        w[lab == 0] *= (1 - infarct_share) / w[lab == 0].sum()
    out["weight"] = (w / w.mean()).astype(np.float32)
    return out


#: the :func:`dihedral` codes of the grid's four rotations (identity, transpose + flip y, transpose + flip x,
#: both flips), the symmetries augmentation draws from. A reflection is not a symmetry of the heart's
#: motion: it reverses the LV's twist (ofrnn.simulate.kinematics; apex counter-clockwise, base clockwise,
#: viewed from the apex), so a mirrored basal slice would twist as an apical one does.
ROTATIONS = (0, 3, 5, 6)


def dihedral(local, glob, code, *, patch, frame="heart", local_frame="image"):
    """Apply one of the 8 symmetries of the pixel grid per sample to P_l and P_g (augmentation).

    Heart motion has no preferred orientation in the image (it depends on how the patient lies),
    so a rotated neighbourhood is an equally valid training example; a mirrored one is not
    (:data:`ROTATIONS`, which augmentation draws from), but all 8 are defined here. ``code`` (B,) in
    0..7: bit 0 transposes (y <-> x), bit 1 flips y, bit 2 flips x, all about the ROI centre (the LV
    centre, :mod:`ofrnn.roi`). Each sample becomes the features its pixel's image under the symmetry
    has in the transformed cine:

    - P_l (B, J, N*N) in image axes (``local_frame`` "image" or "tissue") is rearranged like the grid.
      A heart-frame P_l (``local_frame="heart"``, :func:`ofrnn.motion.heart_patches`) turns with the
      radial direction, so a rotation leaves it as it is, and a reflection (an odd number of the three
      operations) reverses its circumferential columns, since the clockwise direction becomes the
      counter-clockwise one.
    - P_g (B, J-1, 3*9) has its three 3x3 patches (see :data:`ofrnn.flow.GLOBAL_FEATURE_LAYOUTS`),
      which lie on the image grid in every frame, rearranged, and its vector components transformed
      the same way: in the image ``frame`` a transpose swaps dy and dx and a flip negates its
      component; in the heart ``frame`` magnitude and radial components are unchanged and the
      circumferential one changes sign under a reflection.
    """
    B, J, _ = local.shape
    loc = local.reshape(B, J, patch, patch).copy()
    g = glob.reshape(B, glob.shape[1], 3, 3, 3).copy()  # (B, J-1, block, 3, 3)
    t = (code & 1).astype(bool)
    fy = (code & 2).astype(bool)
    fx = (code & 4).astype(bool)
    mirror = t ^ fy ^ fx
    if local_frame == "heart":
        loc[mirror] = loc[mirror][..., ::-1]
    else:
        loc[t] = loc[t].swapaxes(-1, -2)
        loc[fy] = loc[fy][..., ::-1, :]
        loc[fx] = loc[fx][..., ::-1]
    g[t] = g[t].swapaxes(-1, -2)
    g[fy] = g[fy][..., ::-1, :]
    g[fx] = g[fx][..., ::-1]
    if frame == "heart":
        g[mirror, :, 2] *= -1
    else:
        g[t] = g[t][:, :, [0, 2, 1]]
        g[fy, :, 1] *= -1
        g[fx, :, 2] *= -1
    return loc.reshape(local.shape), g.reshape(glob.shape)


def dihedral_tables(*, patch, frame="heart", local_frame="image"):
    """:func:`dihedral` as per-code index and sign tables, for the in-graph feed.

    Every symmetry only moves and negates features, so applying :func:`dihedral` to the feature
    numbers 1, 2, ... gives each code's source index and sign, and both feeds share one definition.

    Returns
    -------
    local_index : int32 array (8, N*N)
        Code c's P_l row is ``row[local_index[c]]`` in every frame.
    global_index : int32 array (8, 27), global_sign : float32 array (8, 27)
        Code c's P_g row is ``row[global_index[c]] * global_sign[c]`` in every frame.
    """
    from .flow import GLOBAL_FEATURES_PER_FRAME

    codes = np.arange(8)
    loc = np.broadcast_to(np.arange(1, patch * patch + 1, dtype=np.float32), (8, 1, patch * patch))
    glo = np.broadcast_to(np.arange(1, GLOBAL_FEATURES_PER_FRAME + 1, dtype=np.float32),
                          (8, 1, GLOBAL_FEATURES_PER_FRAME))
    tl, tg = dihedral(loc, glo, codes, patch=patch, frame=frame, local_frame=local_frame)
    return ((tl[:, 0].astype(np.int32) - 1), (np.abs(tg[:, 0]).astype(np.int32) - 1),
            np.sign(tg[:, 0]).astype(np.float32))


def batch_settings(config):
    """The :class:`PixelBatches` keywords that a model bundle's settings, or training settings'
    :meth:`~ofrnn.settings.TrainingSettings.inference`, define (a mapping)."""
    return dict(patch=config["patch"], global_patch=config["global_patch"], global_frame=config["global_frame"],
                motion_reference=config["motion_reference"], local_frame=config["local_frame"])


#: byte alignment TensorFlow requires of a host buffer it reads in place
_TF_ALIGN = 64


def _host_buffer(shape, dtype):
    """An uninitialised C-contiguous array whose data start on a :data:`_TF_ALIGN`-byte boundary, so
    :func:`_host_tensor` can hand it to TensorFlow without a copy."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + _TF_ALIGN, np.uint8)
    start = -raw.ctypes.data % _TF_ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _host_tensor(array):
    """A CPU tensor of ``array``, sharing its memory when it is C-contiguous and aligned (DLPack).

    Why: the heart-frame P_l rows are about 12 kB a sampled pixel (1.8 GB for the quick profile's
    149k pixels); ``tf.convert_to_tensor`` copies them, and briefly needs a third copy. The array
    must not be written afterwards, which PixelBatches never does.
    """
    import tensorflow as tf

    with tf.device("/CPU:0"):
        # NumPy exports only writable, native-order arrays through DLPack
        if (array.flags.c_contiguous and array.flags.writeable and array.dtype.isnative and array.size
                and array.ctypes.data % _TF_ALIGN == 0):
            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        return tf.convert_to_tensor(array)


class PixelBatches:
    """Batches of (P_l(p), P_g(p)), label, weight for sampled pixels, built on the fly.

    Only the ROI sequences (a few MB per subject) and the sampled pixels' P_g rows are held; each
    batch's patches are gathered from a strided view of the stacked sequences. Heart-frame patches
    (``local_frame="heart"``), bilinear samples on a turned grid, are instead computed once for the
    sampled pixels (``local_rows``, J * N * N float32 a pixel: about 1.8 GB for the quick profile's
    training pixels, which the graph feed's table shares rather than copies). When the subjects carry learned
    wall maps (``RoiSubject.wall``, :mod:`ofrnn.wall`), each pixel's two values are appended to
    every frame of its local input, after any augmenting turn (they do not change under one).
    """

    def __init__(self, subjects, samples, *, patch, global_patch=3, global_frame="heart", motion_reference="none",
                 batch_size=256, seed=0, augment=False, local_frame="image"):
        if local_frame not in LOCAL_FRAMES:
            raise OfrnnError(f"local_frame {local_frame!r} is not one of {LOCAL_FRAMES}", field="local_frame")
        if augment and global_patch != 3:
            # dihedral rearranges the paper's 3x3 P_g patches
            raise OfrnnError(f"augment needs global_patch 3, got {global_patch}", field="augment")
        if augment and global_frame == "wall":
            # the wall frame's patch is already turned along the wall, as heart-frame P_l patches are
            raise OfrnnError("augment cannot turn wall-frame P_g patches; use global_frame 'heart' or 'image'",
                             field="augment")
        self.samples = samples
        self.global_frame = global_frame
        self.motion_reference = motion_reference
        self.augment = augment
        self.local_frame = local_frame
        self.batch_size = batch_size
        self.seed = seed
        self.padded = pad_for_patches(np.stack([r.roi for r in subjects]), patch=patch)  # (S, J, 64+N-1, 64+N-1)
        # the patches as a (S, J, 64, 64, N, N) view of it (what patch_windows gives, without padding twice)
        self.windows = sliding_window_view(self.padded, (patch, patch), axis=(-2, -1))
        self.frames = self.windows.shape[1]
        self.patch = patch
        self.global_rows = self._global_rows(subjects, global_patch)
        # The fixed patch (None) keeps its own, faster paths: one gather fetches a patch pixel's whole
        # time series (graph feed measured 3x faster than per-frame gathers of the same patches).
        self.centres = self._centres(subjects) if local_frame == "tissue" else None
        # Heart-frame patches are bilinear samples on a turned grid, too costly to gather per batch:
        # the sampled pixels' patches are computed once (about 12 kB a pixel) and then only indexed.
        self.local_rows = self._heart_rows(subjects) if local_frame == "heart" else None
        # learned wall geometry (beyond the paper): (n, 2) per sampled pixel, appended to every frame's patch
        has_wall = [rs.wall is not None for rs in subjects]
        if any(has_wall) and not all(has_wall):
            raise OfrnnError("some subjects have wall maps and some do not", field="wall_geometry")
        self.wall_rows = self._per_sample(subjects, lambda rs, ys, xs: rs.wall[ys, xs]) if any(has_wall) else None

    def _per_sample(self, subjects, rows_of):
        """Stack ``rows_of(rs, ys, xs)`` (one row per pixel) of every subject's sampled pixels in
        sample order: (n, ...) with the rows' dtype, or None without samples."""
        s = self.samples
        out = None
        for i, rs in enumerate(subjects):
            sel = np.flatnonzero(s["subject"] == i)
            if sel.size == 0:
                continue
            rows = rows_of(rs, s["y"][sel], s["x"][sel])
            if out is None:
                out = _host_buffer((len(s["subject"]),) + rows.shape[1:], rows.dtype)
            out[sel] = rows
        return out

    def _centres(self, subjects):
        """Per-frame patch centres (n, J, 2) of the sampled pixels traced with their subject's flows."""
        from .motion import tissue_centres

        return self._per_sample(subjects, lambda rs, ys, xs: tissue_centres(rs.flows)[:, ys * rs.roi.shape[2] + xs]
                                .transpose(1, 0, 2))

    def _heart_rows(self, subjects):
        """P_l rows (n, J, N*N) of the sampled pixels in the heart's frame (:func:`ofrnn.motion.heart_patches`)."""
        from .motion import heart_patches

        return self._per_sample(subjects, lambda rs, ys, xs: heart_patches(rs.roi, rs.flows, patch=self.patch,
                                                                           pixels=(ys, xs)))

    def _global_rows(self, subjects, global_patch):
        """P_g rows (n, J-1, F) of the sampled pixels (:func:`global_motion`)."""
        def rows_of(rs, ys, xs):
            g = global_motion(rs.flows, patch=global_patch, frame=self.global_frame, reference=self.motion_reference)
            return g[ys * rs.roi.shape[2] + xs]

        return self._per_sample(subjects, rows_of)

    def __len__(self):
        return len(self.samples["label"])

    @property
    def steps(self):
        return -(-len(self) // self.batch_size)

    @property
    def global_shape(self):
        return self.global_rows.shape[1:]

    @property
    def local_width(self):
        """Values per frame of the local input: N*N, plus the wall maps when the subjects carry them."""
        return self.patch * self.patch + (0 if self.wall_rows is None else self.wall_rows.shape[1])

    def inputs(self, idx):
        """(local (B, J, N*N), global (B, J-1, F)) for sample indices ``idx``; with wall maps the local
        input is (B, J, N*N + 2), the pixel's two wall values repeated at every frame."""
        return self._with_wall(self._patches(idx), idx), self.global_rows[idx]

    def _patches(self, idx):
        s = self.samples
        if self.local_rows is not None:
            return self.local_rows[idx]
        if self.centres is None:
            loc = self.windows[s["subject"][idx], :, s["y"][idx], s["x"][idx]]  # (B, J, N, N)
        else:
            c = self.centres[idx]
            loc = self.windows[s["subject"][idx][:, None], np.arange(self.frames)[None], c[..., 0], c[..., 1]]
        return np.ascontiguousarray(loc.reshape(len(idx), self.frames, self.patch * self.patch))

    def _with_wall(self, loc, idx):
        return loc if self.wall_rows is None else append_wall(loc, self.wall_rows[idx])

    def batches(self, *, local_only=False):
        """Endless shuffled batches (x, label, weight); a new permutation every pass.

        With ``augment``, each pixel's inputs undergo one of the 4 rotations of the image grid
        (:data:`ROTATIONS`, :func:`dihedral`), consistently for P_l and P_g.
        """
        rng = np.random.default_rng(self.seed)
        while True:
            order = rng.permutation(len(self))
            for b in range(self.steps):
                idx = np.sort(order[b * self.batch_size:(b + 1) * self.batch_size])
                loc, glo = self._patches(idx), self.global_rows[idx]
                if self.augment:
                    loc, glo = dihedral(loc, glo, rng.choice(ROTATIONS, len(idx)), patch=self.patch,
                                        frame=self.global_frame, local_frame=self.local_frame)
                # the wall maps are scalars per pixel, the same under every turn: appended after it
                loc = self._with_wall(loc, idx)
                x = loc if local_only else (loc, glo)
                yield x, self.samples["label"][idx], self.samples["weight"][idx]

    def _graph_tables(self, local_only):
        """The padded sequences and, unless ``local_only``, the P_g rows as host tensors.

        The sequences are (S, Hp*Wp, J), pixel-major, so one gather fetches a fixed patch pixel's
        whole time series; with tissue centres, whose patch moves from frame to frame, they are
        flat (S*J*Hp*Wp,) instead; with heart-frame patches the table is ``local_rows`` itself.
        Built once per instance (every stage and the validation pass share them). Eager tensors
        on the CPU, captured by the map function by reference (no copy into a graph), and not
        variables, which a distribution strategy's scope would mirror onto every device. The
        per-sample rows are shared with their NumPy arrays, not copied (:func:`_host_tensor`).
        """
        if getattr(self, "_tables", None) is None:
            self._tables = {}
        if "table" not in self._tables:
            S, J, Hp, Wp = self.padded.shape
            if self.local_rows is not None:
                table = self.local_rows
            elif self.centres is not None:
                table = self.padded.reshape(-1)
            else:
                table = np.ascontiguousarray(self.padded.reshape(S, J, Hp * Wp).transpose(0, 2, 1))
            self._tables["table"] = _host_tensor(table)
        if not local_only and "glob" not in self._tables:
            self._tables["glob"] = _host_tensor(self.global_rows)
        return self._tables["table"], self._tables.get("glob")

    def dataset(self, *, local_only=False, shuffle=True, feed="graph"):
        """A repeating tf.data pipeline of shuffled batches (fit with ``steps_per_epoch=self.steps``).

        ``feed="graph"`` (default): the patches are gathered inside the TensorFlow graph from the
        padded ROI sequences (one ``gather_nd`` per batch, overlapped with the training step), or,
        for heart-frame patches, from their precomputed rows. With ``augment`` the rotations of
        :func:`dihedral` are applied in the graph too (:func:`dihedral_tables`), one per sample
        drawn from the seed and the step number.
        ``feed="generator"``: batches come from the Python generator :meth:`batches` (the
        former feed, kept for ``ofrnn bench`` to time both side by side). Same samples, labels and
        weights; a new seeded permutation every epoch (augmented batches draw their rotations
        differently in the two feeds).
        """
        import tensorflow as tf

        if feed not in ("graph", "generator"):
            raise OfrnnError(f"feed {feed!r} is not 'graph' or 'generator'", field="feed")
        loc_spec = tf.TensorSpec((None, self.frames, self.local_width), tf.float32)
        glo_spec = tf.TensorSpec((None,) + tuple(self.global_shape), tf.float32)
        if feed == "generator":
            spec = (loc_spec if local_only else (loc_spec, glo_spec), tf.TensorSpec((None,), tf.int32),
                    tf.TensorSpec((None,), tf.float32))
            return tf.data.Dataset.from_generator(lambda: self.batches(local_only=local_only),
                                                  output_signature=spec).prefetch(2)
        table, glob = self._graph_tables(local_only)
        s = self.samples
        _, J, Hp, Wp = self.padded.shape
        subj = tf.constant(s["subject"].astype(np.int32))
        top_left = tf.constant((s["y"] * Wp + s["x"]).astype(np.int32))  # patch origin in padded coordinates
        oy, ox = np.mgrid[0:self.patch, 0:self.patch]
        offsets = tf.constant((oy * Wp + ox).ravel().astype(np.int32))
        label = tf.constant(s["label"].astype(np.int32))
        wall = None if self.wall_rows is None else tf.constant(self.wall_rows)
        weight = tf.constant(s["weight"].astype(np.float32))
        if self.centres is not None:
            # flat index of each sample's patch origin in every frame, int32 like the other indices
            if self.padded.size >= 2 ** 31:
                raise OfrnnError(f"{self.padded.size} ROI sequence values are too many for one in-graph table; "
                                 "use feed='generator'", field="feed")
            frame_base = (s["subject"][:, None].astype(np.int64) * J + np.arange(J)) * (Hp * Wp)
            origin = tf.constant((frame_base + self.centres[..., 0] * Wp + self.centres[..., 1]).astype(np.int32))

        if self.augment:
            sym = [tf.constant(a) for a in dihedral_tables(patch=self.patch, frame=self.global_frame,
                                                           local_frame=self.local_frame)]
            rotations = tf.constant(ROTATIONS, tf.int32)

            def augment(step, loc, glo):
                # a rotation per sample, drawn from the seed and the step number: every run sees the same batches
                draw = tf.random.stateless_uniform(tf.shape(loc)[:1],
                                                   seed=tf.stack([tf.constant(self.seed, tf.int64), step]),
                                                   minval=0, maxval=len(ROTATIONS), dtype=tf.int32)
                code = tf.gather(rotations, draw)
                loc = tf.gather(loc, tf.gather(sym[0], code), axis=2, batch_dims=1)
                if glo is not None:
                    glo = tf.gather(glo, tf.gather(sym[1], code), axis=2, batch_dims=1) * tf.gather(sym[2], code)[:, None]
                return loc, glo

        def gather(step, idx):
            if self.local_rows is not None:
                loc = tf.gather(table, idx)  # (B, J, N*N), computed once in __init__
            elif self.centres is not None:
                loc = tf.gather(table, tf.gather(origin, idx)[:, :, None] + offsets[None, None])  # (B, J, N*N)
            else:
                pix = tf.gather(top_left, idx)[:, None] + offsets[None]  # (B, N*N)
                sub = tf.broadcast_to(tf.gather(subj, idx)[:, None], tf.shape(pix))
                loc = tf.transpose(tf.gather_nd(table, tf.stack([sub, pix], axis=-1)), (0, 2, 1))  # (B, J, N*N)
            glo = None if local_only else tf.gather(glob, idx)
            if self.augment:
                loc, glo = augment(step, loc, glo)
            if wall is not None:  # after the turn, as in batches()
                loc = tf.concat([loc, tf.tile(tf.gather(wall, idx)[:, None], [1, J, 1])], axis=2)
            return (loc if local_only else (loc, glo)), tf.gather(label, idx), tf.gather(weight, idx)

        ds = tf.data.Dataset.range(len(self))
        if shuffle:
            ds = ds.shuffle(len(self), seed=self.seed, reshuffle_each_iteration=True)
        return (ds.batch(self.batch_size).repeat().enumerate()
                .map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))


__all__ = ["STRATA", "ROTATIONS", "ROI_SOURCES", "FLOW_SOURCES", "RoiSubject", "resample_frames", "normalise_intensity",
           "subject_transform", "prepare_subject", "roi_flows", "estimate_flows", "global_motion", "prepare_cohort", "strata",
           "sample_pixels", "dihedral", "dihedral_tables", "batch_settings", "PixelBatches"]
