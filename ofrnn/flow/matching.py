"""Deep matching (paper Sec. 2 after Eq. 7; Revaud et al. IJCV 2016): quasi-dense matches w' and
their confidences c(x) for the matching term E_M of Eq. 7.

Bottom level: the first image is cut into overlapping N x N atomic patches (N = 4, stride 2);
each is correlated against the second image at every displacement within ``radius`` (a search
range that follows the image size, see :func:`search_range`), giving the response maps C_{4,p}.
Upper levels (N = 8, 16, ...) sit on the same stride-2 grid and aggregate their four quadrant
children (offsets 0 and N/2): max-pooling (3x3) and sub-sampling of the children's maps, their
average, and the non-linear rectification C^lambda. With maps indexed by the displacement d
relative to the patch (as here), the shift of the average is implicit: a child at offset s from
its parent matches the parent's d at p + s + d, the same d. Backtracking descends from the
top-level maxima, in every child picking the best displacement inside the 3x3 pooling window of
its parent's choice, down to the atomic patches; each atomic patch keeps its best-scoring path.

Patch similarity is the mean over the patch of per-pixel descriptor dot products; per-pixel
descriptors are DeepMatching's: 8 half-rectified oriented gradient responses, smoothed, with a
constant "ninth dimension" so flat areas still compare, L2-normalised.

:func:`deep_matches` then keeps only matches that survive what DeepMatching and DeepFlow rely on
and an integer matcher lacks:

- **forward-backward consistency**: the match of the target patch back into the first image must
  return to within ``consistency`` matching pixels (Revaud et al.'s reciprocal verification);
- **sub-pixel refinement**: each kept match is refined at full resolution by iterative
  Lucas-Kanade on a Gaussian-weighted window (Lucas & Kanade 1981; Baker & Matthews IJCV 2004,
  inverse compositional). Iterating to convergence with interpolated samples has no pixel-locking
  bias, unlike a parabola fitted to the integer response peak; a match whose window has no 2-D
  structure or whose refinement leaves its matching pixel is dropped;
- **photometric check**: the normalised cross-correlation of the refined window must reach
  ``min_ncc``.

The survivors' matching scores are c(x) of Eq. 7; every other pixel has c = 0.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import _pyramid

# cells per matrix product in _bottom_level: of 8 / 16 / 32 and whole rows, 16 was fastest in each of three
# runs on the motorcycle pair's 96x142 matching grid at radius 24 (one direction: 52 / 32 / 32 / 39 ms on a
# quiet machine, 83 / 36 / 42 / 70 ms on a busier one)
_CELL_BLOCK = 16
_ATOM = 4  # bottom-level patch side N (Sec. 2: N in {4, 8, 16}); _bottom_level builds it of 2x2 cells
_NINTH = 0.3  # DeepMatching's constant ninth descriptor dimension
# Smallest structure-tensor eigenvalue (intensity^2 per pixel, images in [0, 255]) of a refined
# window: below it the window has no 2-D structure (aperture problem) and LK only drifts.
_MIN_EIG = 0.1


def _descriptors(stack, *, sigma=1.0, n_orient=8):
    """Per-pixel (B, H, W, 9) DeepMatching-style descriptors of a (B, H, W) stack."""
    gx, gy = _pyramid.derivatives(_pyramid.gaussian(stack, sigma))
    theta = np.arange(n_orient) * (2 * np.pi / n_orient)
    resp = [np.maximum(0, gx * np.cos(t) + gy * np.sin(t)) for t in theta]
    resp = [_pyramid.gaussian(r, sigma) for r in resp]
    d = np.stack(resp, axis=-1)
    # Normalise the gradient scale per image so the ninth dimension has a fixed meaning.
    scale = np.sqrt((d * d).sum(-1)).mean(axis=(1, 2), keepdims=True)[..., None] + 1e-6
    d = np.concatenate([d / scale, np.full(d.shape[:-1] + (1,), _NINTH, d.dtype)], axis=-1)
    return d / np.sqrt((d * d).sum(-1, keepdims=True))


def _cell_vectors(d):
    """(B, H - 1, W - 1, 4 C) vectors of the 2x2 cells at every pixel of a (B, H, W, C) descriptor
    image, scaled so that summing the dot products of a 4x4 patch's four cells gives the mean
    per-pixel descriptor dot product over the patch."""
    assert _ATOM == 4, "a 4x4 patch is 2x2 cells of 2x2 pixels"
    B, H, W, _ = d.shape
    d = d * np.float32(1.0 / _ATOM)
    return np.concatenate([d[:, y:y + H - 1, x:x + W - 1] for y in range(2) for x in range(2)], axis=-1)


def _bottom_level(d0, d1, radius):
    """Atomic response maps (B, ny, nx, 2R+1, 2R+1) of 4x4 patches at stride 2.

    A 4x4 patch at stride 2 is four 2x2 cells on the stride-2 grid, shared with its neighbours,
    and its response at a displacement is the sum of its cells' responses at that displacement.
    So the responses of the (ny + 1) x (nx + 1) cells are computed (a quarter of the arithmetic
    of whole patches) and summed in fours. Cells go in blocks of :data:`_CELL_BLOCK` along a row;
    each block is one matrix product (BLAS instead of one NumPy pass per displacement) against
    the band of second-image cells it can reach, and each cell's own (2R+1)^2 window is a strided
    diagonal view of the product. Why blocks: the part of the product outside the windows is
    wasted; a whole row's band is (W + 2R - 1) / (2R + 1) times wider than a window (3.9x on the
    motorcycle pair's 142-pixel-wide matching grid at R = 24), a block's (2 _CELL_BLOCK + 2R - 1)
    / (2R + 1) (1.6x there). Each block's columns of the second image are copied once into a
    contiguous tile (together about (2 _CELL_BLOCK + 2R - 1) / (2 _CELL_BLOCK) copies of them), so
    every band is a free reshape. The four cells of a patch are added row by row in the order
    ((top left + top right) + bottom left) + bottom right, the order of a whole-image sum, so the
    maps do not depend on the block size to the last bit (and the cached flows stay valid).
    """
    R = radius
    K = 2 * R + 1
    B, H, W, _ = d0.shape
    ny, nx = (H - _ATOM) // 2 + 1, (W - _ATOM) // 2 + 1
    c0 = np.ascontiguousarray(_cell_vectors(d0)[:, :2 * ny + 1:2, :2 * nx + 1:2])
    # Edge-replicated padding: zeros would penalise every displacement that reaches outside and
    # pull the matches of border patches inwards.
    c1 = _cell_vectors(np.pad(d1, ((0, 0), (R, R), (R, R), (0, 0)), mode="edge"))
    D = c0.shape[-1]
    blocks = []  # (first cell, number of cells, their columns of the second image as a contiguous tile)
    for j0 in range(0, nx + 1, _CELL_BLOCK):
        nb = min(_CELL_BLOCK, nx + 1 - j0)
        w = 2 * (nb - 1) + K  # second-image columns the block's windows span
        blocks.append((j0, nb, np.ascontiguousarray(c1[:, :, 2 * j0:2 * j0 + w])))
    out = np.empty((B, ny, nx, K, K), np.float32)
    cells = np.empty((nx + 1, K, K), np.float32)  # one row of cells
    pairs = np.empty((2, nx, K, K), np.float32)  # horizontal neighbour sums of this row and the last
    for b in range(B):
        for i in range(ny + 1):
            for j0, nb, tile in blocks:
                w = tile.shape[2]
                band = tile[b, 2 * i:2 * i + K].reshape(K * w, D)
                res = (c0[b, i, j0:j0 + nb] @ band.T).reshape(nb, K, w)
                # Cell j's window starts at column 2 j of the tile: cells[j, k, l] = res[j, k, 2 j + l].
                sj, sk, sl = res.strides
                cells[j0:j0 + nb] = np.lib.stride_tricks.as_strided(res, (nb, K, K), (sj + 2 * sl, sk, sl),
                                                                    writeable=False)
            # a patch is the cells (i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1): summed row by row,
            # so the cells of the whole image are never held
            np.add(cells[:-1], cells[1:], out=pairs[i % 2])
            if i:
                row = out[b, i - 1]
                np.add(pairs[(i - 1) % 2], cells[:-1], out=row)
                row += cells[1:]
    return out


def _pool(maps):
    """3x3 max-pooling over the displacement axes, kept at every second displacement."""
    return _max3_every_second(_max3_every_second(maps, -2), -1)


def _max3_every_second(x, axis):
    """Max over each kept entry and its two neighbours along ``axis`` (clipped at the ends), the
    kept entries at indices R - 2 (R // 2), R - 2 (R // 2) + 2, ..., R + 2 (R // 2), R = size // 2
    (displacements 0, +-2, +-4, ...).

    The kept entries and their neighbours are every second entry: strided views, not gathers.
    """
    R = x.shape[axis] // 2
    s, n = R % 2, 2 * (R // 2) + 1  # first kept index, number kept

    def along(a, start, count, step=1):
        idx = [slice(None)] * a.ndim
        idx[axis] = slice(start, start + step * (count - 1) + 1, step)
        return a[tuple(idx)]

    out = along(x, s, n, 2).copy()
    # Left neighbours s - 1 + 2j; with s = 0 the first one is index -1, clipped to itself.
    j0 = 1 - s
    view = along(out, j0, n - j0)
    np.maximum(view, along(x, s - 1 + 2 * j0, n - j0, 2), out=view)
    # Right neighbours s + 1 + 2j; with s = 0 the last one is index 2R + 1, clipped to itself.
    m = n - 1 + s
    view = along(out, 0, m)
    np.maximum(view, along(x, s + 1, m, 2), out=view)
    return out


def _aggregate(maps, rectify, offset):
    """Parent maps from child maps: pool + sub-sample, average of the 4 quadrant children
    (``offset`` grid steps apart), rectification."""
    pooled = _pool(maps)
    ny, nx = maps.shape[1] - offset, maps.shape[2] - offset
    acc = sum(pooled[:, oy:oy + ny, ox:ox + nx] for oy in (0, offset) for ox in (0, offset))
    return (acc * 0.25) ** rectify


def _best_per_key(key, score):
    """Sorted indices of the highest ``score`` per distinct ``key``, the last index among equals.

    What the last entry per key of ``np.lexsort((index, score, key))`` gives, with one integer
    sort instead of a three-key sort (a third of the backtracking's time on a large image).
    Scores must not be NaN (path scores are sums of finite responses, or -inf).
    """
    if len(key) == 0:
        return np.empty(0, np.intp)
    order = np.argsort(key, kind="stable")
    k = key[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    s = score[order]
    top = np.repeat(np.maximum.reduceat(s, starts), np.diff(np.append(starts, len(k))))
    # positions in ``order`` (indices ascending within a key) of each key's best, the last of ties
    last = np.maximum.reduceat(np.where(s == top, np.arange(len(k)), -1), starts)
    return np.sort(order[last])


def _backtrack(pyramid, n_starts):
    """Descend from the top-level maxima to atomic matches.

    Returns per atomic patch (B, ny, nx): displacement (dy, dx) in matching pixels and the score
    (sum of responses along the best path reaching it; 0 where none did).
    """
    top = pyramid[-1]
    B, ny, nx, K, _ = top.shape
    flat = top.reshape(B, ny, nx, K * K)
    n_starts = min(n_starts, K * K)
    order = np.argsort(-flat, axis=-1)[..., :n_starts]
    b, iy, ix, s = np.indices((B, ny, nx, n_starts)).reshape(4, -1)
    k = order[b, iy, ix, s]
    ky, kx = k // K - K // 2, k % K - K // 2
    score = flat[b, iy, ix, k]
    # every child's 3x3 pooling window around twice its parent's displacement, in the order the
    # window is scanned (row offset first): argmax keeps the first best, as a strict ">" scan would
    ey, ex = (e.ravel() for e in np.meshgrid([-1, 0, 1], [-1, 0, 1], indexing="ij"))
    for level in range(len(pyramid) - 2, -1, -1):
        maps = pyramid[level]
        Kc = maps.shape[-1]
        Rc = Kc // 2
        # Quadrants of a parent of side 8 * 2^level: offset by the child's side, 2^(level+1) steps.
        offset = 2 ** (level + 1)
        quads = [(oy, ox) for oy in (0, offset) for ox in (0, offset)]
        b = np.tile(b, 4)
        iy = np.concatenate([iy + oy for oy, _ in quads])
        ix = np.concatenate([ix + ox for _, ox in quads])
        ky, kx, score = np.tile(ky, 4), np.tile(kx, 4), np.tile(score, 4)
        ty, tx = 2 * ky[:, None] + ey, 2 * kx[:, None] + ex  # (n, 9)
        ok = (np.abs(ty) <= Rc) & (np.abs(tx) <= Rc)
        # one flat index per candidate: a single take is several times faster than five index arrays
        at = ((b * maps.shape[1] + iy) * maps.shape[2] + ix)[:, None] * (Kc * Kc)
        at = at + np.clip(ty + Rc, 0, Kc - 1) * Kc + np.clip(tx + Rc, 0, Kc - 1)
        v = np.where(ok, np.ravel(maps).take(at), -np.inf)
        pick = np.argmax(v, axis=1)
        rows = np.arange(len(pick))
        best = v[rows, pick]
        # no candidate inside the child's window: keep twice the parent's displacement, score -inf
        found = np.isfinite(best)
        ky = np.where(found, ty[rows, pick], 2 * ky)
        kx = np.where(found, tx[rows, pick], 2 * kx)
        score = score + best
        # Paths that reach the same patch with the same displacement descend alike from here on:
        # keep one (the best, the last among equals: what the final "last wins" would keep), in
        # the original order. Overlapping parents make these most of the paths.
        span = 4 * Kc + 1  # a displacement's index, room for the 2 * parent's of a path not found
        key = ((b * maps.shape[1] + iy) * maps.shape[2] + ix) * span * span + (ky + 2 * Kc) * span + (kx + 2 * Kc)
        keep = _best_per_key(key, score)
        b, iy, ix, ky, kx, score = b[keep], iy[keep], ix[keep], ky[keep], kx[keep], score[keep]
    ny0, nx0 = pyramid[0].shape[1:3]
    # A target patch reaching outside the second image was compared with padding: no match.
    H, W = 2 * (ny0 - 1) + _ATOM, 2 * (nx0 - 1) + _ATOM
    ty, tx = 2 * iy + ky, 2 * ix + kx
    score = np.where((ty >= 0) & (tx >= 0) & (ty + _ATOM <= H) & (tx + _ATOM <= W), score, 0)
    out_score = np.zeros((B, ny0, nx0), np.float32)
    out_d = np.zeros((B, 2, ny0, nx0), np.float32)
    # Keep the best-scoring path per atomic patch: write in increasing score order, last wins.
    o = np.argsort(score, kind="stable")
    out_score[b[o], iy[o], ix[o]] = score[o]
    out_d[b[o], 0, iy[o], ix[o]] = ky[o]
    out_d[b[o], 1, iy[o], ix[o]] = kx[o]
    return out_d, out_score / len(pyramid)


def match_grid(reference, moving, *, radius=4, max_patch=16, rectify=1.4, n_starts=3, sigma=1.0):
    """Deep matching of batches of images on the atomic patch grid.

    Parameters
    ----------
    reference, moving : ndarray (B, H, W)
        Images already at the matching resolution.
    radius : int
        Restricted search: displacements up to ``radius`` pixels per axis (rounded up to a
        multiple of ``max_patch // 4`` so every level's window is centred).
    max_patch : int
        Top-level patch size N (4, 8 or 16 in the paper).
    rectify : float
        Exponent lambda of the non-linear rectification C^lambda (1.4 in DeepMatching).
    n_starts : int
        Maxima per top-level patch the backtracking starts from.
    sigma : float
        Smoothing of the gradient responses in the descriptors.

    Returns
    -------
    disp : ndarray (B, 2, ny, nx)
        Displacement (dy, dx) of the atomic patch with top-left corner (2 i, 2 j).
    score : ndarray (B, ny, nx)
        Mean response along the backtracking path, in [0, 1]; 0 where no path arrived.
    """
    n_levels = int(np.log2(max_patch // _ATOM)) + 1
    step = 2 ** (n_levels - 1)
    radius = int(np.ceil(max(radius, 1) / step) * step)
    d0 = _descriptors(reference, sigma=sigma)
    d1 = _descriptors(moving, sigma=sigma)
    pyr = [_bottom_level(d0, d1, radius)]
    for level in range(1, n_levels):
        offset = 2 ** level
        if min(pyr[-1].shape[1:3]) <= offset:
            break
        pyr.append(_aggregate(pyr[-1], rectify, offset))
    disp, score = _backtrack(pyr, n_starts)
    return disp, score


def _consistent(forward, backward, tol, backward_score):
    """(B, ny, nx) mask of forward matches whose target patch's backward match returns within
    ``tol`` matching pixels (Chebyshev). The target's nearest grid patch sits e in {-1, 0, 1}
    from the target; its match lands at target + e + d_b, which should be source + e, so the test
    is |d_f + d_b| <= tol whatever e is. A target patch without a backward match of its own
    (``backward_score`` 0: no path reached it, or every one left the image) confirms nothing."""
    B, _, ny, nx = forward.shape
    i, j = np.mgrid[0:ny, 0:nx]
    k = np.clip(np.rint((2 * i + forward[:, 0]) / 2).astype(np.intp), 0, ny - 1)
    l = np.clip(np.rint((2 * j + forward[:, 1]) / 2).astype(np.intp), 0, nx - 1)
    b = np.arange(B)[:, None, None]
    err = np.maximum(np.abs(forward[:, 0] + backward[b, 0, k, l]), np.abs(forward[:, 1] + backward[b, 1, k, l]))
    return (err <= tol) & (backward_score[b, k, l] > 0)


def _refine(reference, moving, disp, factor, *, keep, n_iter=5, min_eig=_MIN_EIG):
    """Sub-pixel refinement of atomic matches at full resolution (inverse-compositional
    Lucas-Kanade, translation only).

    ``reference, moving`` (B, H, W) in [0, 255]; ``disp`` (B, 2, ny, nx) integer matches in
    matching pixels of size ``factor`` full-resolution pixels; only the matches where ``keep``
    (B, ny, nx) is set are refined. The window is the atomic patch at full resolution (at least
    8x8), Gaussian-weighted, on images smoothed with sigma = max(0.8, factor / 2) (both alike,
    so no bias). Returns the (B, 2, ny, nx) displacement in full-resolution pixels (refined where
    ``keep``), a mask of refined windows with 2-D structure (smallest structure-tensor eigenvalue
    per window pixel > ``min_eig``) whose refinement stayed within one matching pixel, and the
    windows' normalised cross-correlation after refinement (0 where not refined).
    """
    ny, nx = disp.shape[2:]
    f = float(factor)
    out = disp.astype(np.float32) * np.float32(f)
    ok = np.zeros(keep.shape, bool)
    ncc = np.zeros(keep.shape, np.float32)
    b, i, j = np.nonzero(keep)
    if not len(b):
        return out, ok, ncc
    L = int(max(4 * round(f), 8))
    sigma = max(0.8, 0.5 * f)
    ref = _pyramid.gaussian(reference, sigma)
    mov = _pyramid.gaussian(moving, sigma)
    gx, gy = _pyramid.derivatives(ref)
    # Matching pixel m covers full-resolution [m f, (m + 1) f): the atomic patch at 2i spans
    # matching pixels 2i .. 2i + 3, centred at 2i + 1.5, i.e. (2i + 2) f - 0.5 at full resolution.
    o = np.arange(L, dtype=np.float32) - (L - 1) / 2
    yy = ((2 * i + 2) * f - 0.5).astype(np.float32)[:, None, None] + o[:, None]
    xx = ((2 * j + 2) * f - 0.5).astype(np.float32)[:, None, None] + o[None, :]
    yy, xx = np.broadcast_arrays(yy, xx)
    bb = b[:, None, None]
    w1 = np.exp(-0.5 * (o / (L / 4)) ** 2)
    w = (w1[:, None] * w1[None]).astype(np.float32)
    w /= w.sum()
    I0 = _pyramid.sample(ref, yy, xx, batch=bb)
    Ix, Iy = _pyramid.sample(gx, yy, xx, batch=bb), _pyramid.sample(gy, yy, xx, batch=bb)
    h11, h12, h22 = ((w * p * q).sum((-1, -2)) for p, q in ((Ix, Ix), (Ix, Iy), (Iy, Iy)))
    det = h11 * h22 - h12 * h12
    half_tr = 0.5 * (h11 + h22)
    lmin = half_tr - np.sqrt(np.maximum(half_tr * half_tr - det, 0))
    safe = np.where(det > 1e-9, det, 1.0)
    d0 = out[b, :, i, j]
    d = d0.copy()

    def warped():
        return _pyramid.sample(mov, yy + d[:, 0, None, None], xx + d[:, 1, None, None], batch=bb)

    for _ in range(n_iter):
        e = warped() - I0
        ex, ey = (w * Ix * e).sum((-1, -2)), (w * Iy * e).sum((-1, -2))
        # Inverse compositional: the template moves by H^-1 J^T e, so the warp moves back by it.
        d[:, 1] -= (h22 * ex - h12 * ey) / safe
        d[:, 0] -= (h11 * ey - h12 * ex) / safe
    a0 = I0 - (w * I0).sum((-1, -2), keepdims=True)
    I1 = warped()
    a1 = I1 - (w * I1).sum((-1, -2), keepdims=True)
    out[b, :, i, j] = d
    ok[b, i, j] = (lmin > min_eig) & (np.abs(d - d0).max(axis=1) <= f)
    ncc[b, i, j] = (w * a0 * a1).sum((-1, -2)) / np.sqrt((w * a0 * a0).sum((-1, -2)) * (w * a1 * a1).sum((-1, -2)) + 1e-9)
    return out, ok, ncc


def search_range(shape, *, match_size=96, match_range=0.25):
    """Matching resolution and search radius from the image size (the rule behind the defaults).

    The matching runs on the image area-downscaled so its shorter side is at most ``match_size``
    pixels and at least halved (DeepMatching's own habit of matching below full resolution, at a
    bounded cost; the matches are refined at full resolution afterwards), and searches
    displacements up to ``match_range`` of that shorter side: a range that follows the field of
    view, +-96 px on a 512x384 FlyingChairs frame, +-16 px on a 64x64 LV ROI.

    Returns
    -------
    (h, w) : tuple of int
        Matching image shape.
    radius : int
        Search radius in matching pixels.
    """
    H, W = shape
    # At least halved: DeepMatching's own default, and on small (cardiac ROI) images the matching
    # then costs about what the variational part does.
    scale = max(2.0, min(H, W) / match_size)
    h, w = max(8, int(round(H / scale))), max(8, int(round(W / scale)))
    return (h, w), max(1, int(round(match_range * min(h, w))))


def deep_matches(reference, moving, *, match_size=96, match_range=0.25, max_patch=16, n_starts=3, consistency=2.0,
                 min_ncc=0.95, min_motion_px=0.0):
    """Verified, sub-pixel deep matches at full resolution: w' and c(x) of Eq. 7.

    Parameters
    ----------
    reference, moving : ndarray (B, H, W)
        Image pairs scaled to [0, 255].
    match_size, match_range : keyword-only
        Matching resolution and search range, see :func:`search_range`.
    max_patch, n_starts : keyword-only
        Top-level patch size N and maxima per top patch the backtracking starts from.
    consistency : float, keyword-only
        Forward-backward tolerance in matching pixels.
    min_ncc : float, keyword-only
        Smallest normalised cross-correlation of a refined match's window.
    min_motion_px : float, keyword-only
        Matches moving less than this (full-resolution pixels) are dropped; those that cannot
        reach it within their refinement are not refined at all (the cost on small motion).

    Returns
    -------
    flow : ndarray (B, 2, H, W)
        Match displacement w' (dy, dx) in pixels, spread over each atomic patch's pixels.
    conf : ndarray (B, H, W)
        c(x): the matching score (mean response along the path, in [0, 1]) of the best verified
        match covering the pixel, 0 where none does.
    """
    B, H, W = reference.shape
    shape, radius = search_range((H, W), match_size=match_size, match_range=match_range)
    a = _pyramid.resize(reference, shape, interpolation=cv2.INTER_AREA)
    b = _pyramid.resize(moving, shape, interpolation=cv2.INTER_AREA)
    kw = dict(radius=radius, max_patch=max_patch, n_starts=n_starts)
    forward, score = match_grid(a, b, **kw)
    factor = H / shape[0]
    # Refinement moves a match by at most one matching pixel per axis, so a match that cannot reach
    # min_motion_px even then is not refined at all.
    reach = np.hypot(np.abs(forward[:, 0]) + 1, np.abs(forward[:, 1]) + 1) * factor
    candidate = (score > 0) & (reach >= min_motion_px)
    if not candidate.any():
        # Nothing could pass: the backward matching (half the cost) would not change the answer.
        return (np.zeros((B, 2, H, W), np.float32), np.zeros((B, H, W), np.float32))
    backward, backward_score = match_grid(b, a, **kw)
    candidate &= _consistent(forward, backward, consistency, backward_score)
    disp, ok, ncc = _refine(reference, moving, forward, factor, keep=candidate)
    keep = candidate & ok & (ncc >= min_ncc) & (np.hypot(disp[:, 0], disp[:, 1]) >= min_motion_px)
    return splat(disp, np.where(keep, score, 0).astype(np.float32), (H, W), factor=factor)


def splat(disp, score, shape, *, factor):
    """Spread atomic matches over the full-resolution pixels nearest to their patch centres.

    ``disp`` (B, 2, ny, nx) in full-resolution pixels, ``score`` (B, ny, nx) with 0 for "no
    match"; ``factor`` is full-resolution pixels per matching pixel. Every pixel takes the match
    of the atomic patch whose centre is nearest (the stride-2 centres tile the image in 2x2
    matching-pixel cells), not the best of the four patches covering it: a match describes its
    window's centre, and spreading it over the whole patch carried the motion of one side of a
    motion boundary a patch-width onto the other. Returns the (B, 2, H, W) match flow w' and the
    (B, H, W) confidences c(x) (0 where the nearest patch has no match).
    """
    B, _, ny, nx = disp.shape
    H, W = shape
    # Full-resolution pixel y sits at matching coordinate (y + 0.5) / factor - 0.5; the centre of
    # atomic patch i at 2i + 1.5.
    iy = np.clip(np.rint(((np.arange(H) + 0.5) / factor - 2.0) / 2), 0, ny - 1).astype(np.intp)
    ix = np.clip(np.rint(((np.arange(W) + 0.5) / factor - 2.0) / 2), 0, nx - 1).astype(np.intp)
    flow = disp[:, :, iy[:, None], ix[None, :]].astype(np.float32)
    conf = np.maximum(score[:, iy[:, None], ix[None, :]], 0).astype(np.float32)
    return flow, conf
