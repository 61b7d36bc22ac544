"""Inference with a trained OF-RNN bundle: per-pixel infarct probabilities in image coordinates.

A *bundle* is the folder ``ofrnn train`` writes: ``model.keras`` (the network of
:func:`ofrnn.discriminate.ofrnn_network`), ``ofrnn_model.json`` (frames, patch sizes, ROI and
flow sources, decision threshold, versions) and, when the fold trained them, the heart
localization layers in ``localizer/``. :func:`predict_roi` runs the motion statistical and
discriminate layers on every pixel of a prepared ROI sequence; :func:`predict_subjects` does the
whole job of ``ofrnn predict``: ROI, flow, features, network, and maps the result back to the full
frame-0 image with :func:`ofrnn.roi.uncrop`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np

from .bullseye import cohort_percent, plot_bullseye
from .files import atomic_output, content_digest, pyplot, save_figure, write_json
from . import roi as roimod
from .errors import OfrnnError
from .metrics import (CALL_MIN_PIXELS, SEGMENT_RULE, evaluate_rois, infarct_size, segment_labels, segment_percent,
                      slice_call)
from .motion import heart_patches, local_patches, tissue_centres
from .pipeline import global_motion, prepare_subject, roi_flows, subject_transform
from .wall import append_wall, load_segmenter, with_wall

MODEL_FILE = "model.keras"
CONFIG_FILE = "ofrnn_model.json"
#: sub-folder of a bundle with the fold's heart localization layers (``detector.keras`` + ``detector.json``)
LOCALIZER_DIR = "localizer"


def save_bundle(folder, network, config):
    """Write ``model.keras`` and ``ofrnn_model.json`` into ``folder`` atomically (temp + rename,
    normal file permissions, :func:`ofrnn.files.atomic_output`)."""
    folder = Path(folder)
    with atomic_output(folder / MODEL_FILE, suffix=".keras") as tmp:
        network.save(tmp)
    write_json(folder / CONFIG_FILE, config, indent=2)


def model_digest(folder):
    """:func:`ofrnn.files.content_digest` of a bundle's ``model.keras``: names the exact weights a
    prediction came from, without naming a path."""
    return content_digest(Path(folder) / MODEL_FILE)


def load_bundle(folder):
    """(network, config) of a trained bundle; :class:`OfrnnError` when it is missing or incomplete.

    A bundle trained with ``wall_geometry = "learned"`` also holds its wall segmenter (``wall.keras``),
    loaded into ``config["wall_segmenter"]`` (:mod:`ofrnn.wall`).
    """
    folder = Path(folder)
    for name in (MODEL_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise OfrnnError("not an OF-RNN model bundle (run 'ofrnn train' first)", path=folder / name)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as e:
        raise OfrnnError(f"invalid JSON ({e.msg})", path=folder / CONFIG_FILE) from None
    import keras

    try:
        network = keras.saving.load_model(folder / MODEL_FILE, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors ... for a bad file
        raise OfrnnError(f"cannot load the Keras model ({e.__class__.__name__})", path=folder / MODEL_FILE) from None
    for key in ("frames", "patch", "global_patch", "roi_margin", "flow", "threshold"):
        if key not in config:
            raise OfrnnError("missing setting", path=folder / CONFIG_FILE, field=key)
    # bundles written before these settings existed computed P_g in image axes, without a reference
    config.setdefault("global_frame", "image")
    config.setdefault("motion_reference", "none")
    config.setdefault("local_frame", "image")
    config.setdefault("wall_geometry", "none")
    if config["wall_geometry"] == "learned":
        # a Keras model, not a setting: never written back (save_bundle is given the training's own dict)
        config["wall_segmenter"] = load_segmenter(folder)
    config["model_sha256"] = model_digest(folder)
    return network, config


def roi_features(rs, config):
    """P_l(p) and P_g(p) of every ROI pixel, as a bundle's or profile's settings define them.

    Parameters
    ----------
    rs : ofrnn.pipeline.RoiSubject
        A prepared subject with ``roi`` (J, H, W) and ``flows`` (J-1, 2, H, W).
    config : dict
        ``patch``, ``local_frame``, ``global_patch``, ``global_frame``, ``motion_reference`` and
        ``wall_geometry`` (absent: "none").

    Returns
    -------
    local : float32 array (H*W, J, N*N), or (H*W, J, N*N + 2) with learned wall geometry
        P_l rows in row-major pixel order (:mod:`ofrnn.motion`), then the pixel's wall maps
        (``rs.wall``, :func:`ofrnn.wall.with_wall`) repeated at every frame.
    global_ : float32 array (H*W, J-1, F)
        P_g rows (:func:`ofrnn.pipeline.global_motion`). Training draws the same rows for its
        sampled pixels (:class:`ofrnn.pipeline.PixelBatches`).
    """
    if config["local_frame"] == "heart":
        loc = heart_patches(rs.roi, rs.flows, patch=config["patch"])
    else:
        centres = tissue_centres(rs.flows) if config["local_frame"] == "tissue" else None
        loc = local_patches(rs.roi, patch=config["patch"], centres=centres)
    glo = global_motion(rs.flows, patch=config["global_patch"], frame=config["global_frame"],
                        reference=config["motion_reference"])
    if config.get("wall_geometry", "none") != "none":
        if rs.wall is None:
            raise OfrnnError("the model reads learned wall geometry, and this subject has no wall maps",
                             field=f"subjects/{rs.id}/wall")
        loc = append_wall(loc, rs.wall.reshape(-1, rs.wall.shape[-1]))
    return loc, glo


def _forward(network):
    """The network's inference pass, compiled once per network with XLA (``jit_compile``).

    Why: on 2 CPU cores XLA fuses the LSTM-RNN's 25 steps and runs a 64x64 ROI's 4096 pixels in
    0.11 s against 0.19-0.20 s for ``predict_on_batch`` (fold 3's quick bundle, the same probabilities
    to 1e-6); its first call compiles in about 0.9 s against 0.7 s for tracing the plain graph.
    Keras leaves XLA off on CPU-only machines, and training keeps it off: XLA training steps were
    slower on CPU (``experiments/train.toml``). The function is kept on the network, so that it
    goes when the network goes, and reads the weights at each call.
    """
    fn = getattr(network, "_ofrnn_forward", None)
    if fn is None:
        import tensorflow as tf

        fn = tf.function(lambda local, global_: network([local, global_], training=False), jit_compile=True)
        object.__setattr__(network, "_ofrnn_forward", fn)  # not a Keras-tracked attribute: never saved
    return fn


def predict_roi(network, rs, config, *, timings=None):
    """Infarct probability (64, 64) of every pixel of a prepared :class:`ofrnn.pipeline.RoiSubject`.

    ``timings`` (a dict) collects seconds spent on ``features`` and ``network``.
    """
    t0 = time.perf_counter()
    loc, glo = roi_features(rs, config)
    t1 = time.perf_counter()
    batch = int(config.get("eval_batch", 4096))
    forward = _forward(network)
    prob = np.empty(len(loc), np.float32)
    for i in range(0, len(loc), batch):
        n = min(batch, len(loc) - i)
        x = [a[i:i + n] for a in (loc, glo)]
        if n < batch and len(loc) > batch:  # the last chunk padded, so every call reuses one compiled shape
            x = [np.pad(a, ((0, batch - n),) + ((0, 0),) * (a.ndim - 1)) for a in x]
        prob[i:i + n] = np.asarray(forward(*x))[:n, 1]
    t2 = time.perf_counter()
    if timings is not None:
        timings["features"] = timings.get("features", 0.0) + t1 - t0
        timings["network"] = timings.get("network", 0.0) + t2 - t1
    return prob.reshape(rs.roi.shape[1:]).astype(np.float32)


#: the frame every prediction map and overlay is drawn on
FRAME = "frame 0 (end-diastole, the ECG trigger)"

#: how :func:`subject_summary` restricts the infarct when the myocardium is unknown
NO_MYOCARDIUM = ("myocardium unknown (no contours or masks with the input): area and centroid count every "
                 "predicted pixel inside the ROI box, which may include non-myocardial pixels")


def _draw(ax, image, pred, truth, myocardium):
    import matplotlib.patches as mpatches
    from matplotlib.lines import Line2D

    ax.imshow(image, cmap="gray", interpolation="nearest")
    green = np.zeros(np.shape(pred) + (4,))
    green[..., 1] = 1.0
    green[..., 3] = 0.45 * (np.asarray(pred) > 0)
    ax.imshow(green, interpolation="nearest")
    handles = [mpatches.Patch(color=(0, 1, 0, 0.45), label="predicted infarct")]
    if myocardium is not None and np.any(myocardium):
        ax.contour(np.asarray(myocardium, dtype=float), levels=[0.5], colors="cyan", linewidths=0.7)
        handles.append(Line2D([], [], color="cyan", lw=0.7, label="myocardium"))
    if truth is not None and np.any(truth):
        ax.contour(np.asarray(truth, dtype=float), levels=[0.5], colors="yellow", linewidths=1.0)
        handles.append(Line2D([], [], color="yellow", lw=1.0, label="traced infarct"))
    ax.axis("off")
    return handles


def overlay_png(path, image, pred, *, truth=None, myocardium=None, box=None, frame=FRAME, title=None):
    """Fig. 2 style overlay: predicted infarct filled green, traced infarct outlined yellow, myocardium
    outlined cyan, with a legend and the frame named.

    Parameters
    ----------
    path : path
        PNG to write.
    image : array (H, W)
        The frame drawn (named by ``frame``).
    pred, truth, myocardium : arrays (H, W), optional
        Predicted infarct, traced infarct, myocardium (``truth`` and ``myocardium`` when known).
    box : (y0, x0, y1, x1), optional
        The ROI box in ``image`` pixels: the full frame is drawn with the box, beside a zoom on it.
    """
    from matplotlib.patches import Patch

    plt = pyplot()

    panels = 2 if box is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.6), dpi=100, squeeze=False)
    handles = _draw(axes[0, 0], image, pred, truth, myocardium)
    if box is not None:
        y0, x0, y1, x1 = (int(v) for v in box)
        axes[0, 0].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="orange",
                                           lw=1.0))
        axes[0, 0].set_title("full frame", fontsize=8)
        _draw(axes[0, 1], image, pred, truth, myocardium)
        axes[0, 1].set_xlim(x0 - 0.5, x1 - 0.5)
        axes[0, 1].set_ylim(y1 - 0.5, y0 - 0.5)
        axes[0, 1].set_title("ROI box, enlarged", fontsize=8)
        handles.append(Patch(fill=False, edgecolor="orange", label="ROI box"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle("\n".join(t for t in (title, frame) if t), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(fig, path)
    plt.close(fig)


def subject_summary(prob_img, pred_img, subject, box, *, roi_mask, called, threshold, model,
                    segment_cut=SEGMENT_RULE):
    """The per-subject JSON of ``ofrnn predict``.

    Parameters
    ----------
    prob_img, pred_img : arrays (H, W)
        Infarct probability and prediction in frame-0 image coordinates.
    subject : :class:`ofrnn.store.Subject`
        Its frame-0 myocardium (``myocardium``, or a contoured ``myocardium_t[0]``), when known,
        restricts the area and centroid: an infarct is myocardial by definition. When unknown, the
        ROI (``roi_mask``) is used and the file says so.
    box : (4,) int
        The ROI box (y0, x0, y1, x1), image pixels, half-open.
    roi_mask : array of bool (H, W)
        Pixels the network scored.
    called : bool
        The slice call (:func:`ofrnn.metrics.slice_call`, made in ROI space).
    threshold : float
    model : dict
        What names the model (profile, fold, SHA-256 of its weights file).
    segment_cut : float
        Predicted share of an AHA segment from which it is called involved (the bundle's, chosen on
        its validation subjects; :func:`ofrnn.evaluate.choose_segment_cut`).

    Returns
    -------
    dict
        ``infarct_area_mm2``, ``percent_of_myocardium`` (None when the myocardium is unknown),
        ``centroid_rc_px`` (row, col) image pixels from the centre of the top-left pixel, and
        ``centroid_rc_mm`` (row, col) = pixels times ``spacing_mm`` from the same origin (None
        without infarct), ``infarct_present`` and the rule, ``aha_segments_involved``.
    """
    sy, sx = subject.spacing_mm
    myocardium = _frame0_myocardium(subject)
    known = myocardium is not None
    region = np.asarray(myocardium, dtype=bool) if known else np.asarray(roi_mask, dtype=bool)
    inside = np.asarray(pred_img, dtype=bool) & region
    n = int(np.count_nonzero(inside))
    out = dict(id=subject.id, level=subject.level, frame=FRAME, spacing_mm=[float(sy), float(sx)],
               roi_box_rc=[int(v) for v in box], threshold=float(threshold), model=model,
               region=("myocardium (supplied with the input): predicted pixels outside it are not counted"
                       if known else NO_MYOCARDIUM),
               infarct_present=bool(called),
               call_rule=f"infarct present when >= {CALL_MIN_PIXELS} ROI pixels of the "
                         f"{'myocardium' if known else 'ROI'} are predicted infarct (64x64 ROI space)",
               infarct_pixels=n, infarct_area_mm2=float(n * sy * sx),
               predicted_pixels_outside_region=int(np.count_nonzero(pred_img)) - n,
               max_probability=float(np.nanmax(np.where(roi_mask, prob_img, np.nan))))
    if n:
        cy, cx = np.argwhere(inside).mean(axis=0)
        out["centroid_rc_px"] = [float(cy), float(cx)]
        out["centroid_rc_mm"] = [float(cy * sy), float(cx * sx)]
    else:
        out["centroid_rc_px"] = out["centroid_rc_mm"] = None
    out["percent_of_myocardium"] = infarct_size(pred_img, myocardium) if known else None
    if subject.aha_segments is not None:
        labels = segment_labels(inside, subject.aha_segments, rule=segment_cut)
        out["aha_segments_involved"] = [s for s, v in labels.items() if v]
        out["aha_rule"] = f"segment involved when >= {segment_cut:g} of its pixels are predicted infarct"
        out["aha_segment_percent"] = segment_percent(inside, subject.aha_segments)  # JSON keys become text
    else:
        out["aha_segments_involved"] = out["aha_segment_percent"] = None
        out["aha_note"] = ("AHA segments unknown for this input (they come with simulated cohorts; from real cines "
                           "they would need the myocardium and the RV insertion points), so no bull's-eye")
    return out


#: the detected LV box (epicardium, both sides) is doubtful outside this range of sides, in mm: adult
#: LV end-diastolic epicardial diameters run from about 35 mm (small hearts, apex slices near 20 mm)
#: to about 90 mm in dilated cardiomyopathy (e.g. Kawel-Boehm et al., J Cardiovasc Magn Reson 2020)
LV_BOX_MM = (15.0, 100.0)
#: ... or when the localizer's median LV probability over the detected frames is below this
MIN_LV_SCORE = 0.5


def roi_check(found, spacing_mm):
    """Is a detected LV box plausible? Its size in mm and the localizer's confidence.

    Parameters
    ----------
    found : dict
        :meth:`ofrnn.localization.Detector.localize` (``box`` in image pixels, ``frame_scores``).
    spacing_mm : (float, float)
        Row and column pixel size.

    Returns
    -------
    dict
        ``lv_box_mm`` (height, width), ``lv_score`` (median LV probability), ``warning`` (None, or
        why the ROI may not hold the LV: then every number of the slice is doubtful).
    """
    y0, x0, y1, x1 = np.asarray(found["box"], dtype=float)
    size = ((y1 - y0) * spacing_mm[0], (x1 - x0) * spacing_mm[1])
    score = float(np.median(found["frame_scores"]))
    why = []
    if not LV_BOX_MM[0] <= max(size) <= LV_BOX_MM[1]:
        why.append(f"LV box {max(size):.0f} mm across, outside {LV_BOX_MM[0]:.0f}-{LV_BOX_MM[1]:.0f} mm")
    if score < MIN_LV_SCORE:
        why.append(f"LV probability {score:.2f} < {MIN_LV_SCORE}")
    return dict(lv_box_mm=[round(v, 1) for v in size], lv_score=score, warning="; ".join(why) or None)


def _frame0_myocardium(subject):
    """The frame-0 myocardium when the input supplies it (simulator mask or a contoured frame 0), else None."""
    if subject.myocardium is not None and np.any(subject.myocardium):
        return subject.myocardium
    t = subject.myocardium_t
    if t is not None and subject.annotated.get("myocardium_t", np.ones(len(t)))[0] and np.any(t[0]):
        return t[0]
    return None


def _model_info(config):
    """What names the model in every output: profile, fold, weights digest, versions; no path."""
    keys = ("profile", "fold", "flow", "threshold", "model_sha256", "cohort_sha256")
    return ({k: config[k] for k in keys if k in config}
            | {"training_roi_source": config.get("roi"), "ofrnn": config.get("versions", {}).get("ofrnn")})


#: how the ROI of a prediction was found, in words (``roi`` of :func:`predict_subjects`)
ROI_SOURCES = {"gt": "annotated LV box (cohort lv_box or contours)",
               "detector": "heart localization layers (Fast R-CNN)"}


def predict_subjects(network, config, subjects, out, *, roi="gt", localizer=None, source_path=None,
                     total=None, progress=True):
    """Run the bundle on :class:`ofrnn.store.Subject` objects (any iterable) and write ``out``.

    ``out`` receives ``predictions.h5`` (schema in data/README.md: per subject ``infarct_prob``
    (NaN outside the ROI), ``infarct_pred``, ``roi_mask`` in full-image frame-0 coordinates, and
    ``roi_box``), ``<id>.png`` overlays and ``<id>.json`` summaries (:func:`subject_summary`),
    AHA bull's-eyes where the segments are known, NIfTI masks for NIfTI inputs (:func:`_write_nifti`);
    when the subjects carry traced infarct, myocardium and AHA masks, also ``metrics.json`` (the
    training evaluation, :func:`ofrnn.metrics.evaluate_rois`, in ROI space). ``source_path`` is
    named in error messages only: no output stores a path.

    Returns
    -------
    dict
        Per-subject timings (seconds: ``roi``, ``flow``, ``features``, ``network``, ``total``) and
        the summaries written.
    """
    from tqdm import tqdm

    out = Path(out)
    summaries, timings, labelled, nifti = [], [], [], {}
    thr = float(config["threshold"])
    cut = config.get("segment_cut", SEGMENT_RULE)  # bundles from before the choice call at the quarter
    model = _model_info(config)
    with atomic_output(out / "predictions.h5", suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["schema"] = "ofrnn predictions, version 1 (data/README.md)"
        f.attrs["model"] = json.dumps(model, sort_keys=True)
        f.attrs["threshold"] = thr
        f.attrs["frame"] = FRAME
        f.attrs["axes"] = "(row, col) image pixels of the input's frame 0; pixel (r, c) has its centre at (r, c)"
        f.attrs["roi_source"] = ROI_SOURCES[roi]
        for s in tqdm(subjects, desc="predict", unit="subject", total=total, disable=not progress):
            tm = {}
            t0 = time.perf_counter()
            if roi == "detector":
                found = localizer.localize(s.cine, mode="fast")
                tr, check = found["transform"], roi_check(found, s.spacing_mm)
            else:
                tr = subject_transform(s, roi=roi, localizer=localizer, margin=config["roi_margin"], path=source_path)
                check = None
            t1 = time.perf_counter()
            rs = prepare_subject(s, frames=config["frames"], transform=tr, flow=None, path=source_path)
            rs.flows = roi_flows(s, rs, flow=config["flow"], path=source_path)
            t2 = time.perf_counter()
            if "wall_segmenter" in config:  # learned wall geometry: part of the features' time
                rs = with_wall([rs], config["wall_segmenter"])[0]
                tm["features"] = time.perf_counter() - t2
            prob = predict_roi(network, rs, config, timings=tm)
            H, W = s.cine.shape[1:]
            roi_mask = roimod.uncrop(np.ones_like(prob), tr, (H, W), order=0, fill=0) > 0
            prob_img = np.where(roi_mask, roimod.uncrop(prob, tr, (H, W), order=1, fill=0), np.nan).astype(np.float32)
            pred_img = (np.nan_to_num(prob_img) >= thr).astype(np.uint8)
            tm.update(roi=t1 - t0, flow=t2 - t1)
            tm["total"] = time.perf_counter() - t0
            box = np.asarray(tr.box, dtype=np.int32)
            myo = _frame0_myocardium(s)
            # the call is made in ROI space, on the network's own 64x64 map, exactly as in evaluation
            region = (roimod.crop(myo, tr, order=0) > 0) if myo is not None else np.ones(prob.shape, bool)
            called = slice_call(prob >= thr, region)
            summary = subject_summary(prob_img, pred_img, s, box, roi_mask=roi_mask, called=called,
                                      threshold=thr, model=model, segment_cut=cut)
            summary["roi_source"] = ROI_SOURCES[roi]
            if check is not None:
                summary["roi_check"] = check
            _write_subject(f, s, prob_img, pred_img, roi_mask, box)
            write_json(out / f"{s.id}.json", summary, indent=2, nan_as_null=True)
            state = "infarct present" if called else "no infarct called"
            if check is not None and check["warning"]:
                state += " (ROI doubtful: see roi_check)"
            overlay_png(out / f"{s.id}.png", s.cine[0], pred_img, truth=s.infarct, myocardium=myo, box=tr.box,
                        title=f"{s.id} ({s.level}): {state}, {summary['infarct_area_mm2']:.0f} mm$^2$")
            if summary["aha_segment_percent"]:
                plot_bullseye(out / f"{s.id}_bullseye.png", summary["aha_segment_percent"],
                              title=f"{s.id} ({s.level}): predicted infarct per AHA segment")
            summaries.append(summary)
            timings.append(dict(id=s.id, **tm))
            if "nifti_affine" in s.attrs:  # a NIfTI input: its masks go back onto its own voxel grid
                nifti.setdefault(str(s.attrs.get("series_hash", "input")), []).append((s.attrs, pred_img, prob_img))
            if rs.infarct is not None and rs.myocardium is not None and rs.aha is not None:
                rs.roi = rs.flows = rs.frame0 = None  # keep only the ROI labels for scoring
                labelled.append((rs, prob))
    result = dict(subjects=summaries, timings=timings)
    if nifti:
        result["nifti"] = _write_nifti(out, nifti, f"ofrnn infarct, threshold {thr:.3f}, model "
                                                   f"{model.get('model_sha256', '?')}, frame 0 (ED)")
    per_segment = [m["aha_segment_percent"] for m in summaries if m["aha_segment_percent"]]
    if per_segment:
        mean, counts = cohort_percent(per_segment)
        plot_bullseye(out / "bullseye.png", mean, counts=counts,
                      title=f"{len(per_segment)} slices: mean predicted infarct per AHA segment")
    if labelled:
        # cohorts with traced infarcts (e.g. another simulator seed or acquisition) are scored as in training
        metrics, _ = evaluate_rois([r for r, _ in labelled], [p for _, p in labelled], thr,
                                    segment_cut=cut, intervals=True)
        metrics["provenance"] = dict(model=model, roi_source=roi)
        write_json(out / "metrics.json", metrics, indent=2, nan_as_null=True)
        result["metrics"] = metrics
    return result


def _write_nifti(out, inputs, description):
    """``infarct_pred_<hash>.nii.gz`` (uint8) and ``infarct_prob_<hash>.nii.gz`` (float32, NaN
    outside the ROI: not scored) per NIfTI input, on the input's voxel grid with its affine, so they
    overlay the cine in ITK-SNAP or 3D Slicer; ``description`` (threshold, model digest) goes into
    the header's ``descrip``. ``<hash>`` is the input's content hash (``series_hash``), never its name."""
    import nibabel as nib

    from .ingest import nifti_volume_for

    written = []
    for key, rows in inputs.items():
        for name, index, dtype in (("infarct_pred", 1, np.uint8), ("infarct_prob", 2, np.float32)):
            img = nifti_volume_for([(row[0], row[index]) for row in rows], dtype=dtype)
            img.header["descrip"] = description[:79].encode()  # the header's 80-byte text field
            path = out / f"{name}_{key}.nii.gz"
            with atomic_output(path, suffix=".nii.gz") as tmp:
                nib.save(img, tmp)
            written.append(path.name)
    return written


def _write_subject(f, subject, prob_img, pred_img, roi_mask, box):
    """One subject's group of predictions.h5 (layout: data/README.md, "Prediction files")."""
    g = f.create_group(f"subjects/{subject.id}")
    g.attrs["spacing_mm"] = np.asarray(subject.spacing_mm, dtype=np.float64)
    g.attrs["level"] = subject.level
    for name, data, units, meaning in (
            ("infarct_prob", prob_img, "probability [0, 1]", "infarct probability; NaN outside the ROI (not scored)"),
            ("infarct_pred", pred_img, "1 / 0", "1 = infarct (probability >= the file's threshold)"),
            ("roi_mask", roi_mask.astype(np.uint8), "1 / 0", "1 = pixel scored by the network (inside the ROI box)")):
        d = g.create_dataset(name, data=data, compression="gzip")
        d.attrs["units"] = units
        d.attrs["meaning"] = meaning
        d.attrs["spacing_mm"] = np.asarray(subject.spacing_mm, dtype=np.float64)
    d = g.create_dataset("roi_box", data=box)
    d.attrs["units"] = "image pixels, (y0, x0, y1, x1) half-open"


__all__ = ["MODEL_FILE", "CONFIG_FILE", "LOCALIZER_DIR", "FRAME", "LV_BOX_MM", "MIN_LV_SCORE", "roi_check", "save_bundle", "model_digest", "load_bundle", "roi_features", "predict_roi", "overlay_png",
           "subject_summary", "predict_subjects"]
