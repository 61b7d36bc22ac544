"""Global motion (ofrnn.flow): known answers, metrics, .flo I/O, trajectories, bad input."""
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from ofrnn import flow as F
from ofrnn.cli import main
from ofrnn.errors import OfrnnError
from ofrnn.flow import _pyramid, deep, matching, variational

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TINY = DATA / "flow" / "tiny"


def texture(size=64, seed=0, blur=1.5, pad=32):
    rng = np.random.default_rng(seed)
    big = _pyramid.gaussian(rng.random((1, size + 2 * pad, size + 2 * pad)).astype(np.float32), blur)[0]
    return big * 255


def moved(img, fn):
    """Resample ``img`` so that the point x of ``img`` lands at x + fn(x) (fn maps coords -> displacement,
    inverted by fixed-point iteration); returns the moved image and the forward flow on the grid."""
    H, W = img.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    back = np.zeros((2, H, W))
    for _ in range(20):
        back = np.stack(fn(yy - back[0], xx - back[1]))
    return ndi.map_coordinates(img, [yy - back[0], xx - back[1]], order=3, mode="nearest"), np.stack(fn(yy, xx))


def crop(a, pad=32):
    return a[..., pad:-pad, pad:-pad]


@pytest.fixture(scope="module")
def translated():
    img = texture()
    mov, flow = moved(img, lambda y, x: (np.full_like(y, 1.2), np.full_like(x, -0.7)))
    return crop(img), crop(mov), crop(flow)


@pytest.fixture(scope="module")
def rotated():
    img = texture(seed=1)
    c = (img.shape[0] - 1) / 2
    th = np.radians(3.0)

    def rot(y, x):
        yc, xc = y - c, x - c
        return (np.sin(th) * xc + np.cos(th) * yc - yc, np.cos(th) * xc - np.sin(th) * yc - xc)
    mov, flow = moved(img, rot)
    return crop(img), crop(mov), crop(flow)


INTERIOR = (slice(None), slice(6, -6), slice(6, -6))


def test_zero_motion_gives_zero_flow():
    img = crop(texture(seed=2))
    for name in ("deep", "hs", "pyramid-hs", "lucas-kanade", "phase"):
        f = F.METHODS[name](img, img)
        assert f.shape == (2,) + img.shape and f.dtype == np.float32
        assert np.nanmax(np.abs(f)) < 1e-3, name


@pytest.mark.parametrize("name, tol", [("deep", 0.05), ("hs", 0.1), ("pyramid-hs", 0.05), ("lucas-kanade", 0.1),
                                       ("phase", 0.25)])
def test_translation_known_answer(translated, name, tol):
    a, b, gt = translated
    f = F.METHODS[name](a, b)
    assert F.epe(f[INTERIOR], gt[INTERIOR]) < tol
    assert np.nanmean(f[0][INTERIOR[1:]]) == pytest.approx(1.2, abs=tol)
    assert np.nanmean(f[1][INTERIOR[1:]]) == pytest.approx(-0.7, abs=tol)


def test_rotation_known_answer(rotated):
    a, b, gt = rotated
    f = F.deep_flow(a, b)
    # 3 degrees about the centre: up to 1.7 px at the corners.
    assert F.aae(f[INTERIOR], gt[INTERIOR]) < 2.0
    assert F.epe(f[INTERIOR], gt[INTERIOR]) < 0.1
    assert F.aae(np.zeros_like(gt)[INTERIOR], gt[INTERIOR]) > 20


def test_sparse_methods_leave_flat_areas_unestimated(translated):
    a, b, _ = translated
    a, b = a.copy(), b.copy()
    a[:, :20] = 100.0
    b[:, :20] = 100.0
    for name in ("lucas-kanade", "phase"):
        f = F.METHODS[name](a, b)
        # Columns 0-3 lie in the flat band: no structure for LK, no stable phase.
        assert np.isnan(f[:, 8:-8, 0:4]).all(), name
        assert 0.2 < F.density(f) < 1.0, name


def test_deep_matching_reaches_every_atomic_patch_and_finds_integer_translation():
    img = texture(size=48, seed=3)
    mov = np.roll(img, (2, -1), axis=(0, 1))
    disp, score = matching.match_grid(crop(img)[None], crop(mov)[None], radius=4)
    # Every atomic patch (stride 2) has a parent chain: the quadrant children of a stride-2 parent
    # grid cover all of them (a stride-doubling grid left three in four unmatched). Only patches
    # whose target leaves the image (last row, first column here) are dropped.
    assert (score[0] > 0)[:-1, 1:].all() and not (score[0] > 0)[:, 0].any()
    exact = (disp[0, 0] == 2) & (disp[0, 1] == -1)
    # Patches whose target reaches beyond the image may be wrong; the interior is exact.
    assert exact[2:-3, 2:-3].all()
    flow, conf = matching.splat(disp * 2.0, score, (96, 96), factor=2.0)
    assert flow.shape == (1, 2, 96, 96) and conf.shape == (1, 96, 96)
    assert np.median(flow[0, 0][conf[0] > 0]) == 4 and np.median(flow[0, 1][conf[0] > 0]) == -2


def test_splat_gives_each_pixel_the_match_of_the_nearest_patch_centre():
    ny, nx = 5, 6
    i, j = np.mgrid[0:ny, 0:nx]
    disp = np.stack([i * 100.0, j * 1.0])[None].astype(np.float32)
    score = np.ones((1, ny, nx), np.float32)
    score[0, 2, 3] = 0  # an unverified match leaves its cell without confidence
    for factor in (1.0, 2.0):
        H, W = int(factor * (2 * ny + 2)), int(factor * (2 * nx + 2))
        flow, conf = matching.splat(disp, score, (H, W), factor=factor)
        # Patch k spans matching pixels 2k .. 2k + 3, centred at 2k + 1.5.
        centres_y = ((2 * np.arange(ny) + 2) * factor - 0.5)
        centres_x = ((2 * np.arange(nx) + 2) * factor - 0.5)
        ky = np.abs(np.arange(H)[:, None] - centres_y[None]).argmin(1)
        kx = np.abs(np.arange(W)[:, None] - centres_x[None]).argmin(1)
        np.testing.assert_array_equal(flow[0, 0], 100.0 * ky[:, None] + 0 * kx[None])
        np.testing.assert_array_equal(flow[0, 1], 0 * ky[:, None] + kx[None])
        np.testing.assert_array_equal(conf[0] == 0, (ky[:, None] == 2) & (kx[None] == 3))


def test_deep_matching_finds_a_displacement_far_beyond_the_pyramid_reach():
    img = texture(size=64, seed=4)
    mov = np.roll(img, (-9, 13), axis=(0, 1))
    disp, score = matching.match_grid(crop(img)[None], crop(mov)[None], radius=16)
    exact = (disp[0, 0] == -9) & (disp[0, 1] == 13)
    assert exact[6:-8, 2:-8].mean() > 0.95


@pytest.mark.parametrize("shift", [0.25, 0.5, 0.75])
def test_refinement_has_no_pixel_locking_bias(shift):
    # An analytic texture sampled at shifted coordinates: an exact sub-pixel translation.
    yy, xx = np.mgrid[0:64, 0:64].astype(float)

    def scene(y, x):
        return 128 + 40 * np.sin(0.45 * x + 0.3 * y) + 30 * np.cos(0.37 * y - 0.21 * x) + 20 * np.sin(0.61 * x * 0.5 + 0.83 * y)
    a = scene(yy, xx).astype(np.float32)[None]
    b = scene(yy - shift, xx + 0.5 * shift).astype(np.float32)[None]  # content moves by (+shift, -shift/2)
    integer = np.zeros((1, 2, 31, 31), np.float32)
    integer[:, 0] = np.round(shift)
    d, ok, ncc = matching._refine(a, b, integer, 1.0, keep=np.ones((1, 31, 31), bool))
    inner = (slice(None), slice(3, -3), slice(3, -3))
    assert ok[inner].all() and (ncc[inner] > 0.99).all()
    # Unbiased: the mean error is a small fraction of what parabola fits show (0.05-0.1 px).
    assert abs(d[:, 0][inner].mean() - shift) < 0.01
    assert abs(d[:, 1][inner].mean() + 0.5 * shift) < 0.01


def test_forward_backward_check_keeps_reciprocal_matches_only():
    fwd = np.zeros((1, 2, 6, 6), np.float32)
    fwd[0, 1] = 2  # every patch moves 2 matching pixels right
    bwd = np.zeros_like(fwd)
    bwd[0, 1] = -2
    score = np.ones((1, 6, 6), np.float32)
    assert matching._consistent(fwd, bwd, 1.0, score).all()
    bwd[0, 1, :, 3] = 3  # the patches landing on grid column 3 point elsewhere
    ok = matching._consistent(fwd, bwd, 1.0, score)
    assert not ok[0, :, 2].any() and ok[0, :, [0, 1, 3]].all()
    score[0, 2, 4] = 0  # a target without a backward path of its own confirms nothing
    ok = matching._consistent(fwd, bwd, 1.0, score)
    assert not ok[0, 2, 3] and ok[0, :, [0, 1]].all()


def test_search_range_follows_the_image_size():
    assert matching.search_range((384, 512)) == ((96, 128), 24)  # +-96 px on FlyingChairs
    assert matching.search_range((64, 64)) == ((32, 32), 8)  # at least halved, +-16 px
    assert matching.search_range((250, 370)) == ((96, 142), 24)


def test_default_deep_flow_follows_motion_far_beyond_the_pyramid_reach():
    img = texture(size=128, seed=6, pad=40)
    mov, flow = moved(img, lambda y, x: (np.full_like(y, 17.3), np.full_like(x, -21.6)))
    a, b, gt = crop(img, 40), crop(mov, 40), crop(flow, 40)
    inner = (slice(None), slice(24, -24), slice(24, -24))
    # 128 px: ten pyramid levels, about 15 px of reach (27.7 px of motion); the variational part alone is lost.
    assert F.epe(F.deep_flow(a, b, beta=0.0)[inner], gt[inner]) > 5
    assert F.epe(F.deep_flow(a, b)[inner], gt[inner]) < 0.5


def test_matching_term_leaves_small_motion_to_the_variational_flow(translated):
    a, b, _ = translated
    # All verified matches move less than min_motion coarsest-level pixels: c(x) = 0 everywhere,
    # so the flow is the variational one, bit for bit.
    np.testing.assert_array_equal(F.deep_flow(a, b), F.deep_flow(a, b, beta=0.0))


def test_deep_matches_are_subpixel_and_drop_unverifiable_areas():
    img = texture(size=96, seed=5)
    mov, flow = moved(img, lambda y, x: (np.full_like(y, 6.4), np.full_like(x, -3.3)))
    a, b = crop(img), crop(mov)
    a[:, :20] = 128.0  # a flat band: nothing to match there
    b[:, :20] = 128.0
    st = F.deep.to_255(np.stack([a, b]))
    w, c = matching.deep_matches(st[:1], st[1:])
    assert (c[0][:, :8] == 0).all()
    # Away from the band's static edge (where the motion is ambiguous) and the image border.
    good = (c[0] > 0)[4:-10, 24:-4]
    assert good.mean() > 0.9
    dy, dx = w[0, 0][4:-10, 24:-4][good], w[0, 1][4:-10, 24:-4][good]
    assert np.abs(dy - 6.4).mean() < 0.05 and np.abs(dx + 3.3).mean() < 0.05


def test_cg_and_sor_reach_the_same_minimiser(translated):
    a, b, _ = translated
    s = F.deep.to_255(np.stack([a, b]))
    kw = dict(alpha=1.0, beta=0.0, gamma=0.71, delta=0.5, n_outer=1, eps=0.01)
    z = np.zeros((1, 2) + a.shape, np.float32)
    cg = variational._refine_level(s[:1], s[1:], z, n_iter=400, **kw)
    sor = variational._refine_level(s[:1], s[1:], z, n_iter=1500, solver="sor", omega=1.9, **kw)
    assert np.abs(cg - sor).max() < 0.02


def test_sequence_flow_matches_pairs_and_shapes(translated):
    a, b, _ = translated
    cine = np.stack([a, b, a])
    flows = F.sequence_flow(cine)
    assert flows.shape == (2, 2) + a.shape and flows.dtype == np.float32
    assert np.nanmean(flows[0, 0][INTERIOR[1:]]) == pytest.approx(1.2, abs=0.05)
    assert np.nanmean(flows[1, 0][INTERIOR[1:]]) == pytest.approx(-1.2, abs=0.05)


def test_sequence_flow_is_the_same_on_any_number_of_threads(translated):
    a, b, _ = translated
    big = texture(seed=3)
    A, A9, A2 = (crop(np.roll(big, s, axis=(0, 1))) for s in ((0, 0), (9, -4), (-3, 8)))
    # 8 different pairs; (A, A9) and (A, A2) move 8.5-9.8 px, past the matching gate of a 64x64 image
    cine = np.stack([a, b, A, A9, a, A, A2, b, a])
    stack = deep.to_255(cine)
    d = deep.DEFAULTS
    n_levels = len(_pyramid.pyramid_shapes(a.shape, downscale=d["downscale"], min_size=d["min_size"],
                                           max_levels=d["max_levels"]))
    kw = dict(min_motion_px=d["min_motion"] / d["downscale"] ** (n_levels - 1))  # as _deep_flow_batch gates them
    one = matching.deep_matches(stack[:-1], stack[1:], **kw)
    assert one[1][2].max() > 0 and one[1][5].max() > 0  # verified matches enter E_M in both halves
    flows = F.sequence_flow(cine, workers=1)
    for workers in (2, 3, 16):  # shares of 4 + 4 pairs, and no more threads than shares
        shared = deep._in_threads(partial(matching.deep_matches, **kw), stack[:-1], stack[1:], workers)
        # equal to float32 rounding: a matrix product of another batch size may round otherwise
        for got, want in zip(shared, one):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        # the median filter may take a neighbour in rank where rounding differs: 1.4e-4 px measured
        np.testing.assert_allclose(F.sequence_flow(cine, workers=workers), flows, rtol=0, atol=1e-3)
    with pytest.raises(OfrnnError, match="workers"):
        F.sequence_flow(cine, workers=0)
    with pytest.raises(TypeError, match="integer"):
        F.sequence_flow(cine, workers=2.5)


def test_solver_helpers_do_numpys_arithmetic():
    # _grad and derivatives stand in for np.gradient and an np.pad(mode="edge") stencil; the CG
    # product for _neighbour_sum: bit for bit, or every stored flow would change
    rng = np.random.default_rng(4)
    f = rng.random((3, 2, 17, 23), dtype=np.float32)
    for axis in (-1, -2):
        np.testing.assert_array_equal(variational._grad(f, axis), np.gradient(f, axis=axis))
    with pytest.raises(ValueError, match="axis"):
        variational._grad(f, 0)
    img = f[:, 0]
    p = np.pad(img, ((0, 0), (2, 2), (2, 2)), mode="edge")
    c, r = p[:, 2:-2], p[:, :, 2:-2]
    dx, dy = _pyramid.derivatives(img)
    np.testing.assert_array_equal(dx, (c[:, :, :-4] - 8 * c[:, :, 1:-3] + 8 * c[:, :, 3:-1] - c[:, :, 4:]) / 12)
    np.testing.assert_array_equal(dy, (r[:, :-4] - 8 * r[:, 1:-3] + 8 * r[:, 3:-1] - r[:, 4:]) / 12)
    # one CG iteration from x = 0 is r = b, p = z = M^-1 b, x = step p: recompute it with _neighbour_sum
    a11, a22 = (rng.random((3, 17, 23), dtype=np.float32) + 1 for _ in range(2))
    a12 = 0.1 * rng.random((3, 17, 23), dtype=np.float32)
    wx, wy = variational._edge_weights(rng.random((3, 17, 23), dtype=np.float32))
    wsum = variational._neighbour_sum(wx, wy, np.ones_like(a11))
    b1, b2 = rng.random((2, 3, 17, 23), dtype=np.float32)
    du, dv = variational._pcg(a11, a12, a22, wx, wy, wsum, b1, b2, np.zeros_like(b1), np.zeros_like(b2), n_iter=1)
    m11, m22 = a11 + wsum, a22 + wsum
    det = m11 * m22 - a12 * a12
    z = np.stack([m22 / det * b1 - a12 / det * b2, m11 / det * b2 - a12 / det * b1], axis=1)
    q = variational._neighbour_sum(-wx[:, None], -wy[:, None], z,
                                   out=np.stack([m11, m22], axis=1) * z + a12[:, None] * z[:, ::-1])
    rz = (np.stack([b1, b2], axis=1) * z).sum(axis=(1, 2, 3), keepdims=True)
    step = rz / (z * q).sum(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(np.stack([du, dv], axis=1), step * z, rtol=1e-5)


def test_metrics_on_analytic_fields():
    H, W = 8, 10
    gt = np.zeros((2, H, W))
    gt[1] = 1.0  # (dy, dx) = (0, 1)
    assert F.aae(gt, gt) == pytest.approx(0, abs=1e-6)
    # (0, 0, 1) against (1, 0, 1): 45 degrees.
    assert F.aae(np.zeros_like(gt), gt) == pytest.approx(45.0)
    # Opposite unit motions: arccos(0 / 2) = 90 degrees.
    assert F.aae(-gt, gt) == pytest.approx(90.0)
    f = gt.copy()
    f[0] = 3.0
    f[1] = 5.0
    assert F.epe(f, gt) == pytest.approx(5.0)
    f[:, :4] = np.nan
    assert F.density(f) == pytest.approx(0.5)
    mask = np.zeros((H, W), bool)
    mask[:4] = True
    assert F.density(f, mask) == 0.0 and np.isnan(F.aae(f, gt, mask))


def test_flo_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    f = rng.normal(size=(2, 7, 5)).astype(np.float32)
    f[:, 2, 3] = np.nan
    F.write_flo(tmp_path / "a.flo", f)
    g = F.read_flo(tmp_path / "a.flo")
    np.testing.assert_array_equal(np.isnan(g), np.isnan(f))
    np.testing.assert_array_equal(g[np.isfinite(g)], f[np.isfinite(f)])
    raw = (tmp_path / "a.flo").read_bytes()
    assert raw[:4] == b"PIEH" and np.frombuffer(raw[4:12], "<i4").tolist() == [5, 7]
    # u (= dx) comes first in each pixel.
    assert np.frombuffer(raw[12:16], "<f4")[0] == f[1, 0, 0]
    assert not list(tmp_path.glob(".*tmp"))


def test_flo_bad_files(tmp_path):
    (tmp_path / "bad.flo").write_bytes(b"nope")
    with pytest.raises(OfrnnError, match="bad.flo.*PIEH"):
        F.read_flo(tmp_path / "bad.flo")
    (tmp_path / "short.flo").write_bytes(np.array([202021.25], "<f4").tobytes() + np.array([4, 4], "<i4").tobytes())
    with pytest.raises(OfrnnError, match="header"):
        F.read_flo(tmp_path / "short.flo")


@pytest.mark.skipif(not TINY.is_dir(), reason=f"real flow fixtures not found at {TINY}")
def test_real_flo_fixture_explains_its_images():
    assert F.read_flo(TINY / "0000000-flow_01.flo").shape == (2, 50, 50)
    flow = F.read_flo(TINY / "00001_flow.flo")
    a = F.read_image(TINY / "00001_img1.ppm")
    b = F.read_image(TINY / "00001_img2.ppm")
    assert flow.shape == (2,) + a.shape and np.isfinite(flow).all()
    # FlyingChairs convention: img1(y, x) ~ img2(y + v, x + u); warping by the GT explains the pair far
    # better than no motion, warping by the opposite flow does not.
    err = {k: np.abs(_pyramid.warp(b[None], k * flow[None])[0][0] - a).mean() for k in (1, -1)}
    assert err[1] < 0.6 * np.abs(b - a).mean() < err[-1]


def test_trace_and_features_on_rigid_motion():
    T, H, W = 6, 16, 16
    flows = np.zeros((T - 1, 2, H, W), np.float32)
    flows[:, 0], flows[:, 1] = 0.5, -0.25
    pts = F.trace(flows)
    assert pts.shape == (T, H, W, 2)
    np.testing.assert_allclose(pts[-1] - pts[0], np.broadcast_to([2.5, -1.25], (H, W, 2)), atol=1e-5)
    g = F.global_features(flows, frame="image")
    assert g.shape == (H, W, T - 1, F.GLOBAL_FEATURES_PER_FRAME) and g.dtype == np.float32
    assert len(F.GLOBAL_FEATURE_LAYOUT) * 9 == F.GLOBAL_FEATURES_PER_FRAME
    np.testing.assert_allclose(g[..., :9], np.hypot(0.5, 0.25), rtol=1e-5)
    n = np.sqrt(0.5 ** 2 + 0.25 ** 2 + F.ORIENTATION_EPS ** 2)
    np.testing.assert_allclose(g[..., 9:18], 0.5 / n, rtol=1e-5)
    np.testing.assert_allclose(g[..., 18:27], -0.25 / n, rtol=1e-5)


def test_trajectories_follow_a_rotation():
    """A rigid rotation about the centre, 4 degrees per frame: traced points stay on their circle and
    turn by 4 degrees per frame; the features sample the flow at the traced point."""
    T, H, W = 8, 32, 32
    c = (H - 1) / 2
    th = np.radians(4.0)
    yy, xx = np.mgrid[0:H, 0:W] - c
    rot = np.stack([np.sin(th) * xx + np.cos(th) * yy - yy, np.cos(th) * xx - np.sin(th) * yy - xx]).astype(np.float32)
    flows = np.repeat(rot[None], T - 1, axis=0)
    pts = F.trace(flows, np.array([[c, c + 6.0]]))[:, 0] - c
    ang = np.degrees(np.unwrap(np.arctan2(pts[:, 0], pts[:, 1])))
    np.testing.assert_allclose(np.diff(ang), 4.0, atol=0.05)
    np.testing.assert_allclose(np.hypot(pts[:, 0], pts[:, 1]), 6.0, atol=0.05)
    g = F.global_features(flows, frame="image")
    # Magnitude of a rotation is |r| * 2 sin(th / 2), whatever the frame: the centre sample of the patch.
    i, j = int(c), int(c + 6)
    r = np.hypot(i - c, j - c)
    np.testing.assert_allclose(g[i, j, :, 4], r * 2 * np.sin(th / 2), rtol=0.05)


def _rotation(H, W, degrees):
    c = (H - 1) / 2
    th = np.radians(degrees)
    yy, xx = np.mgrid[0:H, 0:W] - c
    return np.stack([np.sin(th) * xx + np.cos(th) * yy - yy, np.cos(th) * xx - np.sin(th) * yy - xx]).astype(np.float32)


def test_heart_frame_of_a_pure_rotation_is_purely_circumferential():
    """Rotation about the LV centre, 3 degrees per frame: no radial displacement at all, and the
    circumferential one is the arc r * (3 t degrees) of the turned angle (clockwise as displayed)."""
    T, H, W = 7, 33, 33
    flows = np.repeat(_rotation(H, W, 3.0)[None], T - 1, axis=0)
    g = F.global_features(flows, frame="heart")
    assert F.GLOBAL_FEATURE_LAYOUTS["heart"] == ("magnitude", "radial", "circumferential")
    ring = (slice(6, 27), slice(6, 27))  # traced points stay well inside the grid
    np.testing.assert_allclose(g[ring][..., 9:18], 0.0, atol=0.02)
    y, x = 16, 26  # 10 px right of the centre
    arc = 10 * np.radians(3.0) * np.arange(1, T)
    np.testing.assert_allclose(g[y, x, :, 18 + 4], arc, rtol=0.02)
    # a reflection of the image reverses the sense of rotation: circumferential changes sign only
    gm = F.global_features(np.ascontiguousarray(flows[:, :, :, ::-1] * np.array([1, -1], np.float32)[:, None, None]),
                           frame="heart")
    np.testing.assert_allclose(gm[y, W - 1 - x, :, 18 + 4], -arc, rtol=0.02)


def test_heart_frame_of_a_uniform_contraction_is_inward_radial():
    """Every point moves 3 % of its radius toward the centre per frame: radial displacement is
    -(1 - 0.97^t) r, circumferential 0, wherever the point lies on the ring."""
    T, H, W = 6, 33, 33
    c = (H - 1) / 2
    yy, xx = np.mgrid[0:H, 0:W] - c
    flows = np.repeat((-0.03 * np.stack([yy, xx]))[None].astype(np.float32), T - 1, axis=0)
    g = F.global_features(flows, frame="heart")
    r = np.hypot(yy, xx)
    expect = -(1 - 0.97 ** np.arange(1, T))[None, None, :] * r[..., None]
    np.testing.assert_allclose(g[..., 9 + 4], expect, atol=1e-3)
    np.testing.assert_allclose(g[..., 18:27], 0.0, atol=1e-3)
    assert (g[8:25, 8:25, -1, 9 + 4][r[8:25, 8:25] > 2] < 0).all()
    # the polar components agree with the projections on the radial / circumferential unit vectors
    u = F.lagrangian_displacement(flows)
    np.testing.assert_allclose(F.heart_components(u)[:, 0], np.hypot(yy + u[:, 0], xx + u[:, 1]) - r, atol=1e-4)


def test_wall_frame_holds_the_radial_strain_of_a_uniform_contraction():
    """Every point moves 3 % of its radius toward the centre per frame, so u_r = -s_t r with
    s_t = 1 - 0.97^t: the wall patch's centre holds -s_t r, its samples one pixel inward / outward
    differ from it by +s_t / -s_t (the radial strain), the ones along the ring by almost nothing,
    wherever the pixel lies on the ring; a rotation adds only circumferential values."""
    T, H, W = 6, 33, 33
    c = (H - 1) / 2
    yy, xx = np.mgrid[0:H, 0:W] - c
    contraction = np.repeat((-0.03 * np.stack([yy, xx]))[None].astype(np.float32), T - 1, axis=0)
    g = F.global_features(contraction, frame="wall")
    assert g.shape == (H, W, T - 1, 27)
    s = (1 - 0.97 ** np.arange(1, T))[None, :]
    r = np.hypot(yy, xx)
    ring = (r > 6) & (r < 14)
    radial = g[ring][..., 9:18]  # (n, T-1, 9), patch row-major: radial offset first
    np.testing.assert_allclose(radial[..., 4], -s * r[ring][:, None], atol=1e-3)
    np.testing.assert_allclose(radial[..., 1], np.broadcast_to(s, radial[..., 1].shape), atol=0.02)
    np.testing.assert_allclose(radial[..., 7], np.broadcast_to(-s, radial[..., 7].shape), atol=0.02)
    assert np.abs(radial[..., [3, 5]]).max() < 0.1 * s.max()
    np.testing.assert_allclose(g[ring][..., 18:27], 0.0, atol=1e-3)
    # a rigid rotation: no radial value at all
    rot = F.global_features(np.repeat(_rotation(H, W, 3.0)[None], T - 1, axis=0), frame="wall")
    np.testing.assert_allclose(rot[ring][..., 9:18], 0.0, atol=0.02)
    # the sense of the circumferential axis: under a uniform translation (d along x) u_r = d cos(phi)
    # and u_c = -d sin(phi), so u_r changes by u_c / r per pixel along +e_c (outer samples 5 and 3)
    shift = np.zeros((T - 1, 2, H, W), np.float32)
    shift[:, 1] = 0.2
    g = F.global_features(shift, frame="wall")[ring]
    np.testing.assert_allclose(g[..., 9 + 5] - g[..., 9 + 3], 2 * g[..., 18 + 4] / r[ring][:, None], atol=0.01)


def test_slice_motion_reference_divides_by_the_slice_peak_displacement():
    """A uniform translation of 0.5 px per frame: the peak displacement is 2.5 px everywhere, so the
    slice-referenced magnitude ends at exactly 1 and every block is the plain one / 2.5."""
    T, H, W = 6, 16, 16
    flows = np.zeros((T - 1, 2, H, W), np.float32)
    flows[:, 1] = 0.5
    assert F.motion_scale(flows) == pytest.approx(2.5, rel=1e-5)
    for frame in F.FRAMES:
        plain = F.global_features(flows, frame=frame)
        ref = F.global_features(flows, frame=frame, reference="slice")
        k = 27 if frame != "image" else 9  # the image frame's orientation blocks are unitless
        np.testing.assert_allclose(ref[..., :k], plain[..., :k] / 2.5, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ref[..., k:], plain[..., k:])
    np.testing.assert_allclose(F.global_features(flows, reference="slice")[..., -1, :9], 1.0, rtol=1e-5)
    with pytest.raises(OfrnnError, match="reference"):
        F.global_features(flows, reference="subject")


def test_bad_input_raises_clear_errors():
    a = np.zeros((16, 16))
    with pytest.raises(OfrnnError, match="moving: size mismatch"):
        F.deep_flow(a, np.zeros((16, 17)))
    b = a.copy()
    b[3, 3] = np.nan
    with pytest.raises(OfrnnError, match="reference: 1 non-finite"):
        F.deep_flow(b, a)
    with pytest.raises(OfrnnError, match="2-D image"):
        F.METHODS["hs"](np.zeros(16), np.zeros(16))
    with pytest.raises(OfrnnError, match="cine"):
        F.sequence_flow(np.zeros((1, 16, 16)))
    with pytest.raises(OfrnnError, match="flows"):
        F.global_features(np.zeros((3, 16, 16)))
    with pytest.raises(OfrnnError, match="frame"):
        F.global_features(np.zeros((3, 2, 16, 16)), frame="lab")


def test_cli_flow_writes_flo_and_reports_bad_input(tmp_path, translated, capsys):
    import cv2

    a, b, gt = translated
    np.save(tmp_path / "a.npy", a)
    cv2.imwrite(str(tmp_path / "b.png"), np.clip(b, 0, 255).astype(np.uint8))
    rgb = np.stack([b] * 3, axis=-1)
    np.save(tmp_path / "b_rgb.npy", rgb)
    assert main(["flow", str(tmp_path / "a.npy"), str(tmp_path / "b_rgb.npy"), "--out", str(tmp_path / "f.flo")]) == 0
    f = F.read_flo(tmp_path / "f.flo")
    assert F.epe(f[INTERIOR], gt[INTERIOR]) < 0.1
    assert main(["flow", str(tmp_path / "a.npy"), str(tmp_path / "b.png"), "--out", str(tmp_path / "g.flo"),
                 "--method", "lucas-kanade"]) == 0
    capsys.readouterr()
    np.save(tmp_path / "small.npy", a[:20])
    assert main(["flow", str(tmp_path / "a.npy"), str(tmp_path / "small.npy"), "--out", str(tmp_path / "x.flo")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ofrnn: error:") and "small.npy" in err and "size mismatch" in err and "\n" not in err
    bad = a.copy()
    bad[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert main(["flow", str(tmp_path / "nan.npy"), str(tmp_path / "a.npy"), "--out", str(tmp_path / "x.flo")]) == 2
    assert "nan.npy" in capsys.readouterr().err
    (tmp_path / "text.png").write_text("not an image")
    assert main(["flow", str(tmp_path / "text.png"), str(tmp_path / "a.npy"), "--out", str(tmp_path / "x.flo")]) == 2
    assert "text.png: not an image" in capsys.readouterr().err
    assert not (tmp_path / "x.flo").exists()


def test_cli_method_list_matches_the_registry():
    from ofrnn.commands.flow import METHOD_NAMES
    assert tuple(F.METHODS) == METHOD_NAMES


def test_experiment_dispatcher_reports_unknown_names(capsys):
    assert main(["experiment", "no_such_experiment"]) == 2
    assert "no experiment 'no_such_experiment'" in capsys.readouterr().err


@pytest.mark.parametrize("width, R", [(17, 3), (45, 3), (45, 4)])
def test_atomic_responses_and_pooling_match_their_definitions(width, R):
    rng = np.random.default_rng(3)
    # 17 pixels wide: 7 patches, 8 cells a row, one block; 45 wide: 21 patches, 22 cells, two blocks
    d0, d1 = (matching._descriptors(rng.random((2, 14, width)).astype(np.float32) * 255) for _ in range(2))
    assert ((width - 4) // 2 + 2 > matching._CELL_BLOCK) == (width == 45)
    maps = matching._bottom_level(d0, d1, R)
    ny, nx = (14 - 4) // 2 + 1, (width - 4) // 2 + 1
    assert maps.shape == (2, ny, nx, 2 * R + 1, 2 * R + 1)
    # the mean per-pixel descriptor dot product of the 4x4 patch at (2i, 2j) and the second image's
    # patch displaced by (k, l), edge-replicated outside, at every patch and displacement
    pad = np.pad(d1, ((0, 0), (R, R), (R, R), (0, 0)), mode="edge")
    want = np.empty_like(maps)
    for i in range(ny):
        for j in range(nx):
            a = d0[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4]
            for k in range(2 * R + 1):
                for l in range(2 * R + 1):
                    b = pad[:, 2 * i + k:2 * i + k + 4, 2 * j + l:2 * j + l + 4]
                    want[:, i, j, k, l] = (a * b).sum(-1).mean(axis=(1, 2))
    np.testing.assert_allclose(maps, want, atol=1e-6)
    # 3x3 max-pooling, clipped at the ends, kept at every second displacement from the centre
    for K in (3, 5, 7, 9, 11):
        x = rng.random((2, 3, K, K)).astype(np.float32)
        Rk = K // 2
        keep = np.arange(-(Rk // 2), Rk // 2 + 1) * 2 + Rk
        want = np.array([[[[x[b, c, max(p - 1, 0):p + 2, max(q - 1, 0):q + 2].max() for q in keep] for p in keep]
                          for c in range(3)] for b in range(2)])
        np.testing.assert_array_equal(matching._pool(x), want)


def test_flow_report_of_a_profile_without_the_simulated_part():
    from ofrnn.experiments import flow as bench

    row = dict(epe=1.4, aae=0.9, density=1.0)
    res = dict(profile="mc", versions={"ofrnn": "0"}, seconds=1.0,
               motorcycle=dict(scale=0.5, shape=[250, 370], repeats=3,
                               table={"deep": dict(row, ms=300.0), "opencv-deepflow": dict(row, epe=1.5, ms=200.0)}))
    text = bench.report(res)
    assert "simulated cardiac motion" not in text and "the fastest of 3 calls" in text
    assert "ratio 1.50 (target <= 2)" in text and "Lowest EPE among dense methods: **deep**" in text


def test_best_path_per_key_is_what_a_three_key_sort_keeps():
    rng = np.random.default_rng(5)
    key = rng.integers(0, 50, 400)
    score = rng.integers(0, 4, 400).astype(np.float32)  # many ties within a key
    score[::37] = -np.inf
    order = np.lexsort((np.arange(400), score, key))
    last = np.ones(400, bool)
    last[:-1] = key[order[1:]] != key[order[:-1]]
    np.testing.assert_array_equal(matching._best_per_key(key, score), np.sort(order[last]))
    assert matching._best_per_key(key[:0], score[:0]).size == 0


def test_acdc_tracking_reports_how_much_of_the_contraction_a_flow_follows(tmp_path, monkeypatch):
    import h5py

    from ofrnn.experiments import flow as bench

    # one slice: a disc cavity (label 3) in a ring (label 2) that shrinks from radius 12 to 9 at ES
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    for frame, rc in (("01", 12), ("02", 9)):
        label = np.where(r < rc, 3, np.where(r < rc + 5, 2, 0)).astype(np.uint8)
        # patient061 is a calibration patient (experiments/realism.toml [split]): never scored
        for patient in ("001", "061"):
            with h5py.File(tmp_path / f"patient{patient}_frame{frame}_slice_1.h5", "w") as f:
                f["image"] = (label * 80).astype(np.float32)
                f["label"] = label
    # "exact": the radial contraction that maps the ED cavity onto the ES one; "zero": no motion
    def exact(a, b):  # about the crop's centre, where the cavity's centre lands
        y, x = np.mgrid[:a.shape[0], :a.shape[1]]
        return np.stack([(y - (a.shape[0] - 1) / 2), (x - (a.shape[1] - 1) / 2)]).astype(np.float32) * (9 / 12 - 1)

    monkeypatch.setitem(bench.F.METHODS, "exact", exact)
    monkeypatch.setitem(bench.F.METHODS, "zero", lambda a, b: np.zeros((2,) + a.shape, np.float32))
    cfg = {"acdc": dict(dir=str(tmp_path), slices=0, margin=0.0, methods=["exact", "zero"])}
    res = bench.acdc(cfg, {})
    assert res["slices"] == 1 and res["patients"] == ["patient001"]
    table = res["table"]
    assert table["zero"]["cavity_area_ratio_median"] == pytest.approx((12 / 9) ** 2, rel=0.1)
    assert table["exact"]["cavity_area_ratio_median"] == pytest.approx(1.0, abs=0.1)
    assert table["exact"]["dice_lv_cavity"] > 0.9 > table["zero"]["dice_lv_cavity"]


def test_simulated_tracking_carries_the_ed_cavity_onto_the_es_one_and_scores_a_still_contour(tmp_path, monkeypatch):
    from ofrnn.experiments import flow as bench
    from ofrnn.simulate import simulate_cohort
    from ofrnn.store import open_cohort

    cohort = tmp_path / "c.h5"
    simulate_cohort(cohort, n_subjects=2, seed=4, matrix=96, frames=10, progress=False)
    cases = bench.tracking_cases(cohort)
    assert len(cases) == 2
    with open_cohort(cohort) as c:
        ids = c.ids
    for (sid, frames, ed, es, spacing), want in zip(cases, ids):
        assert sid == want and frames.shape[1:] == (64, 64) and 2 <= len(frames) <= 10 and spacing == 1.0
        # physics: the exact flows carry the ED cavity onto a clearly smaller one (systole)
        area = lambda poly: bench._polygon_mask(poly, frames.shape[1:]).sum()  # noqa: E731
        assert area(es) < 0.95 * area(ed)
    monkeypatch.setitem(bench.F.METHODS, "zero", lambda a, b: np.zeros((2,) + a.shape, np.float32))
    cfg = {"simulated": {"cohort": str(cohort)}, "tracking": {"subjects": 0, "methods": ["zero", "farneback"]}}
    res = bench.tracking(cfg, {})
    zero = res["table"]["zero"]
    # a still contour is off by the ED -> ES distance and keeps the ED area
    assert zero["mcd_px_mean"] == pytest.approx(np.mean([bench._contour_distance(ed, es) for _, _, ed, es, _ in cases]))
    assert zero["es_area_ratio_median"] > 1.05
    assert res["table"]["farneback"]["mcd_px_mean"] < zero["mcd_px_mean"]
    # the tuning's scorer of the same protocol (the deep OF with the given settings)
    err, ms = bench._tracking_errors(cases, {})
    assert err < zero["mcd_px_mean"] and ms > 0
    assert "Simulated contour tracking" in bench.report({"profile": "t", "versions": {}, "seconds": 1.0, "tracking": res})


def test_brightness_weight_that_decays_to_the_finest_level_leaves_a_single_level_unchanged():
    # delta_k = delta (k / k_max)^delta_decay: one pyramid level is the finest, so any decay > 0
    # switches the brightness term off there and the flow is the gradient-only one; decay 0 keeps it.
    rng = np.random.default_rng(3)
    a = ndi.gaussian_filter(rng.random((40, 40)), 2).astype(np.float32)
    b = ndi.shift(a, (0.6, -0.4), order=1, mode="nearest")
    one = dict(min_size=40, beta=0.0)
    plain = F.deep_flow(a, b, delta=0.0, **one)
    np.testing.assert_array_equal(F.deep_flow(a, b, delta=2.0, delta_decay=1.0, **one), plain)
    assert np.abs(F.deep_flow(a, b, delta=2.0, delta_decay=0.0, **one) - plain).max() > 1e-3


def test_brightness_weight_falls_over_the_pyramid_as_its_decay_says(monkeypatch):
    seen = {}
    real = variational._refine_level

    def spy(r, m, flow, **kw):
        seen[r.shape[-2:]] = kw["delta"]
        return real(r, m, flow, **kw)

    monkeypatch.setattr(variational, "_refine_level", spy)
    a = np.random.default_rng(4).random((64, 64)).astype(np.float32)
    F.deep_flow(a, a, delta=2.0, delta_decay=0.75, beta=0.0)
    shapes = _pyramid.pyramid_shapes((64, 64), downscale=F.DEFAULTS["downscale"], min_size=F.DEFAULTS["min_size"],
                                     max_levels=F.DEFAULTS["max_levels"])
    k_max = len(shapes) - 1
    assert k_max >= 2 and set(seen) == set(shapes)
    for k, shape in enumerate(shapes):
        assert seen[shape] == pytest.approx(2.0 * (k / k_max) ** 0.75)
    with pytest.raises(OfrnnError, match="delta_decay"):
        F.deep_flow(a, a, delta_decay=-1.0)


def test_acdc_cases_keep_one_side_of_the_real_data_split(tmp_path):
    import h5py

    from ofrnn.experiments import flow as bench

    yy, xx = np.mgrid[:60, :60]
    r = np.hypot(yy - 30, xx - 30)
    label = np.where(r < 8, 3, np.where(r < 12, 2, 0)).astype(np.uint8)
    for patient in ("041", "061"):
        for frame in ("01", "02"):
            with h5py.File(tmp_path / f"patient{patient}_frame{frame}_slice_1.h5", "w") as f:
                f["image"] = (label * 80).astype(np.float32)
                f["label"] = label
    # experiments/realism.toml [split]: ACDC 061-080 are calibration patients, 041-060 evaluation
    assert [c[0] for c in bench.acdc_cases(tmp_path, calibration=True)] == ["patient061/slice01"]
    assert [c[0] for c in bench.acdc_cases(tmp_path, calibration=False)] == ["patient041/slice01"]


def test_cavity_error_of_the_tuning_set_is_small_when_the_flow_follows_systole():
    # a bright cavity in a grey ring shrinks from radius 14 to 9: the ED cavity moved by the deep
    # OF's ED->ES flow lands on the ES cavity (1 - Dice near 0), where not moving leaves 0.42
    from ofrnn.experiments import flow as bench

    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    rng = np.random.default_rng(0)

    def frame(rc):
        lab = np.where(r < rc, 3, np.where(r < rc + 6, 2, 0)).astype(np.uint8)
        img = np.select([lab == 3, lab == 2], [1.0, 0.35], 0.1) + 0.02 * rng.standard_normal(lab.shape)
        return ndi.gaussian_filter(img, 0.7).astype(np.float32), lab

    (a, la), (b, lb) = frame(14), frame(9)
    still = 1 - bench._dice(la == 3, lb == 3)
    err, _ = bench._pair_errors([("patient061/slice01", a, b, la, lb)], {}, bench._cavity_error)
    assert still == pytest.approx(0.42, abs=0.01)
    assert err < 0.05


def test_median_filter_removes_an_outlier_and_keeps_a_straight_motion_boundary():
    flow = np.zeros((2, 2, 20, 20), np.float32)
    flow[:, 1, :, :10] = 1.5  # left half moves, right half is still
    spiked = flow.copy()
    spiked[0, :, 5, 15] = 9.0  # one wrong vector in the still half
    np.testing.assert_array_equal(_pyramid.median(spiked, 5), flow)
    np.testing.assert_array_equal(_pyramid.median(spiked, 3), flow)
    assert _pyramid.median(spiked, 0) is spiked
    with pytest.raises(ValueError, match="median size"):
        _pyramid.median(flow, 7)
    a = np.zeros((16, 16), np.float32)
    for bad in (7, 1, 3.0, "5"):
        with pytest.raises(OfrnnError, match="median"):
            F.deep_flow(a, a, median=bad)
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(OfrnnError, match="kappa"):
            F.deep_flow(a, a, kappa=bad)


def test_deep_flow_filters_each_level_and_takes_more_than_an_opencv_call_of_channels():
    # The median is part of the estimate (a flow without it differs), and a cine longer than
    # OpenCV's 128 channels per call (64 pairs of flow components) is solved in shares.
    rng = np.random.default_rng(5)
    a = ndi.gaussian_filter(rng.random((24, 24)), 1.5).astype(np.float32)
    b = ndi.shift(a, (0.4, -0.3), order=1, mode="nearest")
    assert np.abs(F.deep_flow(a, b, median=5) - F.deep_flow(a, b, median=0)).max() > 1e-3
    flows = F.sequence_flow(np.stack([a, b] * 35), beta=0.0)  # 69 pairs
    assert flows.shape == (69, 2, 24, 24)
    # the pair (a, b) in the first OpenCV share of channels and in the second, and (b, a) likewise
    np.testing.assert_allclose(flows[68], flows[0], atol=1e-5)
    np.testing.assert_allclose(flows[67], flows[1], atol=1e-5)
    assert np.abs(flows[1] + flows[0]).mean() < 0.05 < np.abs(flows[0]).mean()  # (b, a) undoes (a, b)


def test_local_smoothness_weight_is_epicflows():
    gx = np.array([0.0, 255.0 * np.log(2) / 5.0, 3.0], np.float32)
    gy = np.array([0.0, 0.0, 4.0], np.float32)
    np.testing.assert_allclose(variational.local_smoothness(gx, gy, 5.0), [1.0, 0.5, np.exp(-5 * 5 / 255)], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_aware_smoothness_leaks_less_motion_across_an_intensity_edge(seed):
    # The left half moves 1 px to the right, the right half stays; the motion boundary is an
    # intensity step. EpicFlow's weight lowers alpha on the step, so less of the left half's motion
    # spreads onto the still side, and the moving side follows at least as well.
    H = W = 48
    t = texture(size=H, seed=seed, pad=0)
    img = ((t - t.mean()) / t.std() * 8 + np.where(np.arange(W) < W // 2, 60.0, 200.0)).astype(np.float32)
    mov = img.copy()
    mov[:, :W // 2] = ndi.shift(img, (0, 1.0), order=3, mode="nearest")[:, :W // 2]
    plain, aware = (F.deep_flow(img, mov, kappa=k, beta=0.0, median=0) for k in (0.0, 5.0))
    still, moving = (slice(8, -8), slice(W // 2 + 1, W // 2 + 5)), (slice(8, -8), slice(W // 2 - 8, W // 2 - 3))
    assert np.abs(aware[1][still]).mean() < np.abs(plain[1][still]).mean()
    assert np.abs(aware[1][moving] - 1).mean() <= np.abs(plain[1][moving] - 1).mean()


def test_every_deep_of_tuning_row_names_only_deep_flow_settings():
    import tomllib

    from ofrnn.experiments.flow import TUNING_TITLES

    cfg = tomllib.loads((Path(__file__).resolve().parents[1] / "experiments" / "flow.toml").read_text())
    for section in TUNING_TITLES:
        stage = cfg["tuning"][section]
        rows = [stage.get("fixed", {}), stage.get("reference", {})] + stage["candidates"]
        for row in rows:
            assert set(row) <= set(F.DEFAULTS), (section, row)
