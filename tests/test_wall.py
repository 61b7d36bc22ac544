"""Learned wall geometry (ofrnn.wall): the maps from a mask on analytic rings, the segmenter on a toy set."""
import numpy as np
import pytest

from ofrnn.errors import OfrnnError
from ofrnn.wall import THICKNESS_UNIT, wall_maps


def _ring(r_in, r_out, size=64, centre=(31.5, 31.5)):
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - centre[0], xx - centre[1])
    return (r >= r_in) & (r < r_out), r


def test_depth_runs_from_endocardium_to_epicardium_and_thickness_is_the_ring_width():
    myo, r = _ring(12, 20)
    maps = wall_maps(myo)
    assert maps.shape == (64, 64, 2) and maps.dtype == np.float32
    depth, thick = maps[..., 0], maps[..., 1]
    # along any ray the depth rises monotonically across the wall, from near 0 to near 1
    row = depth[32, 44:53]  # x from 44 (r ~ 12.5) to 52 (r ~ 20.5) on the horizontal ray
    assert np.all(np.diff(row[myo[32, 44:53]]) > 0)
    assert depth[myo & (r < 13)].max() < 0.2 and depth[myo & (r > 19)].min() > 0.8
    # the cavity reads 0, the outside 1
    assert np.all(depth[r < 10] == 0) and np.all(depth[r > 22] == 1)
    # thickness: d_endo + d_epi - 1 is the ring's 8-pixel width, within a pixel, everywhere in the wall
    np.testing.assert_allclose(thick[myo] * THICKNESS_UNIT, 8, atol=1.0)


def test_thickness_follows_a_thicker_wall_and_an_empty_mask_is_unknown_everywhere():
    thin, _ = _ring(12, 16)
    thick, _ = _ring(12, 22)
    assert wall_maps(thick)[..., 1][thick].mean() > wall_maps(thin)[..., 1][thin].mean() + 0.5
    # no wall to measure (empty; one pixel or two, which enclose no cavity): "unknown" everywhere
    dot, pair = np.zeros((2, 64, 64), bool)
    dot[30, 25] = pair[30, 25:27] = True
    for mask in (np.zeros((64, 64), bool), dot, pair):
        maps = wall_maps(mask)
        assert np.all(maps[..., 0] == 0.5) and np.all(maps[..., 1] == 0)


def test_an_open_ring_still_has_a_cavity():
    myo, _ = _ring(12, 20)
    myo[:, 28:36] &= np.arange(64)[:, None] > 32  # cut the ring open at the top
    depth = wall_maps(myo)[..., 0]
    assert depth[31, 31] == 0 and depth[myo].min() < 0.2 and depth[myo].max() > 0.8


def test_segmenter_learns_a_toy_myocardium_and_is_seeded():
    pytest.importorskip("keras")
    from ofrnn.pipeline import RoiSubject
    from ofrnn.wall import estimate_wall, fit_segmenter, segmenter_inputs

    rng = np.random.default_rng(0)

    def subject(i):
        r_in, r_out = rng.uniform(9, 12), rng.uniform(16, 20)
        myo, r = _ring(r_in, r_out, centre=(31.5 + rng.uniform(-3, 3), 31.5 + rng.uniform(-3, 3)))
        frames = []
        for t in range(6):  # bright pool, grey wall, dark outside; the pool shrinks over the cycle
            img = np.where(r < r_in - t * 0.5, 1.0, np.where(myo, 0.45, 0.15)) + rng.normal(0, 0.05, r.shape)
            frames.append(img)
        return RoiSubject(id=str(i), level="mid", spacing_mm=(1.0, 1.0), shape=(64, 64), transform=None,
                          roi=np.array(frames, np.float32), frame0=None, myocardium=myo.astype(np.uint8))

    subjects = [subject(i) for i in range(10)]
    seg, seconds = fit_segmenter(subjects[:8], seed=0, epochs=15, batch_size=8)
    assert seconds > 0
    for rs, maps in zip(subjects[8:], estimate_wall(seg, [rs.roi for rs in subjects[8:]])):
        truth = wall_maps(rs.myocardium.astype(bool))
        myo = rs.myocardium.astype(bool)
        # held-out rings: the estimated depth is close to the traced one across the wall, far closer
        # than "unknown" (0.5 everywhere, what an empty mask gives)
        err = np.abs(maps[..., 0] - truth[..., 0])[myo].mean()
        assert err < 0.1 and err < 0.5 * np.abs(0.5 - truth[..., 0])[myo].mean(), err
    # seeded: two fits (one epoch each, to keep the test short) give the same segmenter
    x = np.stack([segmenter_inputs(rs.roi) for rs in subjects[8:]])
    a, b = (np.asarray(fit_segmenter(subjects[:8], seed=1, epochs=1)[0].predict_on_batch(x)) for _ in range(2))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_segmenter_needs_traced_masks():
    pytest.importorskip("keras")
    from ofrnn.pipeline import RoiSubject
    from ofrnn.wall import fit_segmenter

    rs = RoiSubject(id="a", level="mid", spacing_mm=(1.0, 1.0), shape=(64, 64), transform=None,
                    roi=np.zeros((4, 64, 64), np.float32), frame0=None)
    with pytest.raises(OfrnnError, match="wall_geometry"):
        fit_segmenter([rs], seed=0)
