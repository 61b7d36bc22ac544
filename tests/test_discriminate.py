"""Fully connected discriminate layers and the whole OF-RNN network: build, train a step, save, load."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ofrnn.discriminate import autoencoder, local_motion_classifier, ofrnn_network  # noqa: E402
from ofrnn.motion import lstm_rnn  # noqa: E402


def _network():
    keras.utils.set_random_seed(0)
    rnn = lstm_rnn(6, 3, units=4, layers=4, dropout=0.1)
    return ofrnn_network(rnn, global_frames=5, global_features=2, encoder_sizes=[8, 6, 4])


def _inputs(n=16):
    rng = np.random.default_rng(0)
    return [rng.random((n, 6, 9)).astype(np.float32), rng.random((n, 5, 2)).astype(np.float32)]


def test_network_reads_like_fig1():
    net, parts = _network()
    names = [l.name for l in net.layers]
    for n in ("local_patches", "global_features", "motion_features", "encoder_1", "encoder_2", "encoder_3",
              "infarct"):
        assert n in names
    assert len(parts["encoders"]) == 3  # "an auto-encoder with three stacking layers"
    assert parts["features"].output.shape[-1] == 4 + 5 * 2  # P(p) = [LSTM feature, P_g(p)]
    p = np.asarray(net(_inputs(), training=False))
    assert p.shape == (16, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)  # softmax


def test_autoencoder_pretrains_the_shared_encoder_in_place():
    net, parts = _network()
    enc = parts["encoders"][0]
    before = enc.get_weights()[0].copy()
    ae = autoencoder(enc, 14, name="ae1")
    ae.compile(optimizer=keras.optimizers.RMSprop(1e-2), loss="mse")
    x = np.random.default_rng(1).random((64, 14)).astype(np.float32)
    ae.fit(x, x, epochs=2, verbose=0)
    assert not np.allclose(before, net.get_layer("encoder_1").get_weights()[0])


def test_save_load_roundtrip_in_safe_mode(tmp_path):
    net, parts = _network()
    parts["normalization"].adapt(np.random.default_rng(2).random((32, 10)).astype(np.float32) * 5)
    x = _inputs()
    p = np.asarray(net(x, training=False))
    net.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(back(x, training=False)), p, rtol=1e-5, atol=1e-6)


def test_local_classifier_shares_the_rnn():
    net, parts = _network()
    clf = local_motion_classifier(parts["rnn"])
    assert clf.output.shape[-1] == 2
    assert clf.get_layer("lstm_1") is net.get_layer("lstm_1")


def test_block_standardisation_keeps_relative_size_and_survives_save(tmp_path):
    """global_blocks=2: one mean and scale per block over all frames, so a frame whose values are 10x
    smaller stays 10x smaller after standardisation (per-value scaling would equalise them)."""
    keras.utils.set_random_seed(0)
    rnn = lstm_rnn(6, 3, units=4, layers=4, dropout=0.1)
    net, parts = ofrnn_network(rnn, global_frames=5, global_features=4, encoder_sizes=[8, 6, 4], global_blocks=2)
    rng = np.random.default_rng(3)
    g = rng.normal(0, 1, (400, 5, 4)).astype(np.float32) * np.array([0.1, 1, 1, 1, 1], np.float32)[None, :, None]
    g[..., 2:] = g[..., 2:] * 7 + 3  # the second block on another scale and offset
    parts["normalization"].adapt(g.reshape(400, 5, 2, 2))
    z = np.asarray(parts["features"]([np.zeros((400, 6, 9), np.float32), g], training=False))[:, 4:]
    z = z.reshape(400, 5, 2, 2)
    for b in range(2):
        assert abs(z[:, :, b].mean()) < 0.05 and z[:, :, b].std() == pytest.approx(1.0, rel=0.05)
    assert z[:, 0].std() / z[:, 1:].std() == pytest.approx(0.1, rel=0.2)
    net.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    x = [rng.random((8, 6, 9)).astype(np.float32), g[:8]]
    np.testing.assert_allclose(np.asarray(back(x, training=False)), np.asarray(net(x, training=False)), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="blocks"):
        ofrnn_network(lstm_rnn(6, 3, units=4), global_frames=5, global_features=5, encoder_sizes=[8, 6, 4],
                      global_blocks=2)


def test_cnn_option_reads_the_same_patches_and_saves_in_safe_mode(tmp_path):
    from ofrnn.errors import OfrnnError
    from ofrnn.settings import load_profile
    from ofrnn.train import build

    cfg = load_profile("quick", frames=6, patch=3, lstm_units=4, encoder_sizes=[8, 6, 4], local_learner="cnn",
                       global_norm="feature")
    keras.utils.set_random_seed(0)
    net, parts = build(cfg, (5, 2))
    names = [l.name for l in net.layers]
    assert "cnn_conv_1" in names and not any(n.startswith("lstm") for n in names)
    assert parts["features"].output.shape[-1] == 4 + 5 * 2  # the encoders see P(p) of the same size
    # the CNN reads the patch as an N x N image with the frames as channels: a patch's frame 2, pixel (1, 2)
    cnn = parts["rnn"]
    x = np.zeros((1, 6, 9), np.float32)
    x[0, 2, 1 * 3 + 2] = 1.0
    channels = keras.Model(cnn.inputs, cnn.get_layer("cnn_frames_as_channels").output)
    img = np.asarray(channels(x))
    assert img.shape == (1, 3, 3, 6) and img[0, 1, 2, 2] == 1.0 and img.sum() == 1.0
    x = _inputs()
    p = np.asarray(net(x, training=False))
    net.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(back(x, training=False)), p, rtol=1e-5, atol=1e-6)
    with pytest.raises(OfrnnError, match="local_learner"):
        cfg.replace(local_learner="gru")
