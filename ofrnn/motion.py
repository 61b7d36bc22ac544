"""Local motion features: per-pixel patch sequences and the LSTM-RNN of the motion statistical layers.

Paper Sec. 2, "Motion statistical layers": for every pixel p of the 64x64 ROI sequence
I = (I_1, ..., I_J), P_l(p) is its N x N neighbourhood (N = 11) in each of the J = 25 frames,
one vector of N*N intensities per frame. A four-layer LSTM-RNN with dropout on its inputs
(Eqs. 1-3) reads that sequence and its last hidden state is the local motion feature.

The patches are built on the fly from a view of the (edge-padded) ROI sequence, so a cohort's
patches (64*64 pixels x J x N*N values per slice) never exist in memory at once: callers ask
for all pixels of one sequence (:func:`local_patches`) or for a batch of pixels drawn from many
sequences (:func:`patch_windows` + fancy indexing).

The paper leaves open where the patch sits and how it is turned (``local_frame``):

* ``"image"`` keeps it at p, on the image axes, in every frame (the literal reading);
* ``"tissue"`` centres it on p traced through the flows, rounded to the nearest pixel
  (:func:`tissue_centres`), so a wall pixel's patch shows the same tissue thickening, or not, in
  every frame instead of the wall sliding through a fixed window;
* ``"heart"`` follows the tissue at sub-pixel precision and turns the patch into the heart's
  frame (:func:`heart_patches`): its rows run along the radial direction from the LV centre,
  its columns along the circumferential one. Every wall pixel then sees its wall as a band
  across the patch, endocardium above, epicardium below, whatever its angle about the LV, so
  thickening is the band widening between the same rows in every sector. It is to P_l what the
  heart frame of :mod:`ofrnn.flow.trajectory` is to P_g.

TensorFlow is imported only by the model builder, so the NumPy half stays light.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: patch sizes studied in the paper's Fig. 3(e)
PATCH_RANGE = (3, 17)
#: where P_l(p)'s patch sits and how it turns in each frame: at p, at p traced through the flows, or
#: at p traced and turned into the heart's radial / circumferential frame (module docstring)
LOCAL_FRAMES = ("image", "tissue", "heart")


def _check_patch(patch):
    if int(patch) != patch or patch % 2 == 0 or not PATCH_RANGE[0] <= patch <= PATCH_RANGE[1]:
        raise ValueError(f"patch must be an odd integer in {PATCH_RANGE[0]}..{PATCH_RANGE[1]}, got {patch}")
    return int(patch)


def patch_windows(roi_seqs, *, patch=11):
    """A read-only view of every pixel's N x N neighbourhood in every frame.

    Parameters
    ----------
    roi_seqs : array (..., T, H, W)
        One ROI sequence, or a stack of them.
    patch : int, keyword-only
        Odd neighbourhood side N (3..17); the paper uses 11.

    Returns
    -------
    windows : view (..., T, H, W, N, N)
        ``windows[..., t, y, x, :, :]`` is the neighbourhood of pixel (y, x) in frame t; the
        sequence is edge-padded by N // 2 so border pixels see replicated intensities. Index
        it with pixel coordinates to get patches; only the padded copy is allocated.
    """
    patch = _check_patch(patch)
    return sliding_window_view(pad_for_patches(roi_seqs, patch=patch), (patch, patch), axis=(-2, -1))


def pad_for_patches(roi_seqs, *, patch=11):
    """ROI sequences (..., T, H, W) edge-padded by N // 2 on both image axes, float32 (..., T, H+N-1, W+N-1).

    The array behind :func:`patch_windows`: the N x N neighbourhood of pixel (y, x) is
    ``padded[..., y:y+N, x:x+N]``. Raises ValueError for a bad ``patch`` or fewer than 3 axes.
    """
    patch = _check_patch(patch)
    seqs = np.asarray(roi_seqs, dtype=np.float32)
    if seqs.ndim < 3:
        raise ValueError(f"roi_seqs must be (..., T, H, W), got shape {seqs.shape}")
    r = patch // 2
    return np.pad(seqs, [(0, 0)] * (seqs.ndim - 2) + [(r, r), (r, r)], mode="edge")


def tissue_centres(flows):
    """Nearest-pixel centres (T, H*W, 2) of every frame-0 pixel traced through the flows (J-1, 2, H, W).

    The patch centres of ``local_frame="tissue"``: row-major pixels of frame 0 followed with
    :func:`ofrnn.flow.trajectory.trace` and rounded to the pixel grid, clipped to the ROI.
    """
    from .flow.trajectory import trace

    flows = np.asarray(flows)
    H, W = flows.shape[2:]
    p = np.rint(trace(flows)).astype(np.intp)  # (T, H, W, 2)
    p[..., 0] = np.clip(p[..., 0], 0, H - 1)
    p[..., 1] = np.clip(p[..., 1], 0, W - 1)
    return p.reshape(p.shape[0], H * W, 2)


def heart_patches(roi_seq, flows, *, patch=11, pixels=None, centre=None):
    """P_l(p) in the heart's frame: N x N patches that follow p and turn with its radial direction.

    Frame t's patch of pixel p is sampled (bilinear, edge-replicated) on an N x N grid centred on
    p_t, p traced through the flows at sub-pixel precision (:func:`ofrnn.flow.trajectory.trace`).
    Grid row i lies i - N // 2 pixels outward along the unit vector from the LV centre to p_t,
    column j lies j - N // 2 pixels along the circumferential unit vector (clockwise as
    displayed, as in :func:`ofrnn.flow.trajectory.heart_components`). Within 0.5 px of the
    centre, where the radial direction is undefined, the grid takes the radial direction as +x
    (the 3 o'clock frame). The grid is a mirror image of the image axes' (a turn plus a
    transpose); the handedness is a convention and the same everywhere.

    Parameters
    ----------
    roi_seq : array (T, H, W)
        Normalised ROI sequence.
    flows : array (T-1, 2, H, W)
        Forward flows (dy, dx) of the sequence, pixels.
    patch : int, keyword-only
        Odd patch side N (3..17); the paper's choice is 11 (Fig. 3(e)).
    pixels : tuple (ys, xs) of int arrays, keyword-only, optional
        Only these frame-0 pixels, in this order; default every pixel in row-major order.
    centre : (float, float), keyword-only, optional
        (y, x) of the LV centre; the ROI's centre ((H-1)/2, (W-1)/2) by default (:mod:`ofrnn.roi`).

    Returns
    -------
    patches : float32 array (n_pixels, T, N*N)
        Frame t's patch unrolled row by row (radial rows, circumferential columns), as
        :func:`local_patches` returns it. OpenCV's bilinear weights are quantised to 1/32 px
        in some builds; training and prediction use this same function.

    Raises
    ------
    ValueError
        For a bad ``patch``, a ``roi_seq`` that is not 3-D or flows that are not (T-1, 2, H, W).

    References
    ----------
    Xu et al., MICCAI 2017, Sec. 2 (P_l(p)); the radial / circumferential frame is the usual one
    of myocardial strain (e.g. Amzulescu et al., "Myocardial strain imaging: review of general
    principles, validation, and sources of discrepancies", Eur Heart J Cardiovasc Imaging 20(6),
    605-619, 2019).
    """
    import cv2

    from .flow.trajectory import trace

    roi_seq = np.asarray(roi_seq, dtype=np.float32)
    if roi_seq.ndim != 3:
        raise ValueError(f"roi_seq must be (T, H, W), got shape {roi_seq.shape}")
    patch = _check_patch(patch)
    T, H, W = roi_seq.shape
    if np.shape(flows) != (T - 1, 2, H, W):
        raise ValueError(f"flows must be ({T - 1}, 2, {H}, {W}) for a {roi_seq.shape} sequence, got {np.shape(flows)}")
    if pixels is None:
        ys, xs = np.divmod(np.arange(H * W), W)
    else:
        ys, xs = (np.asarray(a, dtype=np.intp) for a in pixels)
    cy, cx = ((H - 1) / 2, (W - 1) / 2) if centre is None else centre
    p = trace(flows, np.stack([ys, xs], axis=-1).astype(np.float32))  # (T, n, 2)
    ry, rx = p[..., 0] - np.float32(cy), p[..., 1] - np.float32(cx)
    r = np.hypot(ry, rx)
    far = r >= 0.5
    uy = np.where(far, ry / np.maximum(r, 0.5), 0).astype(np.float32)  # radial unit vector (T, n)
    ux = np.where(far, rx / np.maximum(r, 0.5), 1).astype(np.float32)
    off = np.arange(patch, dtype=np.float32) - patch // 2
    a = np.repeat(off, patch)  # radial offset of each patch value, row by row
    b = np.tile(off, patch)    # circumferential offset
    out = np.empty((len(ys), T, patch * patch), np.float32)
    for t in range(T):
        # OpenCV's remap takes maps of fewer than 32767 rows: pixels go in chunks
        for k in range(0, len(ys), 16384):
            q = slice(k, k + 16384)
            # the circumferential unit vector is the radial one turned clockwise as displayed: (ux, -uy)
            yy = p[t, q, 0, None] + uy[t, q, None] * a + ux[t, q, None] * b
            xx = p[t, q, 1, None] + ux[t, q, None] * a - uy[t, q, None] * b
            # OpenCV's bilinear remap: 0.5 ms for 4096 x 121 points here, against 14 ms for a NumPy
            # gather of the four neighbours (ofrnn.flow._pyramid.sample)
            out[q, t] = cv2.remap(roi_seq[t], xx, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def local_patches(roi_seq, *, patch=11, pixels=None, centres=None):
    """Per-pixel patch sequences P_l(p) of one ROI sequence (paper Sec. 2, input of Eq. 1).

    Parameters
    ----------
    roi_seq : array (T, H, W)
        ROI sequence (the paper: J = 25 frames of 64 x 64), already intensity-normalised.
    patch : int, keyword-only
        Odd neighbourhood side N (3..17); the paper's choice is 11 (Fig. 3(e)).
    pixels : tuple (ys, xs) of int arrays, keyword-only, optional
        Only these pixels, in this order; default every pixel in row-major order.
    centres : int array (T, H*W, 2), keyword-only, optional
        Per-frame patch centres of every pixel (:func:`tissue_centres`): the patch follows the
        tissue instead of staying at p. Only with ``pixels=None``.

    Returns
    -------
    patches : float32 array (n_pixels, T, N*N)
        Row ``y * W + x`` (or row i for ``pixels``) is the sequence x_1..x_T of Eq. 1 for p = (y, x):
        frame t's N x N neighbourhood unrolled row by row.

    References
    ----------
    Xu et al., "Direct detection of pixel-level myocardial infarction areas via a deep-learning
    algorithm", MICCAI 2017, Sec. 2 (P_l(p) in R^{11*11*J}).
    """
    roi_seq = np.asarray(roi_seq)
    if roi_seq.ndim != 3:
        raise ValueError(f"roi_seq must be (T, H, W), got shape {roi_seq.shape}")
    win = patch_windows(roi_seq, patch=patch)  # (T, H, W, N, N)
    T, H, W, N, _ = win.shape
    if centres is not None:
        t = np.arange(T)[:, None]
        out = win[t, centres[..., 0], centres[..., 1]].transpose(1, 0, 2, 3).reshape(H * W, T, N * N)
    elif pixels is None:
        out = win.transpose(1, 2, 0, 3, 4).reshape(H * W, T, N * N)
    else:
        ys, xs = (np.asarray(a, dtype=np.intp) for a in pixels)
        out = win[:, ys, xs].transpose(1, 0, 2, 3).reshape(len(ys), T, N * N)
    return np.ascontiguousarray(out, dtype=np.float32)


def lstm_rnn(frames, patch, *, units=64, layers=4, dropout=0.2, extra=0, name="local_motion"):
    """The four-layer LSTM-RNN that turns P_l(p) into the local motion feature (Eqs. 1-3).

    Parameters
    ----------
    frames : int
        Sequence length J (time steps t = 1..J).
    patch : int
        Patch side N; each time step is an N*N vector.
    units : int, keyword-only
        Hidden state size of every LSTM layer.
    layers : int, keyword-only
        Stacked LSTM layers (the paper: four).
    dropout : float, keyword-only
        Rate of the dropout operator D applied to each layer's inputs x_t (Eq. 2).
    extra : int, keyword-only
        Values appended to each step's N*N patch (beyond the paper: the learned wall geometry,
        :mod:`ofrnn.wall`); 0, the paper's input, by default.
    name : str, keyword-only

    Returns
    -------
    keras.Model
        (batch, J, N*N + extra) -> (batch, units): the last hidden state h_J of the top layer.

    References
    ----------
    Xu et al., MICCAI 2017, Sec. 2, Eqs. 1-3 (LSTM gates with D(x_t)).
    """
    import keras

    x_in = keras.Input((frames, patch * patch + extra), name="local_patches")
    h = x_in
    for i in range(layers):
        # Eq. 2: the gates see D(x_t); Keras' LSTM ``dropout`` is exactly input dropout.
        h = keras.layers.LSTM(units, dropout=dropout, return_sequences=i < layers - 1,
                              name=f"lstm_{i + 1}")(h)
    return keras.Model(x_in, h, name=name)


def patch_cnn(frames, patch, *, filters=(16, 32), units=32, extra=0, name="cnn"):
    """A small CNN over P_l(p) in place of the LSTM-RNN: the paper's Table 2 "CNN" learner.

    Beyond the paper as OF-RNN's local motion layers (``local_learner = "cnn"`` in
    experiments/train.toml, an option reported beside the faithful model): the J frames are the
    channels of the N x N patch, read by 3x3 convolutions (ReLU, same padding), 2x2 max-pooling and
    a dense layer. Why it is offered: on this cohort it reads the wall's geometry across the patch,
    which the LSTM, reading one N*N vector per frame, uses less (Table 2, fold 3, validation
    subjects: myocardium Dice 0.843 vs 0.812, ROC AUC 0.977 vs 0.969).

    Parameters
    ----------
    frames : int
        Sequence length J.
    patch : int
        Patch side N.
    filters : sequence of int, keyword-only
        Filters of each 3x3 convolution (Table 2's settings: 16, 32).
    units : int, keyword-only
        Width of the output feature (the LSTM-RNN's ``units``, so the encoders see the same size).
    extra : int, keyword-only
        Values appended to each step's N*N patch, the same at every step (beyond the paper: the
        learned wall geometry, :mod:`ofrnn.wall`); they join the flattened convolution features
        before the dense layer, since they are per-pixel scalars, not an image. 0 by default.
    name : str, keyword-only

    Returns
    -------
    keras.Model
        (batch, J, N*N + extra) -> (batch, units).

    References
    ----------
    Xu et al., MICCAI 2017, Sec. 3 and Table 2 (CNN among the learners compared with the LSTM-RNN).
    """
    import keras

    x_in = keras.Input((frames, patch * patch + extra), name="local_patches")
    h = keras.layers.Permute((2, 1), name="cnn_values_first")(x_in)  # (batch, N*N + extra, J)
    if extra:
        # cropping the value axis splits the patch from the extra values, which are the same at every step
        values = keras.layers.Cropping1D((patch * patch, 0), name="cnn_extra_values")(h)
        values = keras.layers.GlobalAveragePooling1D(data_format="channels_first", name="cnn_extra")(values)
        h = keras.layers.Cropping1D((0, extra), name="cnn_patch_values")(h)
    h = keras.layers.Reshape((patch, patch, frames), name="cnn_frames_as_channels")(h)
    for i, f in enumerate(filters):
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"cnn_conv_{i + 1}")(h)
    h = keras.layers.MaxPooling2D(2, padding="same", name="cnn_pool")(h)
    h = keras.layers.Flatten(name="cnn_flatten")(h)
    if extra:
        h = keras.layers.Concatenate(name="cnn_with_extra")([h, values])
    h = keras.layers.Dense(units, activation="relu", name="cnn_dense")(h)
    return keras.Model(x_in, h, name=name)


#: the local motion layers ``local_learner`` selects: the paper's LSTM-RNN, or Table 2's CNN (an option)
LOCAL_LEARNERS = ("lstm", "cnn")

__all__ = ["PATCH_RANGE", "LOCAL_FRAMES", "LOCAL_LEARNERS", "patch_windows", "pad_for_patches", "tissue_centres",
           "heart_patches", "local_patches", "lstm_rnn", "patch_cnn"]
