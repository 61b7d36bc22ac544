"""ofrnn: OF-RNN (Xu et al., MICCAI 2017) in Keras.

Modules map to the paper's Fig. 1: ``localization`` (heart localization layers), ``motion`` and
``flow`` (motion statistical layers), ``discriminate`` (fully connected discriminate layers).
Around them: ``store`` (the HDF5 cohort schema), ``simulate`` (the cine bSSFP phantom) and
``ingest`` (DICOM). TensorFlow is imported only by the modules that need it.
"""
from ._version import __version__
from .errors import OfrnnError

__all__ = ["__version__", "OfrnnError"]
