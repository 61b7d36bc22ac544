"""OF-RNN's training settings: one typed, documented object read from ``experiments/train.toml``.

:func:`load_profile` resolves a profile of the settings file ([common], then the profile it
``extends``, then its own keys) into a frozen :class:`TrainingSettings`. Every module that trains
or evaluates OF-RNN receives that object, so a setting's name, type and allowed values are written
once, here, and a typo or a bad value in a settings file is one error line naming the key (and the
file, for experiments/train.toml and ``--settings`` files) before anything runs, instead of a
``KeyError`` deep in a run. Combinations that depend on the data (``augment`` with wall-frame
P_g) are still refused where the batches are built (:class:`ofrnn.pipeline.PixelBatches`).
The file itself keeps the values and the measurements behind them (experiments/train.toml comments).

Records (``settings.json``, ``metrics.json``, ablation cell keys) store :meth:`TrainingSettings.as_dict`,
the plain form; a record written by an older ofrnn is compared with :func:`training_settings`, which
fills in the settings that did not exist yet with the value those runs used.
"""
from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path

from .discriminate import FEATURES
from .errors import OfrnnError
from .files import read_toml
from .flow.trajectory import FRAMES as GLOBAL_FRAMES, REFERENCES
from .motion import LOCAL_FRAMES, LOCAL_LEARNERS, PATCH_RANGE
from .pipeline import FLOW_SOURCES, ROI_SOURCES, STRATA
from .wall import WALL_GEOMETRY

#: the project's settings file (``make train PROFILE=...``)
PROFILES = Path(__file__).resolve().parent.parent / "experiments" / "train.toml"
#: threshold rules applied to validation subjects (:func:`ofrnn.evaluate.choose_threshold`)
THRESHOLD_NAMES = ("auto", "dice", "youden")
PIXEL_WEIGHTS = ("uniform", "represent")
GLOBAL_NORMS = ("block", "feature")
LOCALIZERS = ("train", "none")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """The settings of one OF-RNN training run (paper Sec. 2 and 3; Xu et al., MICCAI 2017).

    Settings without a default must be given by the settings file. The defaults are what a file
    that leaves the setting out gets, for files written before it existed: their runs used that
    value. experiments/train.toml sets most of them explicitly, with the measurements behind each
    choice.

    Attributes
    ----------
    profile : str
        Name of the profile (``quick``, ``paper``, ``cnn``; an ablation cell's is
        ``<train profile>+<experiment profile>``, e.g. ``quick+quick``).
    seed : int
        Seed of the folds, the pixel draw, the weights' initialisation and the auto-encoders' samples.
    n_folds : int
        Subject-wise cross-validation folds, stratified by level (Sec. 3: 10).
    val_fraction : float
        Share of the training subjects held out for early stopping and the threshold rule, in [0, 1).
    frames : int
        J, frames per cine (Sec. 2: 25); other lengths are resampled in time.
    patch : int
        N of the local patches P_l(p), odd, 3-17 (Sec. 2, Fig. 3(e): 11).
    global_patch : int
        Side of the P_g(p) patch (Sec. 2: "say 3 x 3").
    global_frame : {"heart", "image", "wall"}
        Frame of P_g's vectors (:mod:`ofrnn.flow.trajectory`).
    global_norm : {"block", "feature"}
        Standardisation of P_g: per block over all frames, or value by value.
    motion_reference : {"none", "slice"}
        "slice" (beyond the paper) reads P_g relative to the slice's own motion.
    local_frame : {"heart", "tissue", "image"}
        Where P_l's patch sits in each frame and how it is turned (:mod:`ofrnn.motion`). Default
        "image": runs before the setting existed used image axes.
    local_learner : {"lstm", "cnn"}
        The paper's 4-layer LSTM-RNN, or Table 2's CNN (beyond the paper).
    wall_geometry : {"none", "learned"}
        "learned" (beyond the paper): every step of P_l also carries the pixel's transmural depth
        and wall thickness, estimated by a myocardium segmenter trained on the fold's training
        subjects (:mod:`ofrnn.wall`); the LSTM-RNN reads them at every step, the CNN beside its
        convolution features. "none" (the default): the paper's input.
    features : {"both", "local", "global"}
        P(p) of Table 1: LSTM feature and P_g, or one of them.
    roi : {"gt", "detector"}
        ROI boxes: annotated, or the heart localization layers'.
    flow : {"estimated", "gt"}
        P_g from the deep optical flow, or (ablation only) the simulator's exact flow.
    roi_margin : float
        Margin around the LV box, a fraction of its size (0.15).
    lstm_layers, lstm_units : int
        Depth (Sec. 2: 4) and width of the LSTM-RNN; ``lstm_units`` is also the CNN's feature width.
    input_dropout : float
        Dropout on the LSTM's input, in [0, 1).
    encoder_sizes : tuple of 3 int
        Widths of the stacked auto-encoder's three layers (Sec. 2: 3 layers).
    encoder_activation : str
        Keras activation of the encoder layers.
    feature_dropout : float
        Dropout on P(p) while fine-tuning, in [0, 1) (0: off).
    strata_fractions : tuple of 4 float
        Shares of the drawn pixels per stratum (infarct, normal myocardium, ring, rest of the ROI),
        summing to 1 (:func:`ofrnn.pipeline.sample_pixels`).
    pixel_weights : {"uniform", "represent"}
        Loss weight of a drawn pixel.
    infarct_share : float or None
        Optional: rescale class weights so infarct carries this share of the loss, in [0, 1).
    augment : bool
        Random grid rotations of P_l and P_g (:data:`ofrnn.pipeline.ROTATIONS`; refused by
        :class:`ofrnn.pipeline.PixelBatches` with wall-frame P_g).
    pixels_per_subject : int
        Pixels drawn per training subject.
    batch_size : int
        Pixels per training step.
    learning_rate, finetune_learning_rate : float
        RMSProp (Sec. 3) learning rates: LSTM and auto-encoder stages; end-to-end fine-tuning.
    lstm_epochs, ae_epochs, finetune_epochs : int
        Epochs of the three training stages (:mod:`ofrnn.train`).
    head_epochs : int
        Optional (0, the default: off): epochs of supervised training of the discriminate layers
        alone (encoders and softmax) on the frozen motion features P(p), computed once, between the
        auto-encoders' pre-training and the end-to-end fine-tuning (early stopping on validation
        loss), at ``learning_rate`` and without augmentation. The fine-tuning then starts from a
        trained softmax instead of a random one.
    ae_samples : int
        Pixels each auto-encoder is pre-trained on.
    patience : int
        Early stopping on validation loss (the best epoch's weights are kept).
    weight_average : float or None
        Optional, in [0, 1) (0: the average is the current weights): momentum of an exponential
        moving average of the weights in the two supervised stages (Polyak & Juditsky 1992; Keras'
        optimizer ``use_ema``), written into the model at every epoch's end, so validation, early
        stopping and the kept weights all see the averaged model. RMSProp's update rule is
        unchanged. None (the default): off.
    threshold : float or {"auto", "dice", "youden"}
        Decision threshold, or the rule that picks it on validation subjects.
    eval_batch : int
        Pixels per inference call.
    localizer : {"train", "none"}
        Train the fold's own heart localization layers, or leave them out of the bundle.
    localizer_settings : str
        Their settings file ("" = experiments/localization.toml) and ``localizer_profile`` its profile.
    extra_training_cohort : str
        Optional, beyond the paper ("", the default: off): a cohort file (a path from the working
        directory) whose subjects all join every fold's training subjects, never its validation or
        test subjects, e.g. more subjects of the simulator with another seed (``make
        data-extra``). A data-scale option: the paper trained on its own 114 subjects, and so does
        the faithful model. Each subject needs traced infarct and myocardium masks. The fold's heart
        localization layers (``localizer = "train"``) are still trained on the evaluated cohort's
        training subjects only; the ablation experiments refuse the setting.
    """

    profile: str
    seed: int
    n_folds: int
    val_fraction: float
    frames: int
    patch: int
    global_patch: int
    global_frame: str = "heart"
    global_norm: str = "block"
    motion_reference: str = "none"
    local_frame: str = "image"
    local_learner: str = "lstm"
    wall_geometry: str = "none"
    features: str = "both"
    roi: str
    flow: str
    roi_margin: float
    lstm_layers: int
    lstm_units: int
    input_dropout: float
    encoder_sizes: tuple
    encoder_activation: str
    feature_dropout: float = 0.0
    strata_fractions: tuple
    pixel_weights: str
    infarct_share: float | None = None
    augment: bool = False
    pixels_per_subject: int
    batch_size: int
    learning_rate: float
    finetune_learning_rate: float
    lstm_epochs: int
    ae_epochs: int
    ae_samples: int
    finetune_epochs: int
    head_epochs: int = 0
    patience: int
    weight_average: float | None = None
    threshold: float | str
    eval_batch: int
    localizer: str = "train"
    localizer_settings: str = ""
    localizer_profile: str = "full"
    extra_training_cohort: str = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _INTS:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < _INTS[f.name]:
                    raise OfrnnError(f"must be an integer >= {_INTS[f.name]}, got {value!r}", field=f.name)
            elif f.name in _CHOICES and value not in _CHOICES[f.name]:
                raise OfrnnError(f"{value!r} is not one of {', '.join(map(repr, _CHOICES[f.name]))}", field=f.name)
        unset_allowed = {f.name for f in dataclasses.fields(self) if f.default is None}
        for name, (low, high) in _FRACTIONS.items():
            value = getattr(self, name)
            if value is None and name in unset_allowed:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value < high:
                raise OfrnnError(f"must be a number in [{low}, {high}), got {value!r}", field=name)
        if self.patch % 2 == 0 or not PATCH_RANGE[0] <= self.patch <= PATCH_RANGE[1]:
            raise OfrnnError(f"must be odd, {PATCH_RANGE[0]}-{PATCH_RANGE[1]}, got {self.patch}", field="patch")
        if self.global_patch % 2 == 0:
            raise OfrnnError(f"must be odd, got {self.global_patch}", field="global_patch")
        if not isinstance(self.extra_training_cohort, str):
            raise OfrnnError(f"must be a file path (a string), got {self.extra_training_cohort!r}",
                             field="extra_training_cohort")
        if not isinstance(self.augment, bool):
            raise OfrnnError(f"must be true or false, got {self.augment!r}", field="augment")
        if not (isinstance(self.threshold, str) and self.threshold in THRESHOLD_NAMES
                or isinstance(self.threshold, numbers.Real) and not isinstance(self.threshold, bool)
                and 0 <= self.threshold <= 1):
            raise OfrnnError(f"{self.threshold!r} is not {', '.join(map(repr, THRESHOLD_NAMES))} or a number in [0, 1]",
                             field="threshold")
        # lists from TOML become tuples: the settings are frozen, and hashable
        object.__setattr__(self, "encoder_sizes", _sequence(self.encoder_sizes, "encoder_sizes", 3, int))
        object.__setattr__(self, "strata_fractions", _sequence(self.strata_fractions, "strata_fractions",
                                                               len(STRATA), float))
        if abs(sum(self.strata_fractions) - 1) > 1e-6 or min(self.strata_fractions) < 0:
            raise OfrnnError(f"must be {len(STRATA)} shares >= 0 summing to 1, got {list(self.strata_fractions)}",
                             field="strata_fractions")

    @classmethod
    def from_mapping(cls, values, *, path=None):
        """Settings from a plain mapping (a resolved profile, or a record's ``config``).

        Raises
        ------
        OfrnnError
            Naming ``path`` and the key: an unknown key, a missing setting, or a bad value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OfrnnError(f"unknown setting (have: {', '.join(sorted(known))})", path=path, field=unknown[0])
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in values and f.default is dataclasses.MISSING]
        if missing:
            raise OfrnnError("missing setting", path=path, field=missing[0])
        try:
            return cls(**values)
        except OfrnnError as e:
            raise OfrnnError(e.message, path=path, field=e.field) from None

    def replace(self, **changes):
        """A copy with ``changes`` applied and checked (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return type(self).from_mapping({**self.as_dict(), **changes})

    def as_dict(self):
        """The plain form written to records: tuples as lists, and the optional settings
        (``infarct_share``, ``augment``, ``weight_average``, ``head_epochs``, ``extra_training_cohort``) only when
        they differ from their default,
        so the records and cell keys of runs that never used them stay as they were."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _RECORDED_WHEN_SET and value == f.default:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def inference(self):
        """The settings a model bundle needs to compute P_l and P_g at prediction time, exactly as
        training computed them (:func:`ofrnn.predict.roi_features`, :func:`ofrnn.pipeline.batch_settings`)."""
        return {k: getattr(self, k) for k in INFERENCE_KEYS}


#: what a model bundle records of its training settings (ofrnn_model.json)
INFERENCE_KEYS = ("frames", "patch", "global_patch", "global_frame", "motion_reference", "local_frame", "wall_geometry",
                  "roi_margin", "flow", "roi", "profile", "eval_batch")
_INTS = dict(seed=0, n_folds=2, frames=2, patch=1, global_patch=1, lstm_layers=1, lstm_units=1,
             pixels_per_subject=1, batch_size=1, lstm_epochs=0, ae_epochs=0, ae_samples=1, finetune_epochs=0,
             head_epochs=0, patience=0, eval_batch=1)
_FRACTIONS = dict(val_fraction=(0.0, 1.0), roi_margin=(0.0, 1.0), input_dropout=(0.0, 1.0),
                  feature_dropout=(0.0, 1.0), infarct_share=(0.0, 1.0), learning_rate=(0.0, 1.0),
                  finetune_learning_rate=(0.0, 1.0), weight_average=(0.0, 1.0))
_CHOICES = dict(global_frame=GLOBAL_FRAMES, global_norm=GLOBAL_NORMS, motion_reference=REFERENCES,
                local_frame=LOCAL_FRAMES, local_learner=LOCAL_LEARNERS, wall_geometry=WALL_GEOMETRY, features=FEATURES,
                roi=ROI_SOURCES, flow=FLOW_SOURCES, pixel_weights=PIXEL_WEIGHTS, localizer=LOCALIZERS)
_RECORDED_WHEN_SET = ("infarct_share", "augment", "weight_average", "head_epochs", "extra_training_cohort",
                      "wall_geometry")


def _sequence(value, name, length, kind):
    if (isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != length
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
            or kind is int and not all(isinstance(v, numbers.Integral) and v >= 1 for v in value)):
        raise OfrnnError(f"must be {length} {'positive integers' if kind is int else 'numbers'}, got {value!r}",
                         field=name)
    return tuple(value)  # as given: a cell key hashes 0 and 0.0 differently


def load_profile(name, path=PROFILES, **overrides):
    """The settings of profile ``name`` of a settings file.

    Parameters
    ----------
    name : str
        A table of the file other than ``[common]``.
    path : str or Path
        The settings file (default experiments/train.toml).
    **overrides
        Settings that replace the file's; ``None`` values are ignored (unset command-line flags).

    Returns
    -------
    TrainingSettings
        [common], then the profile it ``extends`` (if any, recursively), then [name], then ``overrides``.

    Raises
    ------
    OfrnnError
        Naming the file and key: no such profile, a loop of ``extends``, an unknown key, a missing
        setting or a bad value.
    """
    path = Path(path)
    data = read_toml(path, what="profile file")

    def profile(key, seen=()):
        if key not in data or key == "common":
            raise OfrnnError(f"no profile {key!r} (have: {', '.join(k for k in data if k != 'common')})",
                             path=path, field=key)
        if key in seen:
            raise OfrnnError(f"profiles extend each other in a loop: {' -> '.join(seen + (key,))}", path=path,
                             field=key)
        own = {k: v for k, v in data[key].items() if k != "extends"}
        return {**profile(data[key]["extends"], seen + (key,)), **own} if "extends" in data[key] else own

    values = {**data.get("common", {}), **profile(name), "profile": name}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainingSettings.from_mapping(values, path=path)


def apply_overrides(settings, changes, *, table):
    """``settings.replace(**changes)`` for changes read from a table of another settings file (an
    ablation cell, an experiment's ``overrides``): a bad key or value is reported under that table,
    e.g. ``cells.n03.patch``."""
    try:
        return settings.replace(**changes)
    except OfrnnError as e:
        raise OfrnnError(e.message, field=f"{table}.{e.field}") from None


def training_settings(record):
    """The settings that define a trained network, as a plain dict, from settings or a record.

    Every setting but the localizer's (it has its own key in :func:`ofrnn.train.fold_localizer`) and
    the decision threshold (applied after training: a fold with another is evaluated again from its
    weights). A record written before a setting existed gets that setting's default (its run used it).
    """
    if isinstance(record, TrainingSettings):
        record = record.as_dict()
    fields = {f.name: f.default for f in dataclasses.fields(TrainingSettings) if f.default is not dataclasses.MISSING}
    defaults = {k: v for k, v in fields.items() if k not in _RECORDED_WHEN_SET}
    # an optional setting at its default is the same run whether or not the record lists it
    return {k: v for k, v in {**defaults, **record}.items() if not k.startswith("localizer") and k != "threshold"
            and not (k in _RECORDED_WHEN_SET and v == fields[k])}


__all__ = ["PROFILES", "THRESHOLD_NAMES", "INFERENCE_KEYS", "TrainingSettings", "load_profile", "apply_overrides",
           "training_settings"]
