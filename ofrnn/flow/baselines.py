"""The optical-flow methods of paper Table 3 and the external references run beside them.

Table 3 compares the deep optical flow with four classic methods "found in [12]" (Barron, Fleet
& Beauchemin, IJCV 1994): Horn-Schunck, pyramid Horn-Schunck, intensity-based (Lucas-Kanade with
a confidence threshold, hence density < 100 %) and phase-based (Fleet-Jepson, thresholded,
sparse). They are implemented here; OpenCV (Farneback, DIS, contrib DeepFlow, Dual TV-L1) and
scikit-image (TV-L1, iLK) are wrapped as external references.

Every method takes two 2-D images and returns a (2, H, W) float32 flow (dy, dx) from ``reference``
to ``moving``, NaN where it gives no estimate. :data:`METHODS` maps benchmark names to them.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import _pyramid
from .deep import check_pair, deep_flow, to_255

_HS_KERNEL = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]], np.float32) / 12  # Horn & Schunck 1981


def _prepare(reference, moving):
    reference, moving = check_pair(reference, moving)
    stack = to_255(np.stack([reference, moving]))
    return stack[:1], stack[1:]


def _hs_level(ref, mov, flow, *, alpha, n_iter):
    """Horn-Schunck iterations (Jacobi, Horn & Schunck 1981 Eqs. 14-15) for the increment at one
    level, linearised around ``flow`` after warping ``mov`` by it."""
    warped, inside = _pyramid.warp(mov, flow)
    gx0, gy0 = _pyramid.derivatives(ref)
    gx1, gy1 = _pyramid.derivatives(warped)
    Ix, Iy = 0.5 * (gx0 + gx1) * inside, 0.5 * (gy0 + gy1) * inside
    It = (warped - ref) * inside
    v0, u0 = flow[:, 0], flow[:, 1]
    u, v = u0.copy(), v0.copy()
    den = alpha * alpha + Ix * Ix + Iy * Iy
    for _ in range(n_iter):
        ub = np.stack([cv2.filter2D(x, -1, _HS_KERNEL, borderType=cv2.BORDER_REPLICATE) for x in u])
        vb = np.stack([cv2.filter2D(x, -1, _HS_KERNEL, borderType=cv2.BORDER_REPLICATE) for x in v])
        r = (Ix * (ub - u0) + Iy * (vb - v0) + It) / den
        u, v = ub - Ix * r, vb - Iy * r
    return np.stack([v, u], axis=1)


def horn_schunck(reference, moving, *, alpha=240.0, n_iter=400):
    """Single-scale Horn-Schunck (quadratic data and smoothness terms, images in [0, 255]).

    Parameters
    ----------
    reference, moving : array_like (H, W)
    alpha : float, keyword-only
        Smoothness weight (alpha^2 in Horn & Schunck's denominator). Default 240 and 400 Jacobi
        iterations: chosen on the simulated training cohort (results/flow/tuning.md; start 15, 200).
    n_iter : int, keyword-only
        Jacobi iterations.

    Returns
    -------
    flow : ndarray (2, H, W) float32 (dy, dx)

    References
    ----------
    Horn & Schunck, Artificial Intelligence 17, 1981; Barron et al., IJCV 1994 (paper ref. [12]).
    """
    r, m = _prepare(reference, moving)
    return _hs_level(r, m, np.zeros((1, 2) + r.shape[1:], np.float32), alpha=alpha, n_iter=n_iter)[0]


def pyramid_horn_schunck(reference, moving, *, alpha=240.0, n_iter=100, n_warps=3, downscale=0.5, min_size=32):
    """Horn-Schunck inside the shared coarse-to-fine warping scheme (:func:`_pyramid.coarse_to_fine`).

    Parameters as :func:`horn_schunck`, plus ``n_warps`` warps per level and the pyramid ratio
    ``downscale`` down to ``min_size`` pixels. Defaults (alpha 240, 3 warps of 100 iterations,
    levels down to 32 px) chosen on the simulated training cohort (start: 15, 2, 8 px).
    """
    r, m = _prepare(reference, moving)

    def solver(a, b, flow, level):
        for _ in range(n_warps):
            flow = _hs_level(a, b, flow, alpha=alpha, n_iter=n_iter)
        return flow

    return _pyramid.coarse_to_fine(r, m, solver, downscale=downscale, min_size=min_size)[0]


def _structure(Ix, Iy, sigma):
    def win(x):
        return _pyramid.gaussian(x, sigma)
    return win(Ix * Ix), win(Ix * Iy), win(Iy * Iy)


def lucas_kanade(reference, moving, *, sigma=6.0, tau=300.0, n_warps=1, downscale=0.5, min_size=16):
    """Intensity-based flow: Lucas-Kanade with a Gaussian window and a confidence threshold.

    Pyramidal and iterated (``n_warps`` per level); at the finest level the flow is kept only where
    the smaller eigenvalue of the windowed structure tensor is at least ``tau`` (Barron et al.'s
    reliability measure; images in [0, 255]), so the result is sparse. Defaults (window sigma 6,
    tau 300, 1 warp) chosen on the simulated training cohort as the most accurate setting that
    keeps the paper's Table 3 density of 55 % (start: 2, 100, 3).

    Returns
    -------
    flow : ndarray (2, H, W) float32 (dy, dx), NaN where the estimate is unreliable.

    References
    ----------
    Lucas & Kanade, IJCAI 1981; Barron et al., IJCV 1994, Sec. 4.
    """
    r, m = _prepare(reference, moving)
    lam = {}

    def solver(a, b, flow, level):
        for _ in range(n_warps):
            warped, inside = _pyramid.warp(b, flow)
            gx0, gy0 = _pyramid.derivatives(a)
            gx1, gy1 = _pyramid.derivatives(warped)
            Ix, Iy = 0.5 * (gx0 + gx1) * inside, 0.5 * (gy0 + gy1) * inside
            It = (warped - a) * inside
            a11, a12, a22 = _structure(Ix, Iy, sigma)
            b1, b2 = _pyramid.gaussian(-Ix * It, sigma), _pyramid.gaussian(-Iy * It, sigma)
            det = a11 * a22 - a12 * a12
            ok = det > 1e-6
            det = np.where(ok, det, 1)
            du = np.where(ok, (a22 * b1 - a12 * b2) / det, 0)
            dv = np.where(ok, (a11 * b2 - a12 * b1) / det, 0)
            flow = flow + np.stack([dv, du], axis=1)
        tr = a11 + a22
        lam[level] = 0.5 * (tr - np.sqrt(np.maximum(tr * tr - 4 * (a11 * a22 - a12 * a12), 0)))
        return flow

    flow = _pyramid.coarse_to_fine(r, m, solver, downscale=downscale, min_size=min_size)[0]
    flow[:, lam[0][0] < tau] = np.nan
    return flow


def _gabor_bank(wavelength, n_orient):
    """Complex Gabor kernels, one octave bandwidth, orientations over [0, pi)."""
    sigma = 0.56 * wavelength
    half = int(np.ceil(3 * sigma))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    env = np.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma))
    k0 = 2 * np.pi / wavelength
    bank = []
    for th in np.arange(n_orient) * np.pi / n_orient:
        ky, kx = k0 * np.sin(th), k0 * np.cos(th)
        g = env * np.exp(1j * (kx * xx + ky * yy))
        g -= env * (g.sum() / env.sum())  # zero DC: a band-pass filter
        bank.append(((ky, kx), g.real.astype(np.float32), g.imag.astype(np.float32)))
    return bank


def phase_flow(reference, moving, *, wavelength=12.0, n_orient=6, amp_frac=0.05, freq_tol=0.5, window=2,
               tau=0.05, max_residual=0.05):
    """Phase-based flow in the style of Fleet & Jepson: component velocities from the temporal
    phase difference of band-pass (Gabor) responses, combined by least squares over a
    neighbourhood; only stable, consistent estimates are kept, so the result is sparse.

    Per orientation the phase constraint is grad(phi) . w + phi_t = 0 with grad(phi) from the
    complex responses (Im(conj(R) grad R) / |R|^2) and phi_t = arg(R1 conj(R0)). A constraint is
    kept where the amplitude exceeds ``amp_frac`` of the image's largest and the local frequency
    is within ``freq_tol`` of the filter's tuning (Fleet & Jepson's stability tests). Constraints
    from the (2 ``window`` + 1)^2 neighbourhood are solved jointly for w; the estimate is kept
    when the normal matrix's smaller eigenvalue is at least ``tau`` and the RMS phase residual
    at most ``max_residual`` radians. Defaults (wavelength 12 px, tau 0.05, residual 0.05 rad)
    chosen on the simulated training cohort as the most accurate setting that keeps the paper's
    Table 3 density of 13 % (start: 6, 0.01, 0.3).

    Returns
    -------
    flow : ndarray (2, H, W) float32 (dy, dx), NaN where no reliable estimate.

    References
    ----------
    Fleet & Jepson, IJCV 5, 1990; Barron et al., IJCV 1994, Sec. 4.
    """
    r, m = _prepare(reference, moving)
    r, m = r[0], m[0]
    box = (2 * window + 1, 2 * window + 1)
    S = {k: np.zeros(r.shape, np.float64) for k in ("yy", "xy", "xx", "ty", "tx", "tt", "n")}
    for (ky, kx), kr, ki in _gabor_bank(wavelength, n_orient):
        # filter2D correlates; the conjugate kernel makes it a convolution, whose phase grows
        # along +k (so the frequency test below compares with +k).
        R0 = cv2.filter2D(r, -1, kr) - 1j * cv2.filter2D(r, -1, ki)
        R1 = cv2.filter2D(m, -1, kr) - 1j * cv2.filter2D(m, -1, ki)
        Rm = 0.5 * (R0 + R1)
        gy = np.gradient(Rm, axis=0)
        gx = np.gradient(Rm, axis=1)
        amp2 = np.abs(Rm) ** 2 + 1e-12
        py = np.imag(np.conj(Rm) * gy) / amp2
        px = np.imag(np.conj(Rm) * gx) / amp2
        pt = np.angle(R1 * np.conj(R0))
        k0 = np.hypot(ky, kx)
        amp = np.sqrt(np.minimum(np.abs(R0), np.abs(R1)) ** 2)
        ok = (amp > amp_frac * amp.max()) & (np.hypot(py - ky, px - kx) <= freq_tol * k0)
        okf = ok.astype(np.float64)
        for key, val in (("yy", py * py), ("xy", px * py), ("xx", px * px), ("ty", pt * py), ("tx", pt * px),
                         ("tt", pt * pt), ("n", 1.0)):
            S[key] += okf * val
    S = {k: cv2.boxFilter(v, -1, box, normalize=False) for k, v in S.items()}
    det = S["yy"] * S["xx"] - S["xy"] ** 2
    safe = np.where(np.abs(det) > 1e-12, det, 1)
    v = -(S["xx"] * S["ty"] - S["xy"] * S["tx"]) / safe
    u = -(S["yy"] * S["tx"] - S["xy"] * S["ty"]) / safe
    n = np.maximum(S["n"], 1)
    tr = S["yy"] + S["xx"]
    lam_min = 0.5 * (tr - np.sqrt(np.maximum(tr * tr - 4 * det, 0))) / n
    # Residual sum of squares of the least-squares fit, per constraint.
    rss = S["tt"] + 2 * (v * S["ty"] + u * S["tx"]) + v * v * S["yy"] + 2 * u * v * S["xy"] + u * u * S["xx"]
    rms = np.sqrt(np.maximum(rss, 0) / n)
    keep = (S["n"] >= 3) & (lam_min >= tau) & (rms <= max_residual)
    flow = np.stack([v, u]).astype(np.float32)
    flow[:, ~keep] = np.nan
    return flow


def _u8(reference, moving):
    r, m = _prepare(reference, moving)
    return r[0].round().astype(np.uint8), m[0].round().astype(np.uint8)


def _cv(flow_xy):
    """OpenCV's (H, W, 2) (dx, dy) to (2, H, W) (dy, dx)."""
    return np.ascontiguousarray(np.moveaxis(flow_xy, -1, 0)[::-1]).astype(np.float32)


def farneback(reference, moving):
    """OpenCV Farneback (polynomial expansion), OpenCV's sample settings (pyramid 0.5 x 3,
    window 15, 3 iterations, poly_n 5, poly_sigma 1.2)."""
    a, b = _u8(reference, moving)
    return _cv(cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0))


def dis(reference, moving):
    """OpenCV DIS (dense inverse search), MEDIUM preset."""
    a, b = _u8(reference, moving)
    return _cv(cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None))


def opencv_deepflow(reference, moving):
    """OpenCV-contrib "DeepFlow": the variational part only, zero initialisation, no matches."""
    a, b = _u8(reference, moving)
    return _cv(cv2.optflow.createOptFlow_DeepFlow().calc(a, b, None))


def opencv_tvl1(reference, moving):
    """OpenCV-contrib Dual TV-L1 (Zach et al. 2007), default settings."""
    a, b = _u8(reference, moving)
    return _cv(cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None))


def skimage_tvl1(reference, moving):
    """scikit-image TV-L1, default settings."""
    from skimage.registration import optical_flow_tvl1
    r, m = _prepare(reference, moving)
    return optical_flow_tvl1(r[0] / 255.0, m[0] / 255.0).astype(np.float32)


def skimage_ilk(reference, moving):
    """scikit-image iterative Lucas-Kanade, default settings (dense)."""
    from skimage.registration import optical_flow_ilk
    r, m = _prepare(reference, moving)
    return optical_flow_ilk(r[0] / 255.0, m[0] / 255.0).astype(np.float32)


#: benchmark name -> function(reference, moving) -> (2, H, W) (dy, dx), NaN where not estimated
METHODS = {
    "deep": deep_flow,
    "hs": horn_schunck,
    "pyramid-hs": pyramid_horn_schunck,
    "lucas-kanade": lucas_kanade,
    "phase": phase_flow,
    "farneback": farneback,
    "dis": dis,
    "opencv-deepflow": opencv_deepflow,
    "opencv-tvl1": opencv_tvl1,
    "skimage-tvl1": skimage_tvl1,
    "skimage-ilk": skimage_ilk,
}
