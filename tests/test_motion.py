"""Local motion features (paper Sec. 2, Eqs. 1-3): patch sequences and the LSTM-RNN."""
import numpy as np
import pytest

from ofrnn.motion import local_patches, patch_windows


def _naive(seq, patch, y, x):
    """P_l(p) by a plain loop: frame by frame, the N x N neighbourhood with edge replication."""
    T, H, W = seq.shape
    r = patch // 2
    out = np.empty((T, patch * patch), dtype=np.float32)
    for t in range(T):
        k = 0
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                out[t, k] = seq[t, min(max(y + dy, 0), H - 1), min(max(x + dx, 0), W - 1)]
                k += 1
    return out


@pytest.mark.parametrize("patch", [3, 11, 17])
def test_local_patches_match_naive_loop(patch):
    rng = np.random.default_rng(0)
    seq = rng.random((5, 12, 10)).astype(np.float32)
    P = local_patches(seq, patch=patch)
    assert P.shape == (12 * 10, 5, patch * patch) and P.dtype == np.float32
    for y, x in [(0, 0), (11, 9), (5, 3), (0, 9), (6, 0)]:
        np.testing.assert_array_equal(P[y * 10 + x], _naive(seq, patch, y, x))


def test_local_patches_pixel_subset_and_stacked_windows():
    rng = np.random.default_rng(1)
    seqs = rng.random((3, 4, 9, 9)).astype(np.float32)
    ys, xs = np.array([0, 8, 4]), np.array([8, 0, 4])
    sub = local_patches(seqs[1], patch=5, pixels=(ys, xs))
    full = local_patches(seqs[1], patch=5)
    np.testing.assert_array_equal(sub, full[ys * 9 + xs])
    win = patch_windows(seqs, patch=5)  # (S, T, H, W, N, N): what training batches index
    assert win.shape == (3, 4, 9, 9, 5, 5)
    batch = win[np.array([1, 1, 1]), :, ys, xs].reshape(3, 4, 25)
    np.testing.assert_array_equal(batch, sub)


def test_centre_value_is_the_pixel_itself():
    seq = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    P = local_patches(seq, patch=11)
    np.testing.assert_array_equal(P[:, :, 60], seq.reshape(2, 36).T)  # centre of 11x11 is index 60


@pytest.mark.parametrize("bad", [2, 1, 19, 4.5])
def test_patch_size_outside_paper_range_is_rejected(bad):
    with pytest.raises(ValueError, match="patch"):
        local_patches(np.zeros((3, 8, 8)), patch=bad)


def test_lstm_rnn_shapes_and_input_dropout():
    keras = pytest.importorskip("keras")
    from ofrnn.motion import lstm_rnn

    m = lstm_rnn(7, 3, units=5, layers=4, dropout=0.3)
    lstms = [l for l in m.layers if isinstance(l, keras.layers.LSTM)]
    assert len(lstms) == 4  # Sec. 2: four LSTM layers
    assert all(l.dropout == 0.3 for l in lstms)  # Eq. 2: D(x_t) on every layer's input
    assert [l.return_sequences for l in lstms] == [True, True, True, False]
    x = np.random.default_rng(0).random((6, 7, 9)).astype(np.float32)
    h = np.asarray(m(x, training=False))
    assert h.shape == (6, 5) and np.all(np.abs(h) < 1)  # h_J = o * tanh(c), Eq. 3
