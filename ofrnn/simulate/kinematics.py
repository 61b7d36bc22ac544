"""Cardiac kinematics: the continuous map from end-diastolic (material) to frame-t positions.

The map x = phi_t(X) is the composition of three invertible pieces, each exact and cheap to
invert, so rendering (which needs phi_t^-1) and ground-truth flow (phi_{t+1} o phi_t^-1) come from
one model:

1. **Radial, incompressible LV motion** in polar coordinates (R, Theta) around the LV centre. The
   endocardium moves from R_endo to r_endo = R_endo (1 - s(Theta) f(t)); outside it every point
   keeps the area between itself and the endocardium in its angular sector,
   r^2 = R^2 + (r_endo^2 - R_endo^2) w(R), so in-plane myocardial area is conserved per sector and
   radial thickening follows endocardial inward motion. The blood pool scales uniformly. w(R)
   tapers the motion to zero outside the heart. The RV free wall adds its own inward excursion.
2. **Rotation** of the heart by rho(t) (apex counter-clockwise, base clockwise, viewed from the
   apex), uniform across the wall (area-preserving), tapered outside the heart.
3. **Translation** of the heart (systolic excursion plus breath-hold drift), tapered likewise.

The radial piece is tabulated per angle bin on a fine radius grid; each row is monotone, so its
inverse is a 1-D interpolation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import gaussian_filter1d

from .anatomy import N_ANGLES, Anatomy, periodic_profile

N_RADII = 480


def _knots_curve(knots):
    x, y = np.array(knots, float).T
    return PchipInterpolator(x, y)


def contraction(phase, *, es_phase):
    """Normalised LV contraction f (0 at end-diastole, 1 at end-systole) over the cycle.

    Knots follow the phases of the Wiggers cycle: isovolumic contraction (~5 % of the cycle),
    ejection to end-systole at ``es_phase`` (35-40 %), isovolumic relaxation (~7 %), rapid filling
    (~70 % of the filling in the first third of diastole), diastasis, and the atrial kick (~15-20 %
    of filling) in the last tenth. Shape-preserving (PCHIP) interpolation keeps f within [0, 1].
    """
    e = es_phase
    curve = _knots_curve([(0, 0), (0.05, 0.03), ((0.05 + e) / 2, 0.55), (e, 1.0), (e + 0.07, 0.97),
                          (e + 0.22, 0.30), (0.82, 0.20), (0.92, 0.05), (1.0, 0.0)])
    return np.clip(curve(np.mod(phase, 1.0)), 0, 1)


def twist(phase, *, es_phase):
    """Normalised rotation (0 at ED, 1 at ES): untwisting is fast, mostly during isovolumic
    relaxation and early filling (Notomi et al., Circulation 113:2524 (2006))."""
    e = es_phase
    curve = _knots_curve([(0, 0), ((0.05 + e) / 2, 0.5), (e, 1.0), (e + 0.08, 0.55), (e + 0.2, 0.15),
                          (0.8, 0.04), (1.0, 0.0)])
    return np.clip(curve(np.mod(phase, 1.0)), 0, 1)


#: endocardial shortening factor by infarct transmurality: near normal below 25 %, markedly
#: reduced at 25-75 %, akinetic above (Kim et al., NEJM 343:1445 (2000); Mahrholdt et al.,
#: Circulation 106:2322 (2002)). The last value is drawn per subject in [-0.12, 0.02]
#: (akinetic to slightly dyskinetic).
FUNCTION_VS_TRANSMURALITY = ((0.0, 1.0), (0.25, 0.9), (0.5, 0.45), (0.75, 0.1))

#: LV rotation at end-systole (degrees, counter-clockwise positive viewed from the apex):
#: Lorenz et al., JCMR 2:97 (2000), tagged MRI: apex ~10 deg CCW, base ~3-4 deg CW.
ROTATION_ES_DEG = {"apical": (7.0, 13.0), "mid": (1.0, 5.0), "basal": (-5.0, -2.0)}


@dataclass
class Motion:
    es_phase: float
    shortening: np.ndarray  # (N_ANGLES,) endocardial fractional shortening at ES (negative: dyskinesia)
    rv_excursion: float  # mm, RV free-wall inward motion at ES beyond what the LV field gives
    rotation_es: float  # rad
    translation_es: np.ndarray  # (2,) mm (row, col), heart displacement at ES
    drift: np.ndarray  # (2,) mm over one cycle (breath-hold drift)
    phases: np.ndarray  # (T,) cardiac phase of each frame, with gating jitter; phases[0] == 0
    r_taper: float  # mm, motion starts to fade beyond this radius
    r_window: float  # mm, and is zero beyond this one
    ef_target: float


def sample_motion(rng, anatomy: Anatomy, *, n_frames, rr_ms):
    """Sample one subject's motion: function, rotation, translation, timing.

    Normal slices get an area ejection fraction of 55-75 % (endocardial shortening
    s0 = 1 - sqrt(1 - EF)); post-MI slices lose 0-20 % remote function, and the scar follows
    :data:`FUNCTION_VS_TRANSMURALITY` with a hypokinetic border zone (tethering) that fades over
    10-20 deg into remote myocardium.
    """
    infarct = anatomy.infarct
    ef = rng.uniform(0.55, 0.75)
    s0 = 1 - np.sqrt(1 - ef)
    if infarct is not None:
        s0 *= rng.uniform(0.8, 1.0)
    shortening = s0 * periodic_profile(rng, base=1.0, rel_amp=0.08, kmax=2)
    if infarct is not None:
        xs, ys = zip(*FUNCTION_VS_TRANSMURALITY, (1.0, rng.uniform(-0.12, 0.02)))
        m = np.interp(infarct.transmurality, xs, ys)
        sigma_bins = np.deg2rad(rng.uniform(10, 20)) / (2 * np.pi / N_ANGLES)
        deficit = gaussian_filter1d(1 - m, sigma_bins, mode="wrap")
        border = 1 - rng.uniform(0.5, 0.8) * deficit / max(deficit.max(), 1e-9) * (1 - m.min())
        shortening = shortening * np.minimum(m, border)
    rot = np.deg2rad(rng.uniform(*ROTATION_ES_DEG[anatomy.level]))
    if infarct is not None:
        rot *= rng.uniform(0.5, 0.9)
    direction = rng.uniform(0, 2 * np.pi, 2)
    translation = rng.uniform(1.5, 4.0) * np.array([np.sin(direction[0]), np.cos(direction[0])])
    drift = rng.uniform(0, 1.5) * np.array([np.sin(direction[1]), np.cos(direction[1])])
    phases = np.arange(n_frames) / n_frames
    # gating jitter: trigger detection errors of a few ms (sd 4 ms); frame 0 is the trigger
    phases[1:] += rng.normal(0, 4.0 / rr_ms, n_frames - 1)
    r_taper = anatomy.heart_radius + 3.0
    return Motion(es_phase=float(rng.uniform(0.35, 0.40)), shortening=shortening,
                  rv_excursion=float(rng.uniform(3, 7) * (0.8 if infarct is not None else 1.0)),
                  rotation_es=float(rot), translation_es=translation, drift=drift, phases=phases,
                  r_taper=r_taper, r_window=r_taper + 30.0, ef_target=float(ef))


def _window(r, r0, r1):
    """1 inside r0, 0 beyond r1, smoothstep between."""
    u = np.clip((np.asarray(r) - r0) / (r1 - r0), 0, 1)
    return 1 - u * u * (3 - 2 * u)


def _smoothstep(u):
    u = np.clip(u, 0, 1)
    return u * u * (3 - 2 * u)


class FrameMap:
    """The map phi_t for one frame: :meth:`inverse` (spatial -> material) and :meth:`forward`.

    Positions are image millimetres (row, col); polar angles use the display convention of
    :mod:`ofrnn.simulate.anatomy` (counter-clockwise, 0 = image right).
    """

    def __init__(self, anatomy: Anatomy, motion: Motion, frame):
        a, m = anatomy, motion
        phase = m.phases[frame]
        f = float(contraction(phase, es_phase=m.es_phase)) if frame else 0.0
        self.centre = np.asarray(a.centre_mm, float)
        self.r0, self.r1 = m.r_taper, m.r_window
        self.rotation = m.rotation_es * (float(twist(phase, es_phase=m.es_phase)) if frame else 0.0)
        self.translation = m.translation_es * f + m.drift * np.mod(phase, 1.0)
        R = np.linspace(0, self.r1, N_RADII)[None, :]
        r_endo0 = a.r_endo[:, None]
        r_endo = r_endo0 * (1 - m.shortening[:, None] * f)
        w = _window(R, self.r0, self.r1)
        # RV free wall: extra inward excursion, ramping across the RV cavity, strongest mid-RV
        depth = a.rv_depth[:, None]
        weight = (depth / max(a.rv_depth.max(), 1e-9)) ** 2
        ramp = _smoothstep((R - a.r_epi[:, None]) / np.maximum(depth, 1e-6))
        r_fw = a.r_epi[:, None] + depth
        d = m.rv_excursion * f
        delta_rv = -(2 * r_fw * d - d * d) * weight
        r2 = R ** 2 + (r_endo ** 2 - r_endo0 ** 2) * w + delta_rv * ramp * w
        r = np.where(R < r_endo0, R * (r_endo / r_endo0), np.sqrt(np.maximum(r2, 0)))
        # keep rows strictly increasing so the inverse exists (guards rounding at the kinks)
        r = np.maximum.accumulate(r, axis=1) + 1e-9 * R
        self._dR = self.r1 / (N_RADII - 1)
        self._r = r
        # the inverse table on the same uniform radius grid: R as a function of r, row by row
        # (rows are increasing, so a 1-D interpolation per row inverts them; flattened with a
        # per-row offset to do all rows in one call)
        off = 4 * self.r1 * np.arange(N_ANGLES)[:, None]
        grid = np.broadcast_to(R, r.shape)
        self._R_of_r = np.interp((grid + off).ravel(), (r + off).ravel(), grid.ravel()).reshape(r.shape)

    # -- radial table lookups: bilinear in (angle bin, radius) --------------------------------
    def _lookup(self, table, query, theta):
        u = np.mod(theta, 2 * np.pi) * (N_ANGLES / (2 * np.pi))
        a0 = np.floor(u).astype(np.intp)
        wa = u - a0
        a0 %= N_ANGLES
        a1 = (a0 + 1) % N_ANGLES
        v = np.clip(query, 0, self.r1) / self._dR
        j0 = np.minimum(v.astype(np.intp), N_RADII - 2)
        wr = v - j0
        # flat indices into the C-ordered table: one gather per corner is about three times faster than
        # two-array fancy indexing, and reads the same values (the cohort's bytes do not change)
        flat = table.ravel()
        i0 = a0 * N_RADII + j0
        i1 = a1 * N_RADII + j0
        lo = flat.take(i0) * (1 - wa) + flat.take(i1) * wa
        hi = flat.take(i0 + 1) * (1 - wa) + flat.take(i1 + 1) * wa
        out = lo + (hi - lo) * wr
        return np.where(query >= self.r1, query, out)

    def _radial_inverse(self, r, theta):
        return self._lookup(self._R_of_r, r, theta)

    def _radial_forward(self, R, theta):
        return self._lookup(self._r, R, theta)

    # -- the map and its inverse -------------------------------------------------------------
    def inverse(self, rows, cols):
        """Material polar coordinates (R mm, Theta rad) of spatial points (row, col) in mm."""
        c = self.centre
        ty, tx = self.translation
        y, x = rows, cols
        # translation with a window on the (unknown) pre-translation position: fixed point,
        # contracting since |grad w| * |translation| << 1
        for _ in range(3):
            wt = _window(np.hypot(y - c[0], x - c[1]), self.r0, self.r1)
            y, x = rows - ty * wt, cols - tx * wt
        r = np.hypot(y - c[0], x - c[1])
        theta = np.arctan2(-(y - c[0]), x - c[1])
        theta = theta - self.rotation * _window(r, self.r0, self.r1)
        return self._radial_inverse(r, theta), theta

    def forward(self, R, theta):
        """Spatial (row, col) in mm of material points at polar (R, Theta)."""
        c = self.centre
        r = self._radial_forward(R, theta)
        th = theta + self.rotation * _window(r, self.r0, self.r1)
        y = c[0] - r * np.sin(th)
        x = c[1] + r * np.cos(th)
        wt = _window(np.hypot(y - c[0], x - c[1]), self.r0, self.r1)
        return y + self.translation[0] * wt, x + self.translation[1] * wt


__all__ = ["contraction", "twist", "Motion", "sample_motion", "FrameMap"]
