"""Train OF-RNN on nine folds of a cohort and evaluate it on the tenth (paper Sec. 3).

Writes OUT/: the model bundle (model.keras + ofrnn_model.json + localizer/, the fold's own heart
localization layers trained on its training subjects only: all 'ofrnn predict --model OUT' needs,
even on raw DICOM or NIfTI), metrics.json (scored with annotated ROIs and, end to end, with the
detected ones), report.md (what the run is, the paper's numbers beside ours with 95 % intervals,
per-slice calls, training curves), roc_pr.png, training.png, overlays/*.png (chosen by a stated
rule), train_log*.csv (Keras CSVLogger), split.json and checkpoints/ (a killed run resumes from the
last completed stage / epoch). A fold finished by an older version is evaluated again from its
weights, not retrained.

--fold all runs every fold into OUT/fold<k>/, each in a process of its own (finished folds are skipped),
and aggregates mean +- sd into OUT/cv/. --fold holdout is the paper's segment-level split (2/3 train, 1/3 test).
Settings come from experiments/train.toml (--profile: one of its tables). Beyond the
paper: cnn is quick with Table 2's CNN in place of the LSTM-RNN; more-subjects is quick with the 228 simulated
subjects of data/phantom-extra.h5 ('make data-extra') added to every fold's training subjects; cnn-more-subjects
is both; wall is quick whose LSTM-RNN also reads a learned transmural depth and wall thickness;
cnn-wall-more-subjects is all three. Ablations of the training: ema, augment and head are quick with a moving
average of the weights, with random 90-degree turns of each pixel's inputs, and with the discriminate layers
trained alone on frozen motion features before fine-tuning; myocardium-strata draws its training pixels more
from the myocardium.
"""
HELP = "train OF-RNN on a cohort fold and evaluate it (metrics, report, figures, model bundle)"
NEEDS_TENSORFLOW = True


def _default_root(profile):
    """results/train for the default profile, results/train-<profile> for another (as the Makefile's TRAIN_OUT):
    a fold folder holds one run's settings."""
    return "results/train" if profile == "quick" else f"results/train-{profile}"


def fold_command(args, fold, out):
    """The command line that trains one ``fold`` of an ``--fold all`` run into ``out`` with every other option
    of ``args`` as given, in a new Python process (a list for :func:`subprocess.run`). The options are those
    :func:`add_arguments` defines, each ``--name`` carrying ``args.name`` (dashes for underscores), so an option
    added there is passed on too."""
    import argparse
    import sys

    own = argparse.ArgumentParser()
    add_arguments(own)
    cmd = [sys.executable, "-m", "ofrnn", "train", "--fold", str(fold), "--out", str(out)]
    for dest in vars(own.parse_args([])):
        value = getattr(args, dest)
        if dest in ("fold", "out") or value is None or value is False:
            continue
        flag = "--" + dest.replace("_", "-")
        cmd += [flag] if value is True else [flag, str(value)]
    return cmd


def add_arguments(p):
    p.add_argument("--cohort", default="data/phantom.h5", help="cohort file (default: %(default)s)")
    p.add_argument("--fold", default="3", help="test fold 0..9, 'all' (cross-validation) or 'holdout' (default: 3)")
    p.add_argument("--profile", default="quick", help="a table of the settings file (default: quick; an unknown name is "
                                                            "refused with the file's profiles listed)")
    p.add_argument("--settings", default=None, help="profiles TOML (default: experiments/train.toml)")
    p.add_argument("--out", default=None, help="results folder (default: results/train/fold<k>, or results/train; "
                                               "results/train-<profile>/... for a profile other than quick)")
    p.add_argument("--flow", choices=("estimated", "gt"), default=None,
                   help="global-motion flow source (default from the profile: estimated; gt = simulator's, ablation)")
    p.add_argument("--roi", choices=("gt", "detector"), default=None,
                   help="ROI source: gt (annotated lv_box, the profile's default) or detector (needs --localizer)")
    p.add_argument("--localizer", default=None, help="heart localization bundle folder, for --roi detector")
    p.add_argument("--fold-localizer", choices=("train", "none"), default=None,
                   help="train each fold's own heart localization layers into its bundle (about 7 min a fold on "
                        "2 cores) or not (the bundle then needs boxes or --localizer to predict, and the "
                        "end-to-end rows are absent); default from the profile: train")
    p.add_argument("--cache", default="results/train/cache", help="cache of prepared ROI sequences and flows")
    p.add_argument("--force", action="store_true", help="retrain even if the results folder is complete")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all cores)")


def run(args):
    import json
    from pathlib import Path

    from ..errors import OfrnnError
    from ..fold_report import aggregate
    from ..settings import PROFILES, load_profile
    from ..train import run_fold

    settings = args.settings or PROFILES
    cfg = load_profile(args.profile, settings, flow=args.flow, roi=args.roi, localizer=args.fold_localizer)
    if args.fold not in ("all", "holdout") and not args.fold.isdigit():
        raise OfrnnError(f"{args.fold!r} is not a fold number, 'all' or 'holdout'", field="--fold")
    import tensorflow as tf

    localizer = None
    if cfg.roi == "detector":
        if not args.localizer:
            raise OfrnnError("--roi detector needs --localizer DIR (a heart localization bundle)", field="--localizer")
        if args.fold != "all":  # with --fold all each fold's own process loads it
            from ..localization import load_detector

            localizer = load_detector(args.localizer)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.fold == "all":
        import subprocess

        root = Path(args.out or _default_root(args.profile))
        results = []
        for k in range(cfg.n_folds):
            print(f"== fold {k} ==", flush=True)
            # Each fold trains in a process of its own: the memory TensorFlow holds returns to the system
            # between folds (one process for all ten was killed out of memory in fold 7 of a 16 GB-a-fold
            # profile), and `make cv` runs every fold exactly as `make train FOLD=k` does.
            rc = subprocess.run(fold_command(args, k, root / f"fold{k}")).returncode
            if rc:
                # a negative status is the signal that killed it (9: the system's out-of-memory killer, often)
                how = f"was killed by signal {-rc}" if rc < 0 else f"stopped with exit status {rc} (its message is above)"
                raise OfrnnError(f"fold {k} {how}; the folds before it are kept and rerunning the same command "
                                 "resumes", field="--fold")
            # the finished fold is read back, not trained again (so no localizer is needed here)
            results.append(run_fold(args.cohort, str(k), cfg, root / f"fold{k}", cache_dir=args.cache,
                                    settings=settings))
        summary = aggregate(results, root / "cv")
        for key, s in summary["metrics"].items():
            scale, unit = (1, "") if key == "dice_myocardium_mean" else (100, " %")
            print(f"{key:<28} {scale * s['mean']:6.2f} +- {scale * s['sd']:.2f}{unit}")
        return 0
    out = Path(args.out or f"{_default_root(args.profile)}/fold{args.fold}")
    result = run_fold(args.cohort, args.fold, cfg, out, cache_dir=args.cache, localizer=localizer, force=args.force,
                      settings=settings)
    m = result["metrics"]
    print(json.dumps({"roi": {k: m["roi"][k] for k in ("accuracy", "sensitivity", "specificity", "dice")},
                      "myocardium": {k: m["myocardium"][k] for k in ("accuracy", "sensitivity", "specificity", "dice")},
                      "dice_myocardium_mean": m["dice_myocardium_mean"], "segments": m["segments"]["accuracy"]},
                     indent=1, default=str))
    print(f"wrote {out}/ (report.md, metrics.json, model bundle)")
    return 0
