"""Learned wall geometry (beyond the paper): where across the myocardial wall each ROI pixel lies.

OF-RNN's P_l patches show the wall, but the network reads a pixel's place across it poorly: most
of its remaining errors are the transmural extent of partial infarcts (docs/design-choices.md, "Where the
remaining errors sit"). Told the traced wall's depth and thickness as two more values at every
LSTM step (an oracle, for a diagnosis only), the faithful model's validation Dice rose from 0.799
to 0.832 on folds 3, 0 and 6 (2026-12-04). This module estimates the same two maps from the cine
alone, so prediction needs no traced mask: a small U-Net (Ronneberger et al. 2015) finds the
end-diastolic myocardium in the 64x64 ROI, trained per fold on the training subjects' traced
masks only, and the maps follow from distance transforms of its mask.

``wall_geometry = "learned"`` (experiments/train.toml) turns it on; the fold's segmenter is saved
in the model bundle (``wall.keras``), so ``ofrnn predict`` computes the maps itself.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .errors import OfrnnError

#: the ``wall_geometry`` setting: none (the paper), or estimated by the fold's segmenter
WALL_GEOMETRY = ("none", "learned")
#: the maps appended to every step of P_l, in this order
WALL_CHANNELS = ("depth", "thickness")
#: wall thickness is given in units of this many ROI pixels, so that both maps are of order 1
THICKNESS_UNIT = 10.0
#: the segmenter in a model bundle
SEGMENTER_FILE = "wall.keras"


def wall_distances(myocardium):
    """Distances of every pixel to the LV cavity and to the outside of the myocardial ring.

    Parameters
    ----------
    myocardium : bool array (H, W)
        The myocardium at one frame (non-empty).

    Returns
    -------
    d_endo, d_epi : float arrays (H, W), or None
        Euclidean distance (pixels, :func:`scipy.ndimage.distance_transform_edt`) to the nearest
        cavity pixel, and to the nearest pixel outside the filled ring. The cavity is what the ring
        encloses; when the ring is open (a basal slice cut through the outflow tract, or a
        segmentation gap), the pixels closer to the ring's centroid than its median radius. None
        when even that finds no cavity (a mask of a pixel or a thin line): no wall to measure.
    """
    myo = np.asarray(myocardium, dtype=bool)
    filled = ndi.binary_fill_holes(myo)
    cav = filled & ~myo
    if not cav.any():
        cy, cx = np.argwhere(myo).mean(0)
        yy, xx = np.mgrid[0:myo.shape[0], 0:myo.shape[1]]
        r = np.hypot(yy - cy, xx - cx)
        cav = (r < np.median(r[myo])) & ~myo
        filled = myo | cav
        if not cav.any():
            return None
    return ndi.distance_transform_edt(~cav), ndi.distance_transform_edt(filled)


def wall_maps(myocardium):
    """Transmural depth and wall thickness of every pixel, from a myocardium mask.

    Parameters
    ----------
    myocardium : bool array (H, W)

    Returns
    -------
    float32 array (H, W, 2)
        ``depth`` d_endo / (d_endo + d_epi) in [0, 1]: 0 in the cavity, rising across the wall from
        about 1 / (1 + wall thickness) at its first pixel to 1 at the epicardium and outside; and
        ``thickness`` d_endo + d_epi - 1 in units of :data:`THICKNESS_UNIT` ROI pixels, clipped to
        [0, 3] (the cavity's and the outside's values are defined, but only the wall's mean
        anything). A mask with no wall to measure (empty, or without a cavity:
        :func:`wall_distances`) gives depth 0.5 and thickness 0 everywhere: "unknown", the same
        for every pixel.
    """
    myo = np.asarray(myocardium, dtype=bool)
    distances = wall_distances(myo) if myo.any() else None
    if distances is None:
        return np.stack([np.full(myo.shape, 0.5), np.zeros(myo.shape)], axis=-1).astype(np.float32)
    d_endo, d_epi = distances
    depth = d_endo / np.maximum(d_endo + d_epi, 1e-6)
    thick = np.clip((d_endo + d_epi - 1) / THICKNESS_UNIT, 0, 3)
    return np.stack([np.clip(depth, 0, 1), thick], axis=-1).astype(np.float32)


def append_wall(local, wall):
    """Local inputs with each pixel's wall values appended to every frame.

    Parameters
    ----------
    local : float32 array (n, J, M)
        P_l rows of n pixels (M = N*N values a frame).
    wall : float32 array (n, K)
        The same pixels' wall values (:data:`WALL_CHANNELS`), which do not change over the cycle.

    Returns
    -------
    float32 array (n, J, M + K)
    """
    return np.concatenate([local, np.broadcast_to(wall[:, None], (len(wall), local.shape[1], wall.shape[1]))], axis=2)


def segmenter_inputs(roi):
    """The segmenter's three input channels of a normalised ROI sequence.

    Parameters
    ----------
    roi : float array (J, H, W)
        Frame 0 is end-diastole (:mod:`ofrnn.pipeline`).

    Returns
    -------
    float32 array (H, W, 3)
        End-diastole, the temporal mean and the temporal standard deviation. Why the last two: the
        blood pool and the wall's borders move over the cycle, so the sd outlines the wall where
        one frame's contrast is weak.
    """
    roi = np.asarray(roi, dtype=np.float32)
    return np.stack([roi[0], roi.mean(0), roi.std(0)], axis=-1)


def myocardium_unet(*, size=64, channels=3, filters=(16, 32, 64)):
    """A small U-Net: (batch, size, size, channels) -> (batch, size, size, 1) myocardium probability.

    Two 3x3 ReLU convolutions per level, 2x2 max-pooling down, nearest upsampling and the skip
    connection up (Ronneberger, Fischer and Brox, "U-Net: convolutional networks for biomedical
    image segmentation", MICCAI 2015), at a width that trains in well under a minute on 2 CPU
    cores.

    Raises
    ------
    ValueError
        When ``size`` is not divisible by 2 ** (len(filters) - 1): the skips would not line up.
    """
    import keras

    if size % 2 ** (len(filters) - 1):
        raise ValueError(f"size {size} is not divisible by {2 ** (len(filters) - 1)}")

    def block(h, f, name):
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"{name}_conv_1")(h)
        return keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"{name}_conv_2")(h)

    x_in = keras.Input((size, size, channels), name="roi_channels")
    h, skips = x_in, []
    for i, f in enumerate(filters[:-1]):
        h = block(h, f, f"down_{i + 1}")
        skips.append(h)
        h = keras.layers.MaxPooling2D(name=f"pool_{i + 1}")(h)
    h = block(h, filters[-1], "bottom")
    for i, (f, skip) in reversed(list(enumerate(zip(filters[:-1], skips)))):
        h = keras.layers.UpSampling2D(name=f"up_{i + 1}")(h)
        h = block(keras.layers.Concatenate(name=f"skip_{i + 1}")([h, skip]), f, f"up_{i + 1}")
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="myocardium")(h)
    return keras.Model(x_in, out, name="wall_segmenter")


def _dihedral(a):
    """The 8 turns and reflections of a (n, H, W, ...) stack, concatenated: the myocardium's
    geometry, and so its mask, is the same under each."""
    turns = [np.rot90(a, k, axes=(1, 2)) for k in range(4)]
    return np.concatenate(turns + [t[:, ::-1] for t in turns])


def fit_segmenter(subjects, *, seed, epochs=15, batch_size=32, learning_rate=2e-3):
    """Train the myocardium segmenter on prepared subjects' end-diastolic traced masks.

    Parameters
    ----------
    subjects : list of ofrnn.pipeline.RoiSubject
        Training subjects only (never validation or test ones), each with ``roi`` and ``myocardium``.
    seed : int
        Seeds the weights and the batch order.
    epochs, batch_size, learning_rate : keyword-only
        Adam on binary cross-entropy over the subjects' 8 dihedral copies. Fifteen epochs: on
        fold 3 (92 subjects, 38 s) the validation subjects' loss was still level with the
        training loss (0.034 vs 0.031), and their myocardium Dice was 0.94 (a one-off script).

    Returns
    -------
    keras.Model, float
        The segmenter and its training time (s).

    Raises
    ------
    OfrnnError
        When a subject has no traced myocardium.
    """
    import keras

    missing = [rs.id for rs in subjects if rs.myocardium is None]
    if missing or not subjects:
        raise OfrnnError(f"the wall segmenter needs traced myocardium masks; missing for {missing[:3] or 'all'}",
                         field="wall_geometry")
    x = _dihedral(np.stack([segmenter_inputs(rs.roi) for rs in subjects]))
    y = _dihedral(np.stack([rs.myocardium for rs in subjects]).astype(np.float32)[..., None])
    keras.utils.set_random_seed(seed)
    model = myocardium_unet(size=x.shape[1], channels=x.shape[-1])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True)
    return model, time.perf_counter() - t0


def estimate_wall(segmenter, rois):
    """Wall maps (:func:`wall_maps`) of the myocardium the segmenter finds (probability > 0.5).

    Parameters
    ----------
    segmenter : keras.Model
        From :func:`fit_segmenter` or :func:`load_segmenter`.
    rois : sequence of float arrays (J, H, W)
        Normalised ROI sequences of the segmenter's side (64x64 ROIs, :mod:`ofrnn.roi`); another
        side makes Keras raise a ValueError.

    Returns
    -------
    list of float32 arrays (H, W, 2)
    """
    if not len(rois):
        return []
    x = np.stack([segmenter_inputs(r) for r in rois])
    prob = np.asarray(segmenter.predict_on_batch(x))[..., 0]
    return [wall_maps(p > 0.5) for p in prob]


def with_wall(subjects, segmenter):
    """Prepared subjects with their wall maps.

    Parameters
    ----------
    subjects : iterable of ofrnn.pipeline.RoiSubject
    segmenter : keras.Model

    Returns
    -------
    list of ofrnn.pipeline.RoiSubject
        Copies with ``wall`` (H, W, 2) from :func:`estimate_wall`; the inputs are not changed.
    """
    import dataclasses

    subjects = list(subjects)
    maps = estimate_wall(segmenter, [rs.roi for rs in subjects])
    return [dataclasses.replace(rs, wall=m) for rs, m in zip(subjects, maps)]


def save_segmenter(folder, segmenter):
    """Write the segmenter as ``folder/wall.keras``, atomically (:func:`ofrnn.files.atomic_output`)."""
    from .files import atomic_output

    with atomic_output(Path(folder) / SEGMENTER_FILE, suffix=".keras") as tmp:
        segmenter.save(tmp)


def load_segmenter(folder):
    """The bundle's wall segmenter; :class:`OfrnnError` when it is missing or unreadable."""
    import keras

    path = Path(folder) / SEGMENTER_FILE
    if not path.is_file():
        raise OfrnnError("missing: the bundle was trained with wall_geometry 'learned'", path=path)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors ... for a bad file
        raise OfrnnError(f"cannot load the Keras model ({e.__class__.__name__})", path=path) from None


__all__ = ["WALL_GEOMETRY", "WALL_CHANNELS", "THICKNESS_UNIT", "SEGMENTER_FILE", "wall_distances", "wall_maps",
           "append_wall", "segmenter_inputs", "myocardium_unet", "fit_segmenter", "estimate_wall", "with_wall", "save_segmenter",
           "load_segmenter"]
