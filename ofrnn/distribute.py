"""Which ``tf.distribute`` strategy trains the networks: one place, chosen from the environment.

* ``TF_CONFIG`` naming a cluster of several workers: :class:`tf.distribute.MultiWorkerMirroredStrategy`
  (synchronous data parallelism across machines; every worker runs the same command);
* several visible GPUs: :class:`tf.distribute.MirroredStrategy` (one replica per GPU);
* otherwise (one GPU or CPU only): the default strategy, whose scope changes nothing.

The batch size of the settings is the *global* batch; each replica sees an equal share.
``OFRNN_STRATEGY=default|mirrored|multiworker`` forces a choice (e.g. ``default`` to keep one job on
one GPU when a scheduler gives several jobs the same machine).
"""
from __future__ import annotations

import json
import os

#: the strategies :func:`training_strategy` can pick
KINDS = ("default", "mirrored", "multiworker")


def strategy_kind(*, environ=None, gpus=None):
    """The strategy that suits this process: "default", "mirrored" or "multiworker".

    Parameters
    ----------
    environ : mapping, optional
        Environment variables (default ``os.environ``): ``OFRNN_STRATEGY`` forces a kind,
        ``TF_CONFIG`` (JSON with ``cluster.worker``) describes a multi-worker cluster.
    gpus : int, optional
        Number of visible GPUs (default: asked from TensorFlow).
    """
    env = os.environ if environ is None else environ
    forced = env.get("OFRNN_STRATEGY", "").strip().lower()
    if forced:
        if forced not in KINDS:
            raise ValueError(f"OFRNN_STRATEGY must be one of {KINDS}, got {forced!r}")
        return forced
    if env.get("TF_CONFIG"):
        try:
            cluster = json.loads(env["TF_CONFIG"]).get("cluster", {})
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON ({e.msg})") from None
        if len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1:
            return "multiworker"
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if gpus > 1 else "default"


_STRATEGY = {}


def training_strategy(kind=None):
    """The ``tf.distribute.Strategy`` to build and compile models under (created once per process).

    Use as ``with training_strategy().scope(): model = build(...); model.compile(...)``.
    """
    import tensorflow as tf

    kind = kind or strategy_kind()
    if kind not in _STRATEGY:
        # a strategy must be created before TensorFlow runs any op on the devices it manages, and
        # only once per process (MultiWorkerMirroredStrategy starts the collective service)
        if kind == "multiworker":
            _STRATEGY[kind] = tf.distribute.MultiWorkerMirroredStrategy()
        elif kind == "mirrored":
            _STRATEGY[kind] = tf.distribute.MirroredStrategy()
        elif kind == "default":
            _STRATEGY[kind] = tf.distribute.get_strategy()
        else:
            raise ValueError(f"strategy kind must be one of {KINDS}, got {kind!r}")
    return _STRATEGY[kind]


def describe(strategy):
    """A short record of a strategy for results files: class name and replicas in sync."""
    return dict(strategy=type(strategy).__name__, replicas=int(strategy.num_replicas_in_sync))


__all__ = ["KINDS", "strategy_kind", "training_strategy", "describe"]
