"""Subject-wise data splits of the paper's evaluation (Sec. 3, "Performance evaluation criteria").

Pixel level: 10-fold cross-validation. Segment level: 2/3 of the data for training, 1/3 for
testing. Both split *subjects* (all pixels of a slice stay on one side) and are stratified by
slice level (apical / mid / basal), with a fixed seed so every run sees the same folds.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split


def kfold(ids, levels, *, n_folds=10, seed=0):
    """Fold index (0..n_folds-1) of every subject, stratified by level.

    Returns
    -------
    dict {subject id: fold}
    """
    ids = list(ids)
    folds = np.empty(len(ids), dtype=int)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(skf.split(np.zeros(len(ids)), list(levels))):
        folds[test] = k
    return {sid: int(f) for sid, f in zip(ids, folds)}


def holdout(ids, levels, *, test_fraction=1 / 3, seed=0):
    """The paper's segment-level split: {subject id: "train" | "test"}, 1/3 test, stratified by level."""
    ids = list(ids)
    train, test = train_test_split(ids, test_size=test_fraction, random_state=seed, stratify=list(levels))
    return {**{s: "train" for s in train}, **{s: "test" for s in test}}


def validation(ids, levels, *, fraction=0.1, seed=0, fold=0):
    """A validation subset of training subjects (stratified by level when every level can give one).

    ``fold`` gives each test fold its own draw. With one random state for every fold, the folds'
    training lists, which differ only by their test subjects, were permuted alike and gave nearly the
    same validation subjects: 34 distinct subjects over the ten folds of the default cohort, one of
    them in nine. Every fold's early stopping and decision threshold then rested on the same few slices.
    """
    ids = list(ids)
    n_val = max(1, int(round(fraction * len(ids))))
    levels = list(levels)
    strat = levels if min(levels.count(lv) for lv in set(levels)) >= 2 and n_val >= len(set(levels)) else None
    state = np.random.RandomState(np.random.SeedSequence([seed, fold]).generate_state(4))
    _, val = train_test_split(ids, test_size=n_val, random_state=state, stratify=strat)
    return sorted(val, key=ids.index)


__all__ = ["kfold", "holdout", "validation"]
