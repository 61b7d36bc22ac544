"""Fully connected discriminate layers and the whole OF-RNN network (paper Sec. 2, Fig. 1).

The network, as Fig. 1 draws it, per ROI pixel p::

    P_l(p) (J, N*N) --> LSTM-RNN (4 layers, Eqs. 1-3) --> local motion feature h_J --+
                                                                                     +--> P(p) --> encoder 1 --> encoder 2
    P_g(p) (J-1, F) --> flatten --> standardise ------------------------------------+        --> encoder 3 --> softmax

"a simple concatenation between the local image feature P_l(p) from the LSTM-RNN and the motion
trajectories feature P_g(p) via optical flow ... an auto-encoder with three stacking layers is
used for learning the P(p), followed by a softmax layer". Training (:mod:`ofrnn.train`) follows
the usual stacked auto-encoder recipe: each encoding layer is pre-trained greedily as the hidden
layer of a one-layer auto-encoder (:func:`autoencoder`) on the codes of the layers below, then
the whole network is fine-tuned end to end with the softmax; RMSProp throughout (Sec. 3).

Every builder returns layers or models made of stock Keras layers (LSTM, Dense, Flatten,
Normalization, Concatenate), so a saved ``.keras`` file loads with the default
``safe_mode=True`` and no custom objects.
"""
from __future__ import annotations

#: the two classes of the softmax, in output order
CLASSES = ("normal", "infarct")


def global_motion_branch(frames, features, *, blocks=None, name="global_motion"):
    """Input and standardisation of the trajectory feature P_g(p).

    Parameters
    ----------
    frames : int
        Number of flow fields J - 1.
    features : int
        Values per frame F (see :mod:`ofrnn.flow` for their order).
    blocks : int, keyword-only, optional
        Standardise per block: F is split into ``blocks`` equal blocks (magnitude, radial,
        circumferential, ...) and each block gets one mean and one scale over all frames and
        patch positions. None standardises every one of the (J-1) * F values on its own.
        Why blocks: the Lagrangian displacement is near 0 at the first and last frames and
        circumferential motion is small; per-value scaling would blow their flow noise up to
        the same variance as the end-systolic signal, per-block scaling keeps the relative
        size that carries the physics.

    Returns
    -------
    (inputs, outputs, normalization)
        A ``(batch, J-1, F)`` input, its flattened standardised tensor and the Normalization
        layer (to ``adapt`` on training pixels: displacements in pixels and angles in radians
        live on different scales).
    """
    import keras

    g_in = keras.Input((frames, features), name="global_features")
    if blocks:
        if features % blocks:
            raise ValueError(f"{features} features per frame do not split into {blocks} blocks")
        g = keras.layers.Reshape((frames, blocks, features // blocks), name="trajectory_blocks")(g_in)
        norm = keras.layers.Normalization(axis=2, name="trajectory_standardise")
        return g_in, keras.layers.Flatten(name="trajectory")(norm(g)), norm
    g = keras.layers.Flatten(name="trajectory")(g_in)
    norm = keras.layers.Normalization(axis=-1, name="trajectory_standardise")
    return g_in, norm(g), norm


def encoding_layers(sizes, *, activation="relu"):
    """The three encoding layers of the stacked auto-encoder (Sec. 2), as unconnected Dense layers."""
    import keras

    return [keras.layers.Dense(n, activation=activation, name=f"encoder_{i + 1}") for i, n in enumerate(sizes)]


def softmax_layer(*, name="infarct"):
    """Softmax over (normal, infarct) for each pixel (Sec. 2, last layer of Fig. 1), as a layer."""
    import keras

    return keras.layers.Dense(len(CLASSES), activation="softmax", name=name)


def softmax_classifier(x, *, name="infarct"):
    """:func:`softmax_layer` applied to ``x``."""
    return softmax_layer(name=name)(x)


def autoencoder(encoder, input_dim, *, name):
    """A one-hidden-layer auto-encoder around ``encoder`` for greedy layer-wise pre-training.

    The encoder layer object is shared with the full network, so fitting this model (input ->
    input, mean squared error) pre-trains that layer in place; the linear decoder is discarded.
    """
    import keras

    x_in = keras.Input((input_dim,), name=f"{name}_input")
    code = encoder(x_in)
    recon = keras.layers.Dense(input_dim, name=f"{name}_decoder")(code)
    return keras.Model(x_in, recon, name=name)


def local_motion_classifier(rnn):
    """The LSTM-RNN with its own softmax output, Eq. 1 (p_t = softmax(W_hy h_t)).

    Used to train the local motion layers before the auto-encoders see their features.
    """
    import keras

    return keras.Model(rnn.inputs, softmax_classifier(rnn.outputs[0], name="local_softmax"), name="local_rnn")


#: which motion features P(p) concatenates (Table 1 ablation: local only, global only, both)
FEATURES = ("both", "local", "global")


def ofrnn_network(rnn, *, global_frames, global_features, encoder_sizes, activation="relu", features="both",
                  feature_dropout=0.0, global_blocks=None):
    """Assemble the motion statistical and discriminate layers into one model (Fig. 1).

    Parameters
    ----------
    rnn : keras.Model
        The local motion LSTM-RNN (:func:`ofrnn.motion.lstm_rnn`).
    global_frames, global_features : int
        Shape (J - 1, F) of P_g(p).
    encoder_sizes : sequence of 3 ints
        Widths of the three encoding layers.
    activation : str
    features : {"both", "local", "global"}
        Motion features fed to the encoders: the paper's model concatenates both; "local" or
        "global" alone are the Table 1 ablations (the unused input stays, so every variant takes
        the same ``[local_patches, global_features]`` batches).
    feature_dropout : float
        Dropout rate on P(p) during fine-tuning (0: none); it curbs the fast overfitting of the
        encoders to the training subjects' ~650 trajectory values per pixel.
    global_blocks : int, optional
        Standardise P_g per block of values (see :func:`global_motion_branch`); None: per value.

    Returns
    -------
    network : keras.Model
        Inputs ``[local_patches (J, N*N), global_features (J-1, F)]``, output (2,) softmax.
    parts : dict
        ``rnn``, ``normalization`` (adapt before training), ``encoders`` (list of Dense),
        ``features`` (a model from the inputs to P(p), the auto-encoders' training input) and
        ``head`` (the discriminate layers alone, P(p) -> softmax, sharing the network's layers).
    """
    import keras

    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    g_in, g, norm = global_motion_branch(global_frames, global_features, blocks=global_blocks)
    if features == "both":
        p = keras.layers.Concatenate(name="motion_features")([rnn.outputs[0], g])
    else:
        p = rnn.outputs[0] if features == "local" else g
    encoders = encoding_layers(encoder_sizes, activation=activation)
    softmax = softmax_layer()
    dropout = keras.layers.Dropout(feature_dropout, name="feature_dropout") if feature_dropout else None

    def discriminate(h):
        h = dropout(h) if dropout else h
        for enc in encoders:
            h = enc(h)
        return softmax(h)

    inputs = [rnn.inputs[0], g_in]
    network = keras.Model(inputs, discriminate(p), name="ofrnn")
    features = keras.Model(inputs, p, name="motion_statistics")
    p_in = keras.Input(p.shape[1:], name="motion_features_input")
    head = keras.Model(p_in, discriminate(p_in), name="discriminate")
    return network, dict(rnn=rnn, normalization=norm, encoders=encoders, features=features, head=head)


__all__ = ["CLASSES", "FEATURES", "global_motion_branch", "encoding_layers", "softmax_layer", "softmax_classifier", "autoencoder",
           "local_motion_classifier", "ofrnn_network"]
