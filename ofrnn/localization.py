"""Heart localization layers: a Keras Fast R-CNN that finds the LV and crops the ROI sequence.

Sec. 2 of the paper ("Heart localization layers") and Fig. 1, left: category-independent region
proposals (:mod:`ofrnn.proposals`, selective search) -> a ZF-like convolutional network turns the
whole frame into a feature map -> an RoI max-pooling layer turns the features inside every
proposal into a fixed H x W map -> fully connected layers branch into a softmax (LV vs
background) and a bounding-box regressor (Fast R-CNN [9]). Training uses Fast R-CNN's multi-task
loss with RMSProp (Sec. 3). The best box per frame, after non-maximum suppression, becomes one box
per sequence (:func:`sequence_box`) and :mod:`ofrnn.roi` crops the 64 x 64 ROI sequence.

Detector space: every frame is normalised by its own intensity percentiles, zero-padded to a
square and resized to ``input_size`` pixels; boxes are predicted there and mapped back to image
pixels. A trained detector is a *bundle* folder: ``detector.keras`` (the Keras model, loadable
without ``safe_mode=False``) and ``detector.json`` (the preprocessing and detection settings).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from scipy import ndimage as ndi

from . import proposals as P
from ._version import __version__
from .errors import OfrnnError
from .roi import crop, crop_flow, sequence_transform
from .store import Subject

MODEL_FILE = "detector.keras"
SETTINGS_FILE = "detector.json"


# -- RoI max pooling -----------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="ofrnn")
class RoiMaxPooling(layers.Layer):
    """Fast R-CNN RoI max pooling: features inside each box -> a fixed ``pooled_size`` grid.

    Inputs ``[features, rois]``: features (B, h, w, C) of a network with stride
    ``1 / spatial_scale``; rois (B, R, 4) boxes (y0, x0, y1, x1) in input-image pixels. Each box is
    snapped to feature cells (floor of its start, ceil of its end, at least one cell), split into H x W bins of
    ``floor(i * bin) .. ceil((i + 1) * bin)`` cells, and every bin is max-pooled; an empty bin
    (outside the map) gives 0, as in Fast R-CNN [9], Sec. 2.1. Output (B, R, H, W, C).
    """

    def __init__(self, pooled_size=(6, 6), spatial_scale=1.0 / 8, **kwargs):
        super().__init__(**kwargs)
        self.pooled_size = tuple(int(v) for v in pooled_size)
        self.spatial_scale = float(spatial_scale)

    def _bins(self, start, end, n_bins, n_cells):
        # start/end (B, R) in input pixels -> first and last+1 cell (B, R, n_bins), clipped to the map
        s = ops.floor(start * self.spatial_scale)
        e = ops.maximum(ops.ceil(end * self.spatial_scale), s + 1.0)
        size = (e - s) / n_bins
        i = ops.arange(n_bins, dtype="float32")
        lo = ops.clip(s[..., None] + ops.floor(i * size[..., None]), 0, n_cells)
        hi = ops.clip(s[..., None] + ops.ceil((i + 1.0) * size[..., None]), 0, n_cells)
        return ops.cast(lo, "int32"), ops.cast(hi, "int32")

    @staticmethod
    def _levels(n):
        return int(np.floor(np.log2(max(n, 1)))) + 1

    @staticmethod
    def _range_table(x, axis, n):
        # sparse table: level k holds the max over the 2**k cells starting at each cell
        # (cells past the end repeat the last one, which a query never reaches)
        table = [x]
        for k in range(1, RoiMaxPooling._levels(n)):
            prev, step = table[-1], 2 ** (k - 1)
            idx = np.minimum(np.arange(n) + step, n - 1)
            table.append(ops.maximum(prev, ops.take(prev, idx, axis=axis)))
        return table

    @staticmethod
    def _level_and_end(lo, hi):
        # a bin [lo, hi) is the union of [lo, lo + 2**k) and [hi - 2**k, hi), k = floor(log2(hi - lo))
        n = ops.maximum(hi - lo, 1)
        k = ops.zeros_like(n)
        for j in range(1, 16):
            k = k + ops.cast(n >= 2 ** j, "int32")
        return k, ops.maximum(hi - ops.cast(2 ** k, "int32"), lo)

    def call(self, inputs):
        features, rois = inputs
        rois = ops.cast(rois, "float32")
        _, h, w, C = features.shape
        H, W = self.pooled_size
        y_lo, y_hi = self._bins(rois[..., 0], rois[..., 2], H, h)  # (B, R, H)
        x_lo, x_hi = self._bins(rois[..., 1], rois[..., 3], W, w)  # (B, R, W)
        # 2-D sparse table of range maxima over the feature map: every bin's max is then the max of
        # four look-ups (exact, and far cheaper than masking every cell for every bin). The table is
        # one flat (B * Ly * Lx * h * w, C) array, so a look-up is a plain row gather (a per-image
        # take_along_axis copies the table with its axes swapped on every call, most of the
        # detector's time)
        Ly, Lx = self._levels(h), self._levels(w)
        table = [t for tx in self._range_table(features, 2, w) for t in self._range_table(tx, 1, h)]
        table = ops.reshape(ops.stack(table, axis=1), (-1, C))
        ky, ye = self._level_and_end(y_lo, y_hi)
        kx, xe = self._level_and_end(x_lo, x_hi)
        empty = (y_hi <= y_lo)[:, :, :, None] | (x_hi <= x_lo)[:, :, None, :]  # (B, R, H, W)
        y_lo, ye = ops.minimum(y_lo, h - 1), ops.minimum(ye, h - 1)
        x_lo, xe = ops.minimum(x_lo, w - 1), ops.minimum(xe, w - 1)
        image = ops.arange(ops.shape(rois)[0], dtype="int32")[:, None, None, None] * (Lx * Ly * h * w)

        def index(ys, xs):
            level = kx[:, :, None, :] * Ly + ky[:, :, :, None]
            return ops.reshape(image + (level * h + ys[:, :, :, None]) * w + xs[:, :, None, :], (-1,))

        out = None
        for ys in (y_lo, ye):
            for xs in (x_lo, xe):
                v = ops.take(table, index(ys, xs), axis=0)
                out = v if out is None else ops.maximum(out, v)
        out = ops.reshape(out, (ops.shape(rois)[0], ops.shape(rois)[1], H, W, C))
        return ops.where(empty[..., None], ops.zeros_like(out), out)

    def compute_output_shape(self, input_shape):
        fshape, rshape = input_shape
        return (fshape[0], rshape[1], *self.pooled_size, fshape[-1])

    def get_config(self):
        return {**super().get_config(), "pooled_size": list(self.pooled_size), "spatial_scale": self.spatial_scale}


# -- network (Fig. 1, heart localization layers) ------------------------------------------------

def build_backbone(input_size, filters=(32, 64, 96, 96, 64), stride=8):
    """ZF-like convolutional network (Zeiler & Fergus 2014): conv7/2, pool3/2, conv5/2, 3 x conv3.

    ZF's five convolutions at a fraction of its width (grey-level 128 x 128 frames need far less
    than ImageNet), without its second pooling so the feature stride is 8, not 16, or with conv2
    at stride 1 for a feature stride of 4 (``stride=4``): an LV of ~15-25 detector pixels then
    still covers several feature cells.
    """
    if stride not in (4, 8):
        raise ValueError(f"feature stride must be 4 or 8, got {stride}")
    image = keras.Input((input_size, input_size, 1), name="image")
    x = layers.Conv2D(filters[0], 7, strides=2, padding="same", activation="relu", name="conv1")(image)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = layers.Conv2D(filters[1], 5, strides=stride // 4, padding="same", activation="relu", name="conv2")(x)
    for k, f in enumerate(filters[2:], start=3):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{k}")(x)
    return keras.Model(image, x, name="backbone")


def build_head(feature_shape, *, pooled_size=(6, 6), stride=8, fc_units=256, dropout=0.3):
    """RoI pooling -> fc6 -> fc7 -> sibling outputs: softmax (background, LV) and box regressor."""
    features = keras.Input(feature_shape, name="features")
    rois = keras.Input((None, 4), name="rois")
    x = RoiMaxPooling(pooled_size, 1.0 / stride, name="roi_pool")([features, rois])
    x = layers.Reshape((-1, pooled_size[0] * pooled_size[1] * feature_shape[-1]), name="flatten")(x)
    for name in ("fc6", "fc7"):
        x = layers.Dense(fc_units, activation="relu", name=name)(x)
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    cls = layers.Dense(2, activation="softmax", name="cls")(x)
    bbox = layers.Dense(4, name="bbox")(x)
    return keras.Model([features, rois], [cls, bbox], name="head")


def build_fast_rcnn(*, input_size=128, filters=(32, 64, 96, 96, 64), stride=8, pooled_size=(6, 6), fc_units=256,
                    dropout=0.3):
    """The whole detector: image + proposals -> (class probabilities, box deltas) per proposal.

    Parameters
    ----------
    input_size : int, keyword-only
        Side of the square grey-level detector input.
    filters : tuple of 5 int, keyword-only
        Channels of conv1..conv5.
    stride : {4, 8}, keyword-only
        Feature-map stride of the backbone.
    pooled_size : (int, int), keyword-only
        H x W of the RoI max-pooling output (Sec. 2: "layer hyper-parameters").
    fc_units, dropout : keyword-only
        Width of fc6 and fc7 and their dropout rate.

    Returns
    -------
    keras.Model
        Inputs ``image`` (B, S, S, 1) and ``rois`` (B, R, 4); outputs ``cls`` (B, R, 2) softmax and
        ``bbox`` (B, R, 4) normalised (t_y, t_x, t_h, t_w) of the LV class.

    References
    ----------
    Sec. 2, "Heart localization layers"; Fig. 1; Girshick, Fast R-CNN, ICCV 2015 ([9]).
    """
    backbone = build_backbone(input_size, filters, stride)
    head = build_head(backbone.output.shape[1:], pooled_size=pooled_size, stride=stride, fc_units=fc_units,
                      dropout=dropout)
    image = keras.Input((input_size, input_size, 1), name="image")
    rois = keras.Input((None, 4), name="rois")
    cls, bbox = head([backbone(image), rois])
    cls = layers.Identity(name="cls")(cls)
    bbox = layers.Identity(name="bbox")(bbox)
    return keras.Model([image, rois], {"cls": cls, "bbox": bbox}, name="fast_rcnn")


def compile_fast_rcnn(model, *, learning_rate=1e-3, bbox_weight=1.0):
    """Multi-task loss L = L_cls + lambda [u = LV] L_loc (Fast R-CNN [9], Eq. 1) with RMSProp (Sec. 3).

    L_cls is the log loss of the true class; L_loc the smooth-L1 (Huber, delta 1) loss of the box
    deltas, switched off for background RoIs by a sample weight that is 1 only for LV RoIs.
    """
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate),
                  loss={"cls": keras.losses.SparseCategoricalCrossentropy(),
                        "bbox": keras.losses.Huber(delta=1.0)},
                  loss_weights={"cls": 1.0, "bbox": bbox_weight})
    return model


# -- detector space ------------------------------------------------------------------------------

def to_detector(frame, *, input_size, percentiles):
    """A frame in detector space: percentile-normalised, square-padded, resized; plus the mapping back."""
    norm = P.normalize_intensity(frame, percentiles=percentiles)
    img, factor, offset = P.to_square(norm, input_size)
    return img, factor, offset


def boxes_to_detector(boxes, factor, offset):
    return (np.asarray(boxes, dtype=float) + np.tile(offset, 2)) / factor


def boxes_to_image(boxes, factor, offset):
    return np.asarray(boxes, dtype=float) * factor - np.tile(offset, 2)


def motion_map(cine, *, input_size, percentiles, sigma_fraction=1 / 48):
    """Where a cine changes over the cycle, in detector space: (S, S) in [0, 1].

    The temporal standard deviation of the jointly normalised frames, smoothed over a few
    millimetres and scaled to its maximum. The contracting LV (and RV) dominate it; bowel, liver,
    fat and banding, the real frames' distractors, hardly change within one cycle. With only ED
    and ES (ACDC) it is half their absolute difference.
    """
    norm = P.normalize_intensity(np.asarray(cine, dtype=np.float32), percentiles=percentiles)
    stack = np.stack([P.to_square(f, input_size)[0] for f in norm])
    m = cv2.GaussianBlur(stack.std(axis=0), (0, 0), max(input_size * sigma_fraction, 0.5))
    return (m / m.max()).astype(np.float32) if m.max() > 0 else np.ones_like(m)


#: each motion blob is also proposed grown by these factors about its centre: the temporal change
#: sits on the blood pool and the endocardium more than on the epicardium, whose box is the target
MOTION_PROPOSAL_GROW = (1.0, 1.3)


def motion_proposals(cine, *, input_size, percentiles, thresholds, min_side=3, motion=None):
    """Boxes around the regions of a cine's temporal change: extra proposals beside selective search.

    Selective search groups pixels by colour and texture, so an LV whose blood pool runs into
    its neighbours is sometimes never proposed: SC-HF-I-1's basal slice, where no fast proposal
    overlaps the LV box with IoU >= 0.5 and every detector boxes the structure below it. The LV
    is what changes most over the cycle; each connected region of :func:`motion_map` at or above
    each threshold is proposed by its bounding box, also grown by :data:`MOTION_PROPOSAL_GROW`.
    An extension of the paper's proposals (Sec. 2 proposes by selective search alone), scored by
    the same network; chosen on calibration data only (docs/results-history.md).

    Parameters
    ----------
    cine : array (T, H, W)
        With T >= 2 (one frame has no temporal change: no boxes).
    input_size : int, keyword-only
        Detector side the map is computed at (:func:`motion_map`).
    percentiles : tuple of float, keyword-only
        Intensity normalisation of :func:`motion_map`.
    thresholds : sequence of float, keyword-only
        Levels of the map (its maximum is 1) whose regions are proposed; empty: no boxes.
    min_side : int, keyword-only
        Regions narrower than this many detector pixels are dropped.
    motion : array (input_size, input_size), optional, keyword-only
        The cine's :func:`motion_map` when the caller has it already (it is not computed again).

    Returns
    -------
    float array (N, 4)
        Boxes (y0, x0, y1, x1) in image pixels, clipped to the frame.
    """
    cine = np.asarray(cine)
    if len(cine) < 2 or not len(thresholds):
        return np.zeros((0, 4))
    m = motion_map(cine, input_size=input_size, percentiles=percentiles) if motion is None else motion
    boxes = []
    for level in thresholds:
        labels, _ = ndi.label(m >= level)
        for rows, cols in ndi.find_objects(labels):
            if min(rows.stop - rows.start, cols.stop - cols.start) >= min_side:
                boxes.append([rows.start, cols.start, rows.stop, cols.stop])
    if not boxes:
        return np.zeros((0, 4))
    b = boxes_to_image(np.array(boxes, dtype=float), *P.square_mapping(cine.shape[1:], input_size))
    return P.clip_boxes(np.concatenate([P.scale_boxes(b, g) for g in MOTION_PROPOSAL_GROW]), cine.shape[1:])


#: revision of how :func:`train_detector` turns frames and boxes into a detector; raised whenever a
#: change to training (not to settings) alters what is learned, so cached fold localizers
#: (:func:`ofrnn.train.fold_localizer`) trained before it are not reused; raise
#: :data:`ofrnn.train.REPORT_VERSION` with it, or finished folds keep their old localizer. Bundles
#: record it (``training_revision``; absent: 1), and :func:`load_detector` warns about an older one.
#: 2: the augmented boxes follow the image to the sub-pixel (2026-12-04)
TRAINING_REVISION = 2

#: detection settings that only add boxes for a trained detector to score or combine its per-frame
#: scores over a cine: a trained bundle takes new values without retraining (:func:`apply_sequence_rule`)
SEQUENCE_RULE = ("fast_frames", "motion_prior", "motion_proposals")


def sequence_rule(detect):
    """The whole sequence rule a ``[detect]`` table sets, with the defaults of settings it leaves out.

    Parameters
    ----------
    detect : dict
        A ``[detect]`` table (``experiments/localization.toml``).

    Returns
    -------
    dict
        ``motion_prior`` (the exponent, :func:`motion_prior_power`; 0 when absent), ``motion_proposals``
        (a list of levels; [] when absent: selective search alone) and ``fast_frames`` when the table
        has it. Values as JSON gives them back, so a stored rule compares equal to the table's.
    """
    rule = dict(motion_prior=motion_prior_power(detect),
                motion_proposals=[float(v) for v in detect.get("motion_proposals") or ()])
    if "fast_frames" in detect:
        rule["fast_frames"] = int(detect["fast_frames"])
    return rule


def describe_sequence_rule(rule):
    """The sequence rule in words, for reports: what a cine's ROI comes from.

    Parameters
    ----------
    rule : dict
        :func:`sequence_rule`'s dict (as stored in a record or read back from JSON).

    Returns
    -------
    str
        One clause without a final full stop, e.g. "detections on 3 frames of each cine, boxes ranked
        by LV probability times the mean of m^0.25 inside them (m: the cine's temporal change), among
        selective search's proposals and the boxes of ... (motion proposals)".
    """
    gamma = float(rule.get("motion_prior", 0))
    levels = rule.get("motion_proposals") or []
    return (f"detections on {rule.get('fast_frames', '?')} frames of each cine, boxes ranked by LV probability"
            + (f" times the mean of m^{gamma:g} inside them (m: the cine's temporal change)" if gamma > 0 else
               " alone (the paper's ranking)")
            + ", among selective search's proposals"
            + (f" and the boxes of the regions where m exceeds {', '.join(f'{v:g}' for v in levels)} of its maximum "
               "(motion proposals)" if levels else " alone (the paper's proposals)"))


def apply_sequence_rule(detector, detect):
    """Set ``detector``'s :data:`SEQUENCE_RULE` settings from ``detect`` (a ``[detect]`` table).

    Returns whether any value changed.
    """
    new = {k: detect[k] for k in SEQUENCE_RULE if k in detect}
    if "motion_prior" in new:
        new["motion_prior"] = motion_prior_power(new)
    changed = any(detector.settings.get(k) != v for k, v in new.items())
    detector.settings.update(new)
    return changed


def motion_prior_power(settings):
    """The motion-prior exponent gamma of detection ``settings`` (0: the paper's per-frame ranking).

    Bundles written before the exponent stored ``motion_prior`` as a flag: false is 0, true is 1.

    Raises
    ------
    OfrnnError
        For a negative or non-numeric value.
    """
    v = settings.get("motion_prior", 0)
    try:
        gamma = float(v)  # false / true: 0 / 1
    except (TypeError, ValueError):
        gamma = np.nan
    if isinstance(v, str) or not 0 <= gamma < np.inf:
        raise OfrnnError(f"must be a number >= 0 (0: rank by LV probability alone), got {v!r}", field="motion_prior")
    return gamma


def box_means(image, boxes):
    """Mean of ``image`` (S, S) inside each of (N, 4) boxes (detector pixels), by an integral image."""
    S0, S1 = image.shape
    ii = np.zeros((S0 + 1, S1 + 1))
    ii[1:, 1:] = image.cumsum(0).cumsum(1)
    b = np.round(np.asarray(boxes, dtype=float)).astype(int)
    y0, x0 = np.clip(b[:, 0], 0, S0 - 1), np.clip(b[:, 1], 0, S1 - 1)
    y1, x1 = np.clip(np.maximum(b[:, 2], y0 + 1), 1, S0), np.clip(np.maximum(b[:, 3], x0 + 1), 1, S1)
    total = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    return total / ((y1 - y0) * (x1 - x0))


# -- augmentation (training only) ----------------------------------------------------------------

def augment(image, boxes, rng, cfg):
    """Random geometry and appearance of one detector-space frame and its boxes.

    Geometry: rotation by any angle and mirror flips (short-axis orientation conventions differ
    between scanners and data sets, e.g. ACDC arrays are transposed relative to DICOM display, so
    every orientation is anatomically plausible), zoom and shift (heart size and position in the
    field of view). Appearance: clutter (see :func:`_clutter`), gamma (non-linear contrast), a
    smooth multiplicative bias field (surface-coil shading), a random grey-level curve
    (:func:`_random_lut`), a circular field-of-view mask (as Sunnybrook's), blur and Gaussian
    noise, then the same percentile normalisation as at test time. ``boxes[0]`` is the
    ground-truth LV box.
    """
    S = image.shape[0]
    angle = rng.uniform(-180, 180) if cfg["rotate"] else 0.0
    zoom = np.exp(rng.uniform(np.log(cfg["zoom"][0]), np.log(cfg["zoom"][1])))
    # rotate and zoom about the LV centre, then move it by a random shift, kept inside the frame
    b0 = np.asarray(boxes[0], dtype=float)
    c0 = (b0[[1, 0]] + b0[[3, 2]]) / 2  # (x, y)
    half = np.hypot(b0[2] - b0[0], b0[3] - b0[1]) / 2 * zoom + 2
    dest = np.clip(c0 + rng.uniform(-cfg["shift"], cfg["shift"], 2) * S, half, max(half, S - half))
    A = cv2.getRotationMatrix2D((float(c0[0]), float(c0[1])), angle, zoom)  # maps (x, y)
    A[:, 2] += dest - c0
    if cfg["flip"] and rng.random() < 0.5:  # mirror in place: pixel x goes to S - 1 - x
        A = np.array([[-1, 0, S - 1], [0, 1, 0]], dtype=float) @ np.vstack([A, [0, 0, 1]])
    out = cv2.warpAffine(image, A, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # boxes: map the centres; the extent is that of the rotated inscribed ellipse (the LV is
    # round), because the box around a rotated box's corners would inflate a tight LV box.
    # OpenCV's A acts on pixel centres (pixel i at i), boxes on pixel edges (pixel i spans
    # [i, i + 1)), hence the half pixel on either side; without it every training box sat half a
    # detector pixel up and left of its LV on average (measured: -0.50, -0.43 px over 200 draws)
    b = np.asarray(boxes, dtype=float)
    c = ((b[:, [1, 0]] + b[:, [3, 2]]) / 2 - 0.5) @ A[:, :2].T + A[:, 2] + 0.5  # (N, xy)
    hh, ww = (b[:, 2] - b[:, 0]) / 2 * zoom, (b[:, 3] - b[:, 1]) / 2 * zoom
    t = np.deg2rad(angle)
    ey = np.sqrt((hh * np.cos(t)) ** 2 + (ww * np.sin(t)) ** 2)
    ex = np.sqrt((hh * np.sin(t)) ** 2 + (ww * np.cos(t)) ** 2)
    nb = np.stack([c[:, 1] - ey, c[:, 0] - ex, c[:, 1] + ey, c[:, 0] + ex], axis=1)
    # appearance
    yy, xx = np.mgrid[0:S, 0:S] / S
    out = _clutter(out, nb[0], rng, cfg["clutter"], yy, xx)
    field = np.ones((S, S))
    for _ in range(2):
        cy, cx = rng.uniform(-0.5, 1.5, 2)
        field += rng.uniform(0, cfg["bias"]) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(0.1, 0.6))
    img = out * field
    img = np.clip(img, 0, None) ** np.exp(rng.uniform(-np.log(cfg["gamma"]), np.log(cfg["gamma"])))
    if rng.random() < cfg["lut"]:
        img = _random_lut(P.normalize_intensity(img, percentiles=cfg["percentiles"]), rng)
    if rng.random() < cfg["fov_mask"]:
        img = _fov_mask(img, nb[0], rng, yy, xx)
    sigma = rng.uniform(0, cfg["blur"])
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, rng.uniform(0, cfg["noise"]), img.shape)
    img = P.normalize_intensity(img, percentiles=cfg["percentiles"])
    return img.astype(np.float32), P.clip_boxes(nb, (S, S))


def _clutter(img, gt, rng, n_max, yy, xx):
    """Texture and distractors the phantom lacks: real frames show textured organs, fat and vessels.

    Multiplies by smooth random texture and paints up to ``n_max`` random bright or dark ellipses
    and rings away from the ground-truth LV box, so the detector must rely on the LV's own
    appearance (a blood pool inside a myocardial ring) rather than on an empty surround.
    """
    S = img.shape[0]
    tex = cv2.GaussianBlur(rng.normal(0, 1, (S, S)).astype(np.float32), (0, 0), rng.uniform(1, 4))
    out = img * (1 + rng.uniform(0, 0.4) * tex / (tex.std() + 1e-6))
    g = gt / S
    for _ in range(rng.integers(0, n_max + 1)):
        r = rng.uniform(0.02, 0.12, 2)
        c = rng.uniform(0, 1, 2)
        if (c[0] + r[0] > g[0] - 0.02 and c[0] - r[0] < g[2] + 0.02 and c[1] + r[1] > g[1] - 0.02
                and c[1] - r[1] < g[3] + 0.02):
            continue  # would touch the LV: skip rather than corrupt the label
        d = ((yy - c[0]) / r[0]) ** 2 + ((xx - c[1]) / r[1]) ** 2
        shape = (d < 1) & (d > rng.uniform(0.3, 0.7)) if rng.random() < 0.4 else d < 1
        out = np.where(shape, rng.uniform(0, 1) * np.percentile(img, 99), out)
    return out.astype(np.float32)


def _random_lut(img, rng, knots=6):
    """Map grey levels through a random monotone piecewise-linear curve (domain randomisation).

    Tissue contrasts differ between the phantom and real scanners (e.g. blood vs fat vs
    myocardium); a random curve makes the detector rely on shapes (a round pool inside a ring)
    rather than on the phantom's grey levels. The curve never inverts contrast: in bSSFP the blood
    pool is always brighter than myocardium (T2/T1), whereas a dark pool in a ring is what the
    stomach and bowel look like, the distractors real frames are full of.
    """
    y = np.sort(rng.uniform(0, 1, knots))
    return np.interp(img, np.linspace(0, 1, knots), y).astype(np.float32)


def _fov_mask(img, gt, rng, yy, xx):
    """Black out everything outside a random circle that keeps the LV (reconstruction FOV masks)."""
    S = img.shape[0]
    c = (gt[:2] + gt[2:]) / 2 / S
    r_min = np.max(np.hypot(*(np.stack(np.meshgrid(gt[[0, 2]], gt[[1, 3]]), -1).reshape(-1, 2) / S - c).T))
    centre = c + rng.uniform(-0.1, 0.1, 2)
    r = max(rng.uniform(0.35, 0.7), r_min + np.hypot(*(centre - c)) + 0.02)
    return np.where((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < r ** 2, img, 0).astype(np.float32)


def sample_rois(gt, candidates, rng, *, n_rois, fg_fraction, fg_iou, bg_iou_hi, size):
    """Fast R-CNN minibatch RoIs for one frame: ``fg_fraction`` foreground (IoU >= ``fg_iou``), rest background.

    Candidates are the frame's proposals plus the ground-truth box (Fast R-CNN also trains on
    it), jittered and grown copies of it and random boxes, so every frame yields foreground and
    hard background RoIs. Returns rois (n_rois, 4), labels (n_rois,) 1 = LV, box targets (n_rois, 4).
    """
    gh, gw = gt[2] - gt[0], gt[3] - gt[1]
    n = 4 * n_rois
    # small jitter: foreground around the LV; large jitter and grown boxes: the hard background
    # (the LV with its neighbours, part of the LV) that fast proposals offer at test time
    sd = np.where(np.arange(n) < n // 2, 0.12, 0.4)
    jit = np.column_stack([gt[0] + rng.normal(0, 1, n) * sd * gh, gt[1] + rng.normal(0, 1, n) * sd * gw,
                           gt[2] + rng.normal(0, 1, n) * sd * gh, gt[3] + rng.normal(0, 1, n) * sd * gw])
    grown = P.scale_boxes(np.repeat(gt[None], n_rois, 0), rng.uniform(1.4, 2.6, (n_rois, 1)))
    grown += rng.normal(0, 0.3, (n_rois, 1)) * np.array([gh, gw, gh, gw]) * rng.integers(0, 2, (n_rois, 4))
    side = np.exp(rng.uniform(np.log(6), np.log(size * 0.8), (n, 2)))
    y0, x0 = rng.uniform(0, 1, n) * (size - side[:, 0]), rng.uniform(0, 1, n) * (size - side[:, 1])
    rand = np.column_stack([y0, x0, y0 + side[:, 0], x0 + side[:, 1]])
    cand = P.clip_boxes(np.concatenate([gt[None], candidates, jit, grown, rand]), (size, size))
    cand = cand[np.minimum(cand[:, 2] - cand[:, 0], cand[:, 3] - cand[:, 1]) >= 2]
    iou = P.box_iou(cand, gt)[:, 0]
    fg, bg = np.flatnonzero(iou >= fg_iou), np.flatnonzero(iou < bg_iou_hi)
    hard = np.flatnonzero((iou >= 0.1) & (iou < bg_iou_hi))
    n_fg = min(int(round(fg_fraction * n_rois)), fg.size)
    # Fast R-CNN draws background from IoU [0.1, 0.5); half of ours come from there, half from
    # anywhere (test-time proposals cover the whole frame)
    n_hard = min((n_rois - n_fg) // 2, hard.size)
    pick = np.concatenate([rng.choice(fg, n_fg, replace=False), rng.choice(hard, n_hard, replace=False),
                           rng.choice(bg, n_rois - n_fg - n_hard, replace=bg.size < n_rois)])
    rois = cand[pick]
    labels = (iou[pick] >= fg_iou).astype(np.int32)
    targets = P.encode_boxes(rois, np.broadcast_to(gt, rois.shape))
    return rois.astype(np.float32), labels, targets.astype(np.float32)


# -- the detector --------------------------------------------------------------------------------

@dataclass
class Detector:
    """A trained Fast R-CNN and the settings that must travel with it (see :func:`load_detector`)."""

    model: keras.Model
    settings: dict
    _fn: object = field(default=None, init=False, repr=False)

    @property
    def _backbone(self):
        return self.model.get_layer("backbone")

    @property
    def _head(self):
        return self.model.get_layer("head")

    def __call__(self, subject):
        """The ROI crop of a :class:`~ofrnn.store.Subject` (fast mode), as :mod:`ofrnn.pipeline` asks."""
        return self.localize(subject.cine, mode="fast")["transform"]

    def save(self, folder):
        """Write the bundle (``detector.keras`` + ``detector.json``) atomically into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".detector.", dir=folder))
        try:
            self.model.save(tmp / MODEL_FILE)
            (tmp / SETTINGS_FILE).write_text(json.dumps(self.settings, indent=2, sort_keys=True))
            for name in (MODEL_FILE, SETTINGS_FILE):
                os.replace(tmp / name, folder / name)
        finally:
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()

    def _forward(self, images, rois):
        # one traced graph for any batch and RoI count: eager Keras calls cost more than the maths
        if self._fn is None:
            S = self.settings["input_size"]
            self._fn = tf.function(lambda x, r: self.model([x, r], training=False), reduce_retracing=True,
                                   input_signature=[tf.TensorSpec((None, S, S, 1), tf.float32),
                                                    tf.TensorSpec((None, None, 4), tf.float32)])
        out = self._fn(tf.constant(images[..., None], tf.float32), tf.constant(rois, tf.float32))
        return out["cls"].numpy()[..., 1], out["bbox"].numpy() * np.asarray(self.settings["bbox_std"], np.float32)

    def score_proposals(self, images, rois, *, chunk=512):
        """LV probability (B, R) and regressed boxes (B, R, 4) of ``rois`` (B, R, 4) on detector-space ``images`` (B, S, S).

        RoI pooling sees a box only through the feature cells it snaps to (:class:`RoiMaxPooling`),
        so boxes that snap alike on every image get the same probability and box deltas: each such
        group is scored once (half of the 744 fast-mode proposals of a simulated frame) and every box
        is decoded from its own coordinates.
        """
        r32 = np.asarray(rois, dtype=np.float32)
        unique, inverse = np.unique(self._snapped(r32).transpose(1, 0, 2).reshape(r32.shape[1], -1), axis=0,
                                    return_index=True, return_inverse=True)[1:]
        inverse = inverse.reshape(-1)
        picked = r32[:, unique]
        probs, deltas = zip(*[self._forward(images, picked[:, i:i + chunk]) for i in range(0, picked.shape[1], chunk)])
        probs, deltas = np.concatenate(probs, axis=1)[:, inverse], np.concatenate(deltas, axis=1)[:, inverse]
        rois = np.asarray(rois, dtype=float)
        boxes = P.decode_boxes(rois.reshape(-1, 4), deltas.reshape(-1, 4)).reshape(rois.shape)
        return probs, boxes

    def _snapped(self, rois):
        # the feature cells RoiMaxPooling snaps each box to, in the layer's own float32 arithmetic
        scale = np.float32(self._head.get_layer("roi_pool").spatial_scale)
        start = np.floor(rois[..., :2] * scale)
        return np.concatenate([start, np.maximum(np.ceil(rois[..., 2:] * scale), start + 1)], axis=-1)

    def detect_frames(self, frames, *, mode="fast", shared_proposals=False, prior=None, extra=None):
        """Detect the LV in each frame (H, W) of ``frames``, scoring all frames in one batch.

        ``shared_proposals``: propose on the first frame only and score those boxes on every
        frame (frames of one cine share their geometry; selective search is the costly step).
        ``prior``: an optional (S, S) detector-space map in [0, 1] (:func:`motion_map`); boxes
        are then ranked by LV probability times the prior's mean inside them. ``extra``: (N, 4)
        image-pixel boxes proposed on every frame beside selective search's
        (:meth:`motion_proposals`).

        Returns
        -------
        list of dict
            Per frame: ``box`` (4,) best LV box in image pixels after box regression and NMS,
            ``score`` its LV probability (box voting: :func:`ofrnn.proposals.box_vote`),
            ``proposals`` (N, 4) image pixels, ``proposal_scores``
            (N,) LV probability of every (unregressed) proposal.
        """
        return self._rank(self._score_frames(frames, mode=mode, shared_proposals=shared_proposals, extra=extra), prior)

    def _score_frames(self, frames, *, mode, shared_proposals, extra=None):
        """Proposals, LV probabilities and regressed boxes of each frame (the costly part of detection)."""
        return self._score_frame_sets(frames, mode=mode, shared_proposals=shared_proposals, extras=[extra])[0]

    def _score_frame_sets(self, frames, *, mode, shared_proposals, extras):
        """:meth:`_score_frames` for several sets of extra boxes at once: one list of per-frame
        results per entry of ``extras`` (None or empty: selective search alone). Selective search
        runs once per frame, and every set's boxes go through the network in one pass, where boxes
        that several sets share are scored once (:meth:`score_proposals` scores each group of
        boxes that snap to the same feature cells once)."""
        s = self.settings
        frames = [np.asarray(f, dtype=np.float32) for f in frames]
        imgs, maps, rois = [], [], []
        for k, f in enumerate(frames):
            img, factor, offset = to_detector(f, input_size=s["input_size"], percentiles=s["percentiles"])
            if k == 0 or not shared_proposals or f.shape != frames[0].shape:
                found = P.region_proposals(f, mode=mode, size=s["fast_size"], grow=tuple(s["grow"]),
                                           max_proposals=s["max_proposals"])
                props = [P.unique_boxes(found, e) if e is not None and len(e) else found for e in extras]
            imgs.append(img)
            maps.append((f.shape, factor, offset, props))
            rois.append(np.concatenate([P.clip_boxes(boxes_to_detector(b, factor, offset), img.shape) for b in props]))
        n = max(len(r) for r in rois)
        # pad every frame's RoIs to one count by repeating its first RoI (scores of pads are dropped)
        batch = np.stack([np.concatenate([r, np.repeat(r[:1], n - len(r), axis=0)]) for r in rois])
        probs, boxes = self.score_proposals(np.stack(imgs), batch)
        out = [[] for _ in extras]
        for (shape, factor, offset, props), p, b in zip(maps, probs, boxes):
            ends = np.cumsum([len(q) for q in props])
            for i, (q, end) in enumerate(zip(props, ends)):
                out[i].append((shape, factor, offset, q, p[end - len(q):end], b[end - len(q):end]))
        return out

    def _rank(self, scored, prior=None):
        """The best box per scored frame: NMS and box voting on LV probability (times the prior's box mean)."""
        s = self.settings
        out = []
        for shape, factor, offset, props, p, b in scored:
            rank = p if prior is None else p * box_means(prior, b)
            keep = P.nms(b, rank, iou_threshold=s["nms_iou"], max_output=1)
            best = P.box_vote(b, rank, keep[0], iou_threshold=s["vote_iou"])
            best = P.clip_boxes(boxes_to_image(best[None], factor, offset), shape)[0]
            out.append(dict(box=best, score=float(p[keep[0]]), proposals=props, proposal_scores=p))
        return out

    def motion_map(self, cine):
        """:func:`motion_map` of a cine in this detector's space."""
        return motion_map(cine, input_size=self.settings["input_size"], percentiles=self.settings["percentiles"])

    def motion_proposals(self, cine, motion=None, levels=None):
        """:func:`motion_proposals` of a cine at the ``motion_proposals`` thresholds (none when unset),
        or at ``levels`` when given; ``motion``: its :meth:`motion_map`, when already computed."""
        thresholds = (self.settings.get("motion_proposals") or ()) if levels is None else levels
        if not thresholds:  # bundles before the setting, and the paper's selective search alone
            return np.zeros((0, 4))
        return motion_proposals(cine, input_size=self.settings["input_size"], percentiles=self.settings["percentiles"],
                                thresholds=thresholds, motion=motion)

    def detect(self, frame, *, mode="fast"):
        """Detect the LV in one frame (H, W); see :meth:`detect_frames`."""
        return self.detect_frames([frame], mode=mode)[0]

    def localize(self, cine, *, mode="fast", motion_prior=None):
        """One LV box and one 64 x 64 crop transform for a whole cine (T, H, W).

        ``fast`` detects on ``fast_frames`` frames spread over the cycle (frame 0 = ED first) with
        the fast proposals of frame 0 shared by all; ``quality`` on every frame with its own
        quality-mode proposals; both add the cine's :meth:`motion_proposals` when the
        ``motion_proposals`` setting has thresholds. :func:`sequence_box` merges the per-frame boxes. With a
        ``motion_prior`` exponent gamma > 0 (an extension of the paper's per-frame detector) and two
        or more frames, boxes are ranked by LV probability times the mean of m ** gamma inside them,
        m the cine's :func:`motion_map`; gamma = 0 ranks by LV probability alone (the paper's rule).
        ``motion_prior``, when given, overrides the setting (:func:`motion_prior_power`).
        Returns a dict with ``box``, ``transform`` (:class:`ofrnn.roi.RoiTransform`),
        ``frames``, ``frame_boxes`` and ``frame_scores``.
        """
        gamma = motion_prior_power(self.settings if motion_prior is None else dict(motion_prior=motion_prior))
        return self.localize_variants(cine, mode=mode, motion_priors=(gamma,))[gamma]

    def localize_variants(self, cine, *, mode="fast", motion_priors=(0.0, 1.0), fast_frames=None):
        """:meth:`localize` for several motion-prior exponents from one detection pass: {gamma: result}.

        Proposals and network scores do not depend on the prior, only the ranking does.
        ``fast_frames`` overrides the setting of that name.
        """
        cine = _as_cine(cine)
        if mode == "fast":
            n = self.settings["fast_frames"] if fast_frames is None else fast_frames
            grid = self.localize_grid(cine, frame_counts=(n,), motion_priors=motion_priors)
            return {g: grid[n, g] for g in motion_priors}
        frames = np.arange(cine.shape[0])
        m = self.cine_motion(cine, motion_priors)
        extra = self.motion_proposals(cine, motion=m)
        scored = [self._score_frames([cine[t]], mode=mode, shared_proposals=False, extra=extra)[0] for t in frames]
        return {g: self._sequence(self._rank(scored, p), frames) for g, p in self.prior_maps(m, motion_priors).items()}

    def localize_grid(self, cine, *, frame_counts, motion_priors=(0.0, 1.0), proposal_sets=None):
        """Fast-mode :meth:`localize` for every (frame count, motion-prior exponent): {(n, gamma): result}.

        The frames of all counts (``n`` spread over the cycle, frame 0 first) are scored in one pass
        on frame 0's proposals; only which frames are merged, and how boxes are ranked, differ.
        ``proposal_sets``: tuples of motion-proposal levels (() for none) to try in place of the
        ``motion_proposals`` setting, all in the same pass; the result is then keyed
        (n, gamma, levels).
        """
        cine = _as_cine(cine)
        T = cine.shape[0]
        sets = [None] if proposal_sets is None else [tuple(p) for p in proposal_sets]
        chosen = {n: np.unique(np.linspace(0, T - 1, min(T, n)).round().astype(int)) for n in frame_counts}
        union = np.unique(np.concatenate(list(chosen.values())))
        m = self.cine_motion(cine, motion_priors, proposal_sets=None if proposal_sets is None else sets)
        scored = self._score_frame_sets(cine[union], mode="fast", shared_proposals=True,
                                        extras=[self.motion_proposals(cine, motion=m, levels=p) for p in sets])
        priors = self.prior_maps(m, motion_priors)
        out = {}
        for p, per_frame in zip(sets, scored):
            by_frame = dict(zip(union.tolist(), per_frame))
            for n, frames in chosen.items():
                for g in motion_priors:
                    ranked = self._rank([by_frame[t] for t in frames.tolist()], priors[g])
                    out[(n, g) if p is None else (n, g, p)] = self._sequence(ranked, frames)
        return out

    def cine_motion(self, cine, motion_priors, proposal_sets=None):
        """The cine's :meth:`motion_map`, computed once for what reads it: a motion prior exponent in
        ``motion_priors`` above 0, or motion proposals (the setting's, or any of ``proposal_sets``);
        None when neither does, or for one frame."""
        proposals = bool(self.settings.get("motion_proposals")) if proposal_sets is None else any(proposal_sets)
        needed = any(g > 0 for g in motion_priors) or proposals
        return self.motion_map(cine) if needed and len(cine) > 1 else None

    @staticmethod
    def prior_maps(m, motion_priors):
        """{gamma: m ** gamma} for each exponent, the ``prior`` :meth:`detect_frames` ranks by; None
        for gamma 0 or without a map ``m`` (:meth:`cine_motion`): LV probability alone."""
        return {g: m ** g if g > 0 and m is not None else None for g in motion_priors}

    def _sequence(self, dets, frames):
        """One box and crop transform from the per-frame detections (:func:`sequence_box`)."""
        boxes = np.array([d["box"] for d in dets])
        scores = np.array([d["score"] for d in dets])
        box = sequence_box(boxes, scores, min_iou=self.settings["sequence_min_iou"])
        ibox = np.round(box).astype(int)
        ibox[2:] = np.maximum(ibox[2:], ibox[:2] + 1)
        transform = sequence_transform(ibox, margin=self.settings["roi_margin"])
        return dict(box=box, transform=transform, frames=frames, frame_boxes=boxes, frame_scores=scores)


def _as_cine(cine):
    cine = np.asarray(cine)
    if cine.ndim != 3 or cine.shape[0] < 1:
        raise ValueError(f"a cine must be a (T, H, W) array, got shape {cine.shape}")
    return cine


#: annotation fields cropped with nearest-neighbour sampling (labels and masks)
_LABEL_FIELDS = ("infarct", "myocardium", "aha_segments", "myocardium_t", "lv_cavity_t", "flow_valid")


def crop_subject(subject, found, *, mode):
    """The ROI subject of ``subject``: cine and annotations cropped by ``found["transform"]``.

    ``found`` is :meth:`Detector.localize`'s result. Spacing becomes that of ROI pixels; ``lv_box``
    rows are mapped into the ROI (rows of -1 where the box falls outside it); the crop is recorded
    in the attrs ``roi_transform``, ``roi_box``, ``roi_score``, ``roi_image_shape``,
    ``localize_mode`` so predictions map back to image pixels.
    """
    t = found["transform"]
    arrays = {"cine": crop(subject.cine, t, order=1).astype(np.float32)}
    for name in _LABEL_FIELDS:
        if getattr(subject, name) is not None:
            arrays[name] = crop(getattr(subject, name), t, order=0)
    if subject.flow is not None:
        arrays["flow"] = crop_flow(subject.flow, t).astype(np.float32)
    if subject.lv_box is not None:
        arrays["lv_box"] = _box_to_roi(subject.lv_box, t)
    attrs = dict(subject.attrs, roi_transform=json.dumps(t.to_dict()), roi_box=json.dumps(np.round(found["box"], 2).tolist()),
                 roi_score=float(np.mean(found["frame_scores"])), roi_image_shape=json.dumps(list(subject.cine.shape[1:])),
                 localize_mode=mode)
    return Subject(id=subject.id, spacing_mm=tuple(float(v) * t.scale for v in subject.spacing_mm), level=subject.level,
                   frame_times_ms=subject.frame_times_ms, annotated=dict(subject.annotated), attrs=attrs, **arrays)


def _box_to_roi(boxes, t):
    out = np.full(boxes.shape, -1, dtype=np.int32)
    known = np.all(boxes >= 0, axis=1)
    b = (boxes[known].astype(float) - np.tile([t.y0, t.x0], 2)) / t.scale
    b = np.clip(np.concatenate([np.floor(b[:, :2]), np.ceil(b[:, 2:])], axis=1), 0, t.size).astype(np.int32)
    b[(b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])] = -1
    out[known] = b
    return out


def sequence_box(boxes, scores, *, min_iou=0.3):
    """One LV box for a sequence from its per-frame detections.

    Rule: take the score-weighted median box (per coordinate) as the consensus, then the union of
    the per-frame boxes that overlap it by IoU >= ``min_iou``. The union covers the LV at its
    largest (end-diastole) and through the cycle's motion, while a frame whose detection went
    astray (low overlap with the consensus) cannot drag the crop away.
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    w = np.asarray(scores, dtype=float) + 1e-6
    med = np.array([_weighted_median(boxes[:, k], w) for k in range(4)])
    agree = P.box_iou(boxes, med)[:, 0] >= min_iou
    if not agree.any():
        return med
    b = boxes[agree]
    return np.concatenate([b[:, :2].min(0), b[:, 2:].max(0)])


def _weighted_median(v, w):
    o = np.argsort(v)
    c = np.cumsum(w[o])
    return float(v[o][np.searchsorted(c, c[-1] / 2)])


def load_detector(folder):
    """Load a detector bundle written by :meth:`Detector.save` (or ``make localize``)."""
    folder = Path(folder)
    mpath, spath = folder / MODEL_FILE, folder / SETTINGS_FILE
    for p in (mpath, spath):
        if not p.is_file():
            raise OfrnnError("missing in the model folder (train one with 'make localize')", path=p)
    try:
        settings = json.loads(spath.read_text())
    except json.JSONDecodeError as e:
        raise OfrnnError(f"not valid JSON ({e.msg}, line {e.lineno})", path=spath) from None
    for key in ("input_size", "percentiles", "bbox_std", "grow", "max_proposals", "nms_iou", "vote_iou", "fast_size",
                "fast_frames", "sequence_min_iou", "roi_margin"):
        if key not in settings:
            raise OfrnnError("missing setting", path=spath, field=key)
    revision = settings.get("training_revision", 1)  # bundles before revision 2 do not record it
    if revision < TRAINING_REVISION:
        warnings.warn(f"{spath}: detector of training revision {revision}, older than {TRAINING_REVISION} (boxes "
                      "biased about one pixel up and left before 2026-12-04); retrain it for this version's boxes",
                      stacklevel=2)
    try:
        model = keras.saving.load_model(mpath, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors ... for a bad file
        raise OfrnnError(f"cannot load the Keras model ({e.__class__.__name__})", path=mpath) from None
    return Detector(model, settings)


# -- training ------------------------------------------------------------------------------------

def _training_batches(images, gts, cands, cfg, rng):
    """Endless (inputs, targets, sample weights) batches of augmented frames with sampled RoIs."""
    tr, aug = cfg["train"], cfg["augment"]
    S = cfg["model"]["input_size"]
    std = np.asarray(cfg["detect"]["bbox_std"], dtype=np.float32)
    B, R = tr["images_per_batch"], tr["rois_per_image"]
    while True:
        xb = np.zeros((B, S, S, 1), np.float32)
        rb = np.zeros((B, R, 4), np.float32)
        lb = np.zeros((B, R), np.int32)
        tb = np.zeros((B, R, 4), np.float32)
        for k, i in enumerate(rng.integers(0, len(images), B)):
            boxes = np.concatenate([gts[i][None], cands[i]])
            img, nb = augment(images[i], boxes, rng, aug) if aug["enabled"] else (images[i], boxes)
            rois, labels, targets = sample_rois(nb[0], nb[1:], rng, n_rois=R, fg_fraction=tr["fg_fraction"],
                                                fg_iou=tr["fg_iou"], bg_iou_hi=tr["bg_iou_hi"], size=S)
            xb[k, :, :, 0], rb[k], lb[k], tb[k] = img, rois, labels, targets / std
        yield (xb, rb), {"cls": lb, "bbox": tb}, {"cls": np.ones_like(lb, np.float32), "bbox": lb.astype(np.float32)}


def train_detector(frames, boxes, cfg, *, seed=0, progress=True, initial=None):
    """Train the Fast R-CNN on frames with ground-truth LV boxes.

    Parameters
    ----------
    frames : sequence of arrays (H, W)
        Training frames (any size; each is mapped to detector space).
    boxes : array (N, 4)
        Their ground-truth LV boxes (y0, x0, y1, x1) in image pixels.
    cfg : dict
        The ``[model]``, ``[train]``, ``[augment]`` and ``[detect]`` tables of
        ``experiments/localization.toml``.
    seed : int, keyword-only
        Seeds weights, augmentation and RoI sampling.
    initial : Detector, optional, keyword-only
        Start from a copy of this detector's weights (fine-tuning) instead of a fresh network;
        the architecture settings of ``cfg["model"]`` must match it.

    Returns
    -------
    (Detector, dict)
        The detector and a training record (loss history, seconds).
    """
    if len(frames) == 0 or len(frames) != len(boxes):
        raise ValueError("need as many ground-truth boxes as frames, and at least one frame")
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    m, d, tr = cfg["model"], cfg["detect"], cfg["train"]
    S = m["input_size"]
    t0 = time.perf_counter()
    images, gts, cands = [], [], []
    for f, b in zip(frames, boxes):
        img, factor, offset = to_detector(f, input_size=S, percentiles=d["percentiles"])
        # proposals of the frame itself: the background RoIs Fast R-CNN sees at test time
        props = P.region_proposals(img, mode="fast", size=S, grow=tuple(d["grow"]))
        images.append(img)
        gts.append(boxes_to_detector(np.asarray(b, float)[None], factor, offset)[0])
        cands.append(props)
    t_prop = time.perf_counter() - t0
    net = build_fast_rcnn(input_size=S, filters=tuple(m["filters"]), stride=m["stride"],
                          pooled_size=tuple(m["pooled_size"]), fc_units=m["fc_units"], dropout=m["dropout"])
    if initial is not None:
        net.set_weights(initial.model.get_weights())
    model = compile_fast_rcnn(net, learning_rate=tr["learning_rate"], bbox_weight=tr["bbox_weight"])
    B, R = tr["images_per_batch"], tr["rois_per_image"]
    spec = ((tf.TensorSpec((B, S, S, 1), tf.float32), tf.TensorSpec((B, R, 4), tf.float32)),
            {"cls": tf.TensorSpec((B, R), tf.int32), "bbox": tf.TensorSpec((B, R, 4), tf.float32)},
            {"cls": tf.TensorSpec((B, R), tf.float32), "bbox": tf.TensorSpec((B, R), tf.float32)})
    ds = tf.data.Dataset.from_generator(lambda: _training_batches(images, gts, cands, cfg, rng),
                                        output_signature=spec).prefetch(4)
    hist = model.fit(ds, epochs=tr["epochs"], steps_per_epoch=tr["steps_per_epoch"],
                     verbose=1 if progress else 0, shuffle=False)  # the generator draws at random itself
    settings = dict(input_size=S, percentiles=list(d["percentiles"]), bbox_std=list(d["bbox_std"]),
                    grow=list(d["grow"]), max_proposals=d["max_proposals"], nms_iou=d["nms_iou"], vote_iou=d["vote_iou"],
                    fast_size=d["fast_size"], sequence_min_iou=d["sequence_min_iou"], roi_margin=d["roi_margin"],
                    **sequence_rule(d), trained_on=len(frames), seed=seed, ofrnn_version=__version__,
                    keras_version=keras.__version__, training_revision=TRAINING_REVISION)
    record = dict(history={k: [float(v) for v in vs] for k, vs in hist.history.items()},
                  proposal_seconds=t_prop, seconds=time.perf_counter() - t0)
    return Detector(model, settings), record
