"""Deep matching (paper Sec. 2 after Eq. 7; Revaud et al. IJCV 2016): quasi-dense matches w' and
their confidences c(x) for the matching term E_M of Eq. 7.

Bottom level: the first image is cut into overlapping N x N atomic patches (N = 4, stride 2);
each is correlated against the second image at every displacement within ``radius`` (the
restricted search that keeps memory bounded on 256x256 and larger inputs), giving the response
maps C_{4,p}. Upper levels (N = 8, 16, ...) aggregate four children: max-pooling (3x3) and
sub-sampling of the children's maps, their average shifted by each child's offset, and the
non-linear rectification C^lambda. With maps indexed by the displacement d relative to the patch
(as here), the shift of the average is implicit: a child at offset s from its parent matches the
parent's d at p + s + d, the same d, so the shifted average is a plain average over children at
equal d. Backtracking descends from the top-level maxima, in every child picking the best
displacement inside the 3x3 pooling window of its parent's choice, down to the atomic patches:
one match (with the accumulated score) per atomic patch reached.

Patch similarity is the mean over the patch of per-pixel descriptor dot products; per-pixel
descriptors are DeepMatching's: 8 half-rectified oriented gradient responses, smoothed, with a
constant "ninth dimension" so flat areas still compare, L2-normalised.
"""
from __future__ import annotations

import numpy as np

from . import _pyramid

_ATOM = 4  # bottom-level patch side N (Sec. 2: N in {4, 8, 16})
_NINTH = 0.3  # DeepMatching's constant ninth descriptor dimension


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


def _bottom_level(d0, d1, radius):
    """Atomic response maps (B, ny, nx, 2R+1, 2R+1) of 4x4 patches at stride 2."""
    B, H, W, C = d0.shape
    R = radius
    # Channels first: the per-shift product then reduces over a leading, contiguous axis.
    c0 = np.ascontiguousarray(np.moveaxis(d0, -1, 1))
    # Edge-replicated padding: zeros would penalise every displacement that reaches outside and
    # pull the matches of border patches inwards.
    c1 = np.pad(np.moveaxis(d1, -1, 1), ((0, 0), (0, 0), (R, R), (R, R)), mode="edge")
    K = 2 * R + 1
    prod = np.empty((K, K, B, H, W), np.float32)
    for i in range(K):
        for j in range(K):
            prod[i, j] = (c0 * c1[:, :, i:i + H, j:j + W]).sum(axis=1)
    # 4x4 box sums at stride 2 from two pairwise sums per axis.
    s = prod[..., :-1, :] + prod[..., 1:, :]
    s = s[..., :-2, :] + s[..., 2:, :]
    s = s[..., :-1] + s[..., 1:]
    s = s[..., :-2] + s[..., 2:]
    s = s[..., ::2, ::2] / (_ATOM * _ATOM)
    return np.ascontiguousarray(np.moveaxis(s, (0, 1), (-2, -1)))


def _pool(maps):
    """3x3 max-pooling over the displacement axes followed by sub-sampling by 2."""
    R = maps.shape[-1] // 2
    p = np.pad(maps, [(0, 0)] * (maps.ndim - 2) + [(1, 1), (1, 1)], constant_values=-np.inf)
    m = np.maximum(np.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    m = np.maximum(np.maximum(m[..., :-2], m[..., 1:-1]), m[..., 2:])
    keep = np.arange(-(R // 2), R // 2 + 1) * 2 + R
    return m[..., keep, :][..., keep]


def _aggregate(maps, rectify):
    """Parent maps from child maps: pool + sub-sample, average of the 4 children, rectification."""
    pooled = _pool(maps)
    ny, nx = (maps.shape[1] - 3) // 2 + 1, (maps.shape[2] - 3) // 2 + 1
    # Children of parent i sit at child indices 2i and 2i + 2 (offsets 0 and N/2 in pixels).
    acc = sum(pooled[:, oy:oy + 2 * ny:2, ox:ox + 2 * nx:2] for oy in (0, 2) for ox in (0, 2))
    return (acc / 4.0) ** rectify


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
    for level in range(len(pyramid) - 2, -1, -1):
        maps = pyramid[level]
        Kc = maps.shape[-1]
        Rc = Kc // 2
        children = []
        for oy in (0, 2):
            for ox in (0, 2):
                cy, cx = 2 * iy + oy, 2 * ix + ox
                best = np.full(b.shape, -np.inf, np.float32)
                by, bx = 2 * ky, 2 * kx
                for ey in (-1, 0, 1):
                    for ex in (-1, 0, 1):
                        ty, tx = 2 * ky + ey, 2 * kx + ex
                        ok = (np.abs(ty) <= Rc) & (np.abs(tx) <= Rc)
                        v = np.where(ok, maps[b, cy, cx, np.clip(ty + Rc, 0, Kc - 1), np.clip(tx + Rc, 0, Kc - 1)],
                                     -np.inf)
                        better = v > best
                        best = np.where(better, v, best)
                        by, bx = np.where(better, ty, by), np.where(better, tx, bx)
                children.append((cy, cx, by, bx, score + best))
        b = np.tile(b, 4)
        iy, ix, ky, kx, score = (np.concatenate(c) for c in zip(*children))
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
    for _ in range(1, n_levels):
        if min(pyr[-1].shape[1:3]) < 3:
            break
        pyr.append(_aggregate(pyr[-1], rectify))
    disp, score = _backtrack(pyr, n_starts)
    return disp, score


def splat(disp, score, shape, *, factor):
    """Spread atomic matches over the pixels of their patch, at full resolution.

    ``factor`` is full-resolution pixels per matching pixel. Returns the (B, 2, H, W) match flow
    w' in full-resolution pixels and the (B, H, W) confidences c(x): every pixel takes the
    best-scoring of the (up to four) atomic patches covering it; pixels none covers get c = 0.
    """
    B, _, ny, nx = disp.shape
    h, w = 2 * (ny - 1) + _ATOM, 2 * (nx - 1) + _ATOM
    best = np.full((B, h, w), -1.0, np.float32)
    dmap = np.zeros((B, 2, h, w), np.float32)
    for oy in range(0, _ATOM, 2):
        for ox in range(0, _ATOM, 2):
            for ry in range(2):
                for rx in range(2):
                    # Pixels (2i + oy + ry, 2j + ox + rx) of patch (i, j).
                    sl = (slice(None), slice(oy + ry, oy + ry + 2 * ny, 2), slice(ox + rx, ox + rx + 2 * nx, 2))
                    better = score > best[sl]
                    best[sl] = np.where(better, score, best[sl])
                    dsl = (slice(None), slice(None)) + sl[1:]
                    dmap[dsl] = np.where(better[:, None], disp, dmap[dsl])
    conf = np.maximum(best, 0)
    H, W = shape
    # Matching pixel m covers full-resolution pixels [m * factor, (m + 1) * factor).
    full = (int(round(h * factor)), int(round(w * factor)))
    conf = _pyramid.resize(conf, full, interpolation=0)
    dmap = _pyramid.resize(dmap.reshape(B * 2, h, w), full, interpolation=0).reshape(B, 2, *full) * factor
    flow = np.zeros((B, 2, H, W), np.float32)
    c = np.zeros((B, H, W), np.float32)
    hh, ww = min(H, full[0]), min(W, full[1])
    flow[:, :, :hh, :ww] = dmap[:, :, :hh, :ww]
    c[:, :hh, :ww] = conf[:, :hh, :ww]
    return flow, c
