"""TensorFlow without its start-up noise.

Importing TensorFlow prints C++ log lines (oneDNN notices, "Could not find cuda drivers", the
``cuInit`` error on machines without a GPU, absl's "All log messages before absl::InitializeLog()")
that ``TF_CPP_MIN_LOG_LEVEL`` does not silence in TF 2.21, because several are written before
TensorFlow reads it. A user of a command reads them as failures. :func:`quiet_tensorflow` imports
TensorFlow and Keras and probes the devices with the process's standard error pointed at
``/dev/null``, then restores it, and sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless set) so that later C++
log lines below FATAL stay quiet too (e.g. oneDNN's int64 notice, logged as an error during
training). Python exceptions, warnings and progress bars show as usual. ``OFRNN_TF_LOGS=1`` keeps
every line (for debugging a GPU setup).
"""
from __future__ import annotations

import os
import sys


def quiet_tensorflow():
    """Import TensorFlow and Keras (once per process) with their start-up log lines silenced.

    Returns nothing; afterwards ``import tensorflow`` is free and silent. Does nothing when
    ``OFRNN_TF_LOGS=1``.
    """
    if os.environ.get("OFRNN_TF_LOGS") == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (imported here so its own start-up lines are silenced too)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs its failure on first use
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
