"""Table 2: the LSTM-RNN replaced by other learners, same features and folds (paper Sec. 3).

"we replaced the LSTM-RNN using SVMrbf, SAE-3, DBN-3, CNN and RNN in our deep learning framework":
every cell keeps the rest of OF-RNN (P_g(p), the three encoding layers, the softmax, the staged
training and the threshold rule) and swaps the block that reads the local patches P_l(p):

* ``rnn``: stacked plain (Elman) recurrent layers, the LSTM-RNN's depth, width and input dropout;
* ``cnn``: two 3x3 convolutions over the N x N patch with the J frames as channels, pooling, dense;
* ``sae``: three dense layers on the flattened P_l(p), each pre-trained greedily as an auto-encoder;
* ``dbn``: three sigmoid layers pre-trained greedily as Bernoulli RBMs (scikit-learn's
  :class:`~sklearn.neural_network.BernoulliRBM`, persistent contrastive divergence) on intensities
  clipped to [0, 1];
* ``svm``: a support vector machine with RBF kernel (scikit-learn :class:`~sklearn.svm.SVC`)
  instead of the whole network, on the same sampled pixels' [PCA(P_l(p)), standardised P_g(p)]
  (an RBF SVM is quadratic in its training set: it sees a subsample, see the settings);
* ``lstm``: the paper's model.

``ofrnn experiment ablation_classifier [--profile quick|paper|smoke]``; settings in
``experiments/ablation_classifier.toml``; results in ``results/ablation_classifier/``.
"""
from __future__ import annotations

import time

import numpy as np

from . import _cells

#: the paper's Table 2 (accuracy, precision), in %
PAPER = {"svm": (80.9, 74.2), "sae": (83.5, 75.5), "dbn": (84.9, 75.1), "cnn": (83.7, 76.5), "rnn": (88.4, 84.8),
         "lstm": (94.3, 91.3)}
KINDS = ("svm", "sae", "dbn", "cnn", "rnn")


# -- local motion blocks ------------------------------------------------------------------------------
def _flat_sample(train, n, seed):
    """Flattened P_l(p) of ``n`` training pixels (the unsupervised pre-training set)."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(train), size=min(n, len(train)), replace=False))
    loc, _ = train.inputs(idx)
    return loc.reshape(len(idx), -1)


def _dense_stack(cfg, block, activation, name):
    import keras

    x_in = keras.Input((cfg.frames, cfg.patch ** 2), name="local_patches")
    h = keras.layers.Flatten(name=f"{name}_flatten")(x_in)
    if name == "dbn":
        # Bernoulli visible units: intensities clipped to [0, 1] (a ReLU capped at 1 is exactly that)
        h = keras.layers.ReLU(max_value=1.0, name="dbn_visible")(h)
    layers = [keras.layers.Dense(n, activation=activation, name=f"{name}_{i + 1}")
              for i, n in enumerate(block["sizes"])]
    for layer in layers:
        h = layer(h)
    return keras.Model(x_in, h, name=name), layers


def _sae(cfg, block, x):
    """SAE-3: greedy layer-wise auto-encoder pre-training of three dense layers."""
    from ..discriminate import autoencoder
    from ..train import _optimizer

    model, layers = _dense_stack(cfg, block, "relu", "sae")
    for i, layer in enumerate(layers):
        ae = autoencoder(layer, x.shape[1], name=f"sae_autoencoder_{i + 1}")
        ae.compile(optimizer=_optimizer(cfg.learning_rate), loss="mse")
        ae.fit(x, x, batch_size=cfg.batch_size, epochs=block["pretrain_epochs"], verbose=0, shuffle=True)
        x = np.asarray(layer(x))
    return model


def _dbn(cfg, block, x):
    """DBN-3: greedy RBM pre-training (Hinton et al. 2006) of three sigmoid layers."""
    from sklearn.neural_network import BernoulliRBM

    model, layers = _dense_stack(cfg, block, "sigmoid", "dbn")
    x = np.clip(x, 0.0, 1.0)
    for i, layer in enumerate(layers):
        rbm = BernoulliRBM(n_components=layer.units, learning_rate=block["rbm_learning_rate"],
                           batch_size=block["rbm_batch"], n_iter=block["pretrain_epochs"],
                           random_state=cfg.seed + i)
        rbm.fit(x)
        layer.set_weights([rbm.components_.T.astype(np.float32), rbm.intercept_hidden_.astype(np.float32)])
        x = rbm.transform(x)
    return model


def _rnn(cfg, block):
    import keras

    x_in = keras.Input((cfg.frames, cfg.patch ** 2), name="local_patches")
    h = x_in
    for i in range(cfg.lstm_layers):
        h = keras.layers.SimpleRNN(cfg.lstm_units, dropout=cfg.input_dropout,
                                   return_sequences=i < cfg.lstm_layers - 1, name=f"rnn_{i + 1}")(h)
    return keras.Model(x_in, h, name="plain_rnn")


def _cnn(cfg, block):
    from ..motion import patch_cnn

    return patch_cnn(cfg.frames, cfg.patch, filters=block["filters"], units=cfg.lstm_units)


def local_block_builder(block, train, cfg):
    """A ``local_block(cfg)`` for :func:`ofrnn.train.build` that makes the ``block["kind"]`` model
    (pre-trained on the training pixels for SAE and DBN)."""
    kind = block["kind"]
    if kind in ("sae", "dbn"):
        x = _flat_sample(train, block["pretrain_samples"], cfg.seed)
        return lambda c: (_sae if kind == "sae" else _dbn)(c, block, x)
    if kind == "rnn":
        return lambda c: _rnn(c, block)
    if kind == "cnn":
        return lambda c: _cnn(c, block)
    raise ValueError(f"unknown local block {kind!r} (have: {KINDS})")


def learner(block, train, val, cfg, work):
    """Train the model of a Table 2 ``block``: the :func:`ofrnn.experiments._cells.run_cell` learner.

    Returns ``(predict, stage_times)`` with ``predict(subjects) -> (probs, seconds per subject)``.
    """
    if block["kind"] == "svm":
        model = fit_svm(train, cfg, block)
        return (lambda subjects: predict_svm(model, subjects, cfg)), {}
    from ..evaluate import predict_all
    from ..train import train_network

    network, stage_times = train_network(train, val, cfg, work, local_block=local_block_builder(block, train, cfg))
    return (lambda subjects: predict_all(network, subjects, cfg, progress=False)), stage_times


# -- SVM-RBF ------------------------------------------------------------------------------------------
def _svm_features(loc, glo):
    return loc.reshape(len(loc), -1), glo.reshape(len(glo), -1)


def fit_svm(train, cfg, block):
    """PCA of P_l(p) + standardised P_g(p) -> RBF SVC, on a class-stratified subsample of training pixels."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(cfg.seed)
    idx = np.sort(rng.choice(len(train), size=min(block["samples"], len(train)), replace=False))
    loc, glo = _svm_features(*train.inputs(idx))
    pca = PCA(n_components=min(block["pca"], *loc.shape), random_state=cfg.seed).fit(loc)
    z = np.hstack([pca.transform(loc), glo])
    scaler = StandardScaler().fit(z)
    svc = SVC(kernel="rbf", C=block["C"], gamma="scale", random_state=cfg.seed)
    svc.fit(scaler.transform(z), train.samples["label"][idx], sample_weight=train.samples["weight"][idx])
    return dict(pca=pca, scaler=scaler, svc=svc)


def predict_svm(model, subjects, cfg):
    """Infarct scores in (0, 1) (logistic of the SVM margin) per ROI pixel, and seconds per subject."""
    from ..predict import roi_features

    probs, secs = [], []
    for rs in subjects:
        t0 = time.perf_counter()
        # the same P_l / P_g the SVM was fitted on (training draws them with the profile's local_frame)
        loc, glo = _svm_features(*roi_features(rs, cfg.inference()))
        z = model["scaler"].transform(np.hstack([model["pca"].transform(loc), glo]))
        margin = model["svc"].decision_function(z)
        probs.append((1 / (1 + np.exp(-margin))).reshape(rs.roi.shape[1:]).astype(np.float32))
        secs.append(time.perf_counter() - t0)
    return probs, secs


# -- the experiment -------------------------------------------------------------------------------------
ORDER = ("svm", "sae", "dbn", "cnn", "rnn", "lstm")
LABELS = {"svm": "SVM-RBF", "sae": "SAE-3", "dbn": "DBN-3", "cnn": "CNN", "rnn": "RNN", "lstm": "LSTM-RNN"}


def report(cfg, summary, env):
    lines = ["# Table 2: LSTM-RNN against other learners (same features, same folds)", "",
             *_cells.scope(cfg, summary),
             "| learner | paper accuracy | ours accuracy | paper precision | ours precision | ours Dice | "
             "ours ROC AUC | train s | predict s/subject |", "|---|---|---|---|---|---|---|---|---|"]
    for cell in [c for c in ORDER if c in summary]:
        s = summary[cell]
        pa, pp = PAPER[cell]
        lines.append(f"| {LABELS[cell]} | {pa} | {_cells.pct(s['myocardium']['accuracy'])} "
                     f"({_cells.pct(s['roi']['accuracy'])}) | {pp} | {_cells.pct(s['myocardium']['precision'])} "
                     f"({_cells.pct(s['roi']['precision'])}) | {_cells.pct(s['myocardium']['dice'])} | "
                     f"{_cells.pct(s['myocardium']['roc_auc'], 2)} | "
                     f"{s['train_s']['mean']:.0f} | {s['predict_s_per_subject']['mean']:.2f} |")
    for metric, label in (("accuracy", "myocardium accuracy"), ("roc_auc", "myocardium ROC AUC (threshold-free)")):
        v = {c: summary[c]["myocardium"][metric]["mean"] for c in summary}
        if len(v) > 1 and all(x is not None for x in v.values()):
            best = max(v, key=v.get)
            lines += ["", f"Highest {label}: **{LABELS[best]}** "
                          f"({'matches' if best == 'lstm' else 'differs from'} the paper: LSTM-RNN best)."]
    lines += ["", "The SVM sees a subsample of the training pixels and a PCA of P_l(p) "
                  f"({cfg['cells'].get('svm', {}).get('block', {})}); the deep blocks all feed the same "
                  "encoders and softmax.", "", _cells.footer(env, summary), ""]
    return lines


def run(config, profile, out_dir):
    t0 = time.perf_counter()
    cfg, summary = _cells.run_grid(config, profile, out_dir, title="Table 2", learner=learner)
    env = _cells.environment(cfg)
    result = dict(table="2", paper={k: dict(accuracy=a, precision=p) for k, (a, p) in PAPER.items()},
                  cells=summary, environment=env, seconds=sum(s["total_s"] for s in summary.values()),
                  wall_seconds=time.perf_counter() - t0, settings=cfg)
    _cells.write_outputs(out_dir, result, report(cfg, summary, env))
    print(f"wrote {out_dir}/metrics.json and report.md")
    return 0
