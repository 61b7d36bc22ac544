"""Readers of the real short-axis cines in ``<repo>/../shared/data`` (read-only; see its MANIFEST.md).

Sunnybrook (Radau et al., MIDAS Journal 2009): DICOM cines with manual contours. ACDC (Bernard
et al., IEEE TMI 2018): ED/ES slices with label maps. Both return one dict per slice with ``id``
(``<patient>/slice<NN>``), ``cine`` (T,H,W) float32, ``spacing`` (mm, or None) and ``masks``
(frame -> {"i": endocardial, "o": epicardial} boolean masks). Experiments that use them skip the
set, with the reason, when the folder is absent.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def sunnybrook_sequences(root):
    """Sunnybrook slices with manual contours: 20-frame cine, spacing, {frame: {"i"|"o": mask}}."""
    import pydicom
    from skimage.draw import polygon2mask

    link = {r["original_id"]: r["patient_id"] for r in csv.DictReader(open(root / "link.csv"))}
    out = []
    for pid, folder in sorted(link.items()):
        contours = {}
        for f in sorted((root / "contourfiles" / pid).glob("*-contours/IM-0001-*-?contour-manual.txt")):
            n = int(f.name.split("-")[2])
            contours.setdefault((n - 1) // 20, {}).setdefault((n - 1) % 20, {})[f.name.split("-")[3][0]] = f
        for sl, per_frame in sorted(contours.items()):
            ds = [pydicom.dcmread(root / "dicoms" / folder / f"{sl * 20 + k + 1}.dcm") for k in range(20)]
            cine = np.stack([d.pixel_array.astype(np.float32) for d in ds])
            spacing = tuple(float(v) for v in ds[0].PixelSpacing)
            masks = {fr: {kind: polygon2mask(cine.shape[1:], np.loadtxt(p)[:, ::-1]) for kind, p in kinds.items()}
                     for fr, kinds in per_frame.items()}
            out.append(dict(id=f"{pid}/slice{sl:02d}", cine=cine, spacing=spacing, masks=masks))
    return out


def acdc_sequences(root):
    """ACDC ED/ES slices as 2-frame sequences with LV (myocardium | cavity) masks under ``masks``
    and the label maps under ``labels`` (0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity);
    spacing unknown (the shared copy keeps none)."""
    import h5py

    vols = {}
    for f in sorted(root.glob("patient*_frame0[12]*.h5")):
        m = re.match(r"(patient\d+)_frame0([12])(?:_slice_(\d+))?\.h5", f.name)
        with h5py.File(f, "r") as h:
            img, lab = h["image"][()], h["label"][()]
        if m.group(3) is None:  # a 3-D volume file
            for z in range(img.shape[0]):
                vols.setdefault((m.group(1), z), {})[int(m.group(2))] = (img[z], lab[z])
        else:
            vols.setdefault((m.group(1), int(m.group(3)) - 1), {})[int(m.group(2))] = (img, lab)
    out = []
    for (pid, z), fr in sorted(vols.items()):
        if set(fr) != {1, 2}:
            continue
        lv = [np.isin(fr[k][1], (2, 3)) for k in (1, 2)]
        if not all(m.sum() >= 20 for m in lv):  # beyond apex or base: no LV to find
            continue
        out.append(dict(id=f"{pid}/slice{z + 1:02d}", cine=np.stack([fr[1][0], fr[2][0]]).astype(np.float32),
                        spacing=None, masks={0: {"o": lv[0]}, 1: {"o": lv[1]}},
                        labels=np.stack([fr[1][1], fr[2][1]])))
    return out


def acdc_patient(seq_id):
    """ACDC patient number of a sequence id such as ``patient061/slice03``."""
    return int(re.match(r"patient(\d+)", seq_id).group(1))


def sunnybrook_patient(seq_id):
    """The Sunnybrook patient id (e.g. ``SC-HF-I-1``) of a sequence id ``<patient>/slice<NN>``."""
    return seq_id.split("/")[0]


#: the shared real sets: name -> folder under :data:`SHARED`
REAL_FOLDERS = {"sunnybrook": "sunnybrook", "acdc": "acdc-edes"}


def real_sequences(name, *, calibration, split=None):
    """The slices of real set ``name`` ("sunnybrook" | "acdc") on one side of the realism split:
    the calibration patients (``calibration=True``) or the evaluation patients.

    ``split`` defaults to :func:`real_split`. The caller checks that ``SHARED / REAL_FOLDERS[name]``
    exists (experiments skip or refuse a missing set in their own way).
    """
    split = real_split() if split is None else split
    reader = sunnybrook_sequences if name == "sunnybrook" else acdc_sequences
    return [s for s in reader(SHARED / REAL_FOLDERS[name]) if is_calibration(name, s["id"], split) == calibration]


def real_split():
    """The ``[split]`` table of ``experiments/realism.toml``: which real patients are calibration
    (tuning) data, for the experiments that do not read that file as their own settings."""
    from ..files import read_toml

    return read_toml(Path(__file__).resolve().parents[2] / "experiments" / "realism.toml")["split"]


def is_calibration(dataset, seq_id, split):
    """Whether a real sequence belongs to the patients the phantom may be calibrated on.

    Parameters
    ----------
    dataset : {"acdc", "sunnybrook"}
    seq_id : str
        ``<patient>/slice<NN>``.
    split : dict
        ``calibration_acdc`` ([first, last] patient numbers) and ``calibration_sunnybrook`` (patient
        ids): the ``[split]`` table of ``experiments/realism.toml``, the one place it is set.
    """
    if dataset == "acdc":
        lo, hi = split["calibration_acdc"]
        return lo <= acdc_patient(seq_id) <= hi
    return sunnybrook_patient(seq_id) in split["calibration_sunnybrook"]
