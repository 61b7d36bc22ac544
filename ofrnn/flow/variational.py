"""Variational refinement of DeepFlow (paper Sec. 2, Eqs. 4-7; Weinzaepfel et al. ICCV 2013).

Minimises, at every level of a coarse-to-fine pyramid with warping,

    E(w) = sum_x  E_D + alpha E_S + beta E_M                                   (Eq. 4)
    E_D  = delta Psi(w^T J0 w) + gamma Psi(w^T Jxy w)                          (Eq. 5)
    E_S  = Psi(|grad u|^2 + |grad v|^2)                                        (Eq. 6)
    E_M  = c(x) Psi(|w - w'|^2)                                                (Eq. 7)

with w = (u, v, 1), normalised motion tensors J0 (brightness constancy) and Jxy (gradient
constancy) (Zimmer et al. 2011: each constraint divided by its squared spatial gradient plus
zeta^2, so strong edges do not dominate), Psi(s^2) = sqrt(s^2 + eps^2), and the matches w' with
their confidences c(x) from :mod:`ofrnn.flow.matching`. The Euler-Lagrange equations are solved
with lagged non-linearities (``n_outer`` fixed-point iterations, Brox et al. ECCV 2004); each
fixed point's linear system (2x2 blocks per pixel plus the smoothness Laplacian) is solved by
preconditioned conjugate gradients (default) or DeepFlow's red-black block SOR (``solver="sor"``,
relaxation ``omega``), ``n_iter`` iterations, all vectorised over a batch of image pairs.

Beyond DeepFlow, alpha may vary per pixel as alpha exp(-kappa |grad I|) (``kappa``,
:func:`local_smoothness`; EpicFlow's variational step, Revaud et al. CVPR 2015), and
:mod:`ofrnn.flow.deep` median-filters each level's result (Sun, Roth & Black, CVPR 2010).
"""
from __future__ import annotations

import numpy as np

from . import _pyramid

EPS = 1e-3  # Psi(s^2) = sqrt(s^2 + eps^2), DeepFlow's epsilon
_ZETA = 0.1  # normalisation of the motion tensors (DeepFlow, images in [0, 255])


def _psi_prime(s2, eps):
    """Derivative of Psi(s^2) = sqrt(s^2 + eps^2) with respect to s^2."""
    return 0.5 / np.sqrt(s2 + eps * eps)


def _checkerboard(shape):
    yy, xx = np.indices(shape[-2:])
    red = ((yy + xx) % 2 == 0)
    return red, ~red


def _neighbour_sum(wx, wy, f, out=None):
    """sum_n w_n f_n over the 4-neighbourhood; wx[..., j] weights the edge (j, j+1), wy likewise.
    With ``out``, the sum is added to it in place."""
    if out is None:
        out = np.zeros_like(f)
    out[..., :, :-1] += wx[..., :, :-1] * f[..., :, 1:]
    out[..., :, 1:] += wx[..., :, :-1] * f[..., :, :-1]
    out[..., :-1, :] += wy[..., :-1, :] * f[..., 1:, :]
    out[..., 1:, :] += wy[..., :-1, :] * f[..., :-1, :]
    return out


def _grad(f, axis):
    """Central differences along ``axis`` (-1: x, -2: y), one-sided at the border: np.gradient's
    arithmetic with unit spacing, without its per-call overhead (the solver calls it 4 times per
    fixed point)."""
    if axis not in (-1, -2):
        raise ValueError(f"axis must be -1 (x) or -2 (y), got {axis}")

    def at(s):
        return (Ellipsis, s) if axis == -1 else (Ellipsis, s, slice(None))

    out = np.empty_like(f)
    out[at(slice(1, -1))] = (f[at(slice(2, None))] - f[at(slice(None, -2))]) / 2.0
    out[at(0)] = f[at(1)] - f[at(0)]
    out[at(-1)] = f[at(-1)] - f[at(-2)]
    return out


def _edge_weights(psi):
    """Smoothness weights on the edges between pixels (mean of the two pixels' Psi'), zero across
    the image border (Neumann boundary)."""
    wx = np.zeros_like(psi)
    wy = np.zeros_like(psi)
    wx[..., :, :-1] = 0.5 * (psi[..., :, :-1] + psi[..., :, 1:])
    wy[..., :-1, :] = 0.5 * (psi[..., :-1, :] + psi[..., 1:, :])
    return wx, wy


def local_smoothness(gx, gy, kappa):
    """EpicFlow's local smoothness weight exp(-kappa |grad I|), which multiplies alpha pixel by
    pixel: 1 on flat areas, so the flow may break only where the image has an edge.

    Parameters
    ----------
    gx, gy : ndarray
        Image gradient (per pixel of the level it is taken on) of images in [0, 255]; it is
        taken per unit intensity range (/ 255).
    kappa : float
        Decay of the weight with the gradient (5 in EpicFlow).

    Returns
    -------
    ndarray, the shape of ``gx``, in (0, 1].

    References
    ----------
    Revaud et al., "EpicFlow", CVPR 2015, Sec. 4.
    """
    return np.exp(np.float32(-kappa / 255.0) * np.sqrt(gx * gx + gy * gy))


def _refine_level(reference, moving, flow, *, alpha, beta, gamma, delta, n_outer, n_iter, eps=EPS, omega=1.6, solver="cg",
                  match_flow=None, match_weight=None, kappa=0.0):
    """One pyramid level of the DeepFlow energy (Eqs. 4-7): returns the refined (B, 2, H, W) flow."""
    warped, inside = _pyramid.warp(moving, flow)
    # Spatial derivatives of the mean of both images, temporal ones as differences (DeepFlow).
    gx0, gy0 = _pyramid.derivatives(reference)
    gx1, gy1 = _pyramid.derivatives(warped)
    Ix, Iy = 0.5 * (gx0 + gx1), 0.5 * (gy0 + gy1)
    It = warped - reference
    Ixx, Ixy = _pyramid.derivatives(Ix)
    _, Iyy = _pyramid.derivatives(Iy)
    Ixt, Iyt = gx1 - gx0, gy1 - gy0
    # Normalised motion tensors (Eq. 5): each constraint divided by |its spatial gradient|^2 + zeta^2.
    valid = inside.astype(reference.dtype)
    th0 = valid / (Ix * Ix + Iy * Iy + _ZETA ** 2)
    thx = valid / (Ixx * Ixx + Ixy * Ixy + _ZETA ** 2)
    thy = valid / (Ixy * Ixy + Iyy * Iyy + _ZETA ** 2)

    local = local_smoothness(gx0, gy0, kappa) if kappa else None
    v, u = flow[:, 0], flow[:, 1]
    du = np.zeros_like(u)
    dv = np.zeros_like(v)
    for _ in range(n_outer):
        # Lagged robust weights Psi' of every term at the current increment (fixed point).
        iz = It + Ix * du + Iy * dv
        pd = delta * _psi_prime(th0 * iz * iz, eps) * th0
        ixz = Ixt + Ixx * du + Ixy * dv
        iyz = Iyt + Ixy * du + Iyy * dv
        pg = gamma * _psi_prime(thx * ixz * ixz + thy * iyz * iyz, eps)
        a11 = pd * Ix * Ix + pg * (thx * Ixx * Ixx + thy * Ixy * Ixy)
        a12 = pd * Ix * Iy + pg * (thx * Ixx * Ixy + thy * Ixy * Iyy)
        a22 = pd * Iy * Iy + pg * (thx * Ixy * Ixy + thy * Iyy * Iyy)
        b1 = -(pd * Ix * It + pg * (thx * Ixx * Ixt + thy * Ixy * Iyt))
        b2 = -(pd * Iy * It + pg * (thx * Ixy * Ixt + thy * Iyy * Iyt))
        if match_weight is not None and beta > 0:
            mu, mv = u + du - match_flow[:, 1], v + dv - match_flow[:, 0]
            pm = beta * match_weight * _psi_prime(mu * mu + mv * mv, eps)
            a11 = a11 + pm
            a22 = a22 + pm
            b1 = b1 - pm * (u - match_flow[:, 1])
            b2 = b2 - pm * (v - match_flow[:, 0])
        U, V = u + du, v + dv
        ux, uy = _grad(U, -1), _grad(U, -2)
        vx, vy = _grad(V, -1), _grad(V, -2)
        ps = alpha * _psi_prime(ux * ux + uy * uy + vx * vx + vy * vy, eps)
        if local is not None:
            ps = ps * local
        wx, wy = _edge_weights(ps)
        wsum = _neighbour_sum(wx, wy, np.ones_like(u))
        # The smoothness of the current flow enters as a constant right-hand side.
        b1 = b1 + _neighbour_sum(wx, wy, u) - wsum * u
        b2 = b2 + _neighbour_sum(wx, wy, v) - wsum * v
        if solver == "sor":
            du, dv = _sor(a11, a12, a22, wx, wy, wsum, b1, b2, du, dv, n_iter=n_iter, omega=omega)
        else:
            du, dv = _pcg(a11, a12, a22, wx, wy, wsum, b1, b2, du, dv, n_iter=n_iter)
    return np.stack([v + dv, u + du], axis=1)


def _sor(a11, a12, a22, wx, wy, wsum, b1, b2, du, dv, *, n_iter, omega):
    """Red-black block SOR on the per-pixel 2x2 systems of the linearised Euler-Lagrange equations."""
    m11, m22 = a11 + wsum, a22 + wsum
    det = m11 * m22 - a12 * a12
    i11, i12, i22 = m22 / det, -a12 / det, m11 / det
    for _ in range(n_iter):
        for c in _checkerboard(du.shape):
            ru = b1 + _neighbour_sum(wx, wy, du)
            rv = b2 + _neighbour_sum(wx, wy, dv)
            du = np.where(c, (1 - omega) * du + omega * (i11 * ru + i12 * rv), du)
            dv = np.where(c, (1 - omega) * dv + omega * (i12 * ru + i22 * rv), dv)
    return du, dv


def _pcg(a11, a12, a22, wx, wy, wsum, b1, b2, du, dv, *, n_iter):
    """Conjugate gradients with a 2x2 block-Jacobi preconditioner on the same linear system.

    The system is symmetric positive definite; with the large smoothness weights Psi' takes on
    smooth flows (1 / (2 eps)) SOR needs hundreds of sweeps to move the low frequencies, CG a few
    tens, at the same cost per iteration. u and v travel stacked as (B, 2, H, W) so each step is
    one NumPy call for both.
    """
    m11, m22 = a11 + wsum, a22 + wsum
    det = m11 * m22 - a12 * a12
    # The 2x2 blocks as a diagonal (B, 2, H, W) and an off-diagonal (B, 1, H, W) part: a block
    # product is then diag * x + off * x[:, ::-1], two NumPy calls for both flow components.
    diag, off = np.stack([m11, m22], axis=1), a12[:, None]
    idiag, ioff = np.stack([m22 / det, m11 / det], axis=1), (-a12 / det)[:, None]
    B, H, W = du.shape
    # The off-diagonal (neighbour) part of the system: -w on each edge, laid out once as
    # contiguous (B, 2, ...) arrays with product buffers, so that each of the 2 x n_iter products
    # below runs on equal shapes without allocating (the same arithmetic as _neighbour_sum).
    w_right = np.ascontiguousarray(np.broadcast_to(-wx[:, None, :, :-1], (B, 2, H, W - 1)))
    w_down = np.ascontiguousarray(np.broadcast_to(-wy[:, None, :-1, :], (B, 2, H - 1, W)))
    t_block, t_right, t_down = np.empty((B, 2, H, W), du.dtype), np.empty_like(w_right), np.empty_like(w_down)
    tiny = np.float32(1e-30)  # 0 / tiny = 0 where CG has converged exactly (p = 0 or r = 0)

    def matvec(x):
        out = np.multiply(diag, x)
        out += np.multiply(off, x[:, ::-1], out=t_block)
        out[..., :, :-1] += np.multiply(w_right, x[..., :, 1:], out=t_right)
        out[..., :, 1:] += np.multiply(w_right, x[..., :, :-1], out=t_right)
        out[..., :-1, :] += np.multiply(w_down, x[..., 1:, :], out=t_down)
        out[..., 1:, :] += np.multiply(w_down, x[..., :-1, :], out=t_down)
        return out

    def precondition(r):
        return idiag * r + ioff * r[:, ::-1]

    def dot(a, b):
        # one batched BLAS dot per system, shaped to broadcast against (B, 2, H, W)
        return (a.reshape(B, 1, -1) @ b.reshape(B, -1, 1)).reshape(B, 1, 1, 1)

    x = np.stack([du, dv], axis=1)
    r = np.stack([b1, b2], axis=1) - matvec(x)
    z = precondition(r)
    p = z
    rz = dot(r, z)
    for _ in range(n_iter):
        q = matvec(p)
        step = rz / (dot(p, q) + tiny)
        x += step * p
        r -= step * q
        z = precondition(r)
        rz_new = dot(r, z)
        p = z + (rz_new / (rz + tiny)) * p
        rz = rz_new
    return x[:, 0], x[:, 1]
