"""Global motion of OF-RNN (paper Sec. 2): deep optical flow, baselines, metrics, trajectory
features.

Public API (stable; the classifier imports it):

- :func:`deep_flow` (reference, moving, **params) -> (2, H, W) (dy, dx)
- :func:`sequence_flow` (cine, *, workers=None, **params) -> (T-1, 2, H, W)
- :func:`global_features` (flows, *, patch=3, frame="heart") -> (H, W, T-1, :data:`GLOBAL_FEATURES_PER_FRAME`);
  :func:`lagrangian_displacement`, :func:`heart_components` (radial / circumferential about the LV centre)
- :data:`METHODS`: the Table 3 baselines and external references by name
- metrics :func:`aae`, :func:`epe`, :func:`density`; I/O :func:`read_flo`, :func:`write_flo`,
  :func:`read_image`

No TensorFlow here: the flow runs on NumPy/SciPy/OpenCV only.
"""
from .baselines import METHODS
from .deep import DEFAULTS, deep_flow, sequence_flow
from .io import read_flo, read_image, write_flo
from .metrics import aae, angular_error, density, endpoint_error, epe
from .trajectory import (FRAMES, GLOBAL_FEATURE_LAYOUT, GLOBAL_FEATURE_LAYOUTS, GLOBAL_FEATURES_PER_FRAME, ORIENTATION_EPS,
                         REFERENCES, centred_grid, global_features, heart_components, lagrangian_displacement, motion_scale,
                         radial_axes, trace)

__all__ = [
    "DEFAULTS", "FRAMES", "GLOBAL_FEATURES_PER_FRAME", "GLOBAL_FEATURE_LAYOUT", "GLOBAL_FEATURE_LAYOUTS", "METHODS", "ORIENTATION_EPS", "aae",
    "angular_error", "centred_grid", "deep_flow", "density", "endpoint_error", "epe", "global_features", "heart_components",
    "lagrangian_displacement", "motion_scale", "radial_axes", "REFERENCES", "read_flo",
    "read_image", "sequence_flow", "trace", "write_flo",
]
