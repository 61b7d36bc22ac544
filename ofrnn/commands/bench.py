"""Time OF-RNN inference per subject and training throughput on this machine.

Inference: every stage of 'ofrnn predict' on SUBJECTS subjects of the cohort, timed separately:
localization (the ROI box: annotated box, or the heart localization layers with --localizer),
flow (deep optical flow of the ROI sequence), features (P_l and P_g of every ROI pixel),
network (LSTM-RNN + discriminate layers on 4096 pixels) and total. The first subject is a warm-up
and is not counted.

Training, side by side in one run: pixels per second of the full network's fine-tuning step
(RMSProp, the bundle's shapes) fed (a) random in-memory batches (the network alone, an upper
bound), (b) real sampled pixels through the former Python-generator feed and (c) the same pixels
through the in-graph gather feed that training uses (:meth:`ofrnn.pipeline.PixelBatches.dataset`),
taking turns for ROUNDS rounds of STEPS steps; each feed's median round is reported with the range.
Writes OUT/metrics.json and OUT/report.md.
"""
#: rounds of the training-throughput test, and fine-tuning steps per feed and round
ROUNDS, STEPS = 3, 20
HELP = "benchmark inference time per subject (by stage) and training throughput"
NEEDS_TENSORFLOW = True


def add_arguments(p):
    p.add_argument("--model", default="results/train/fold3", help="model bundle folder (default: %(default)s)")
    p.add_argument("--cohort", default="data/phantom.h5", help="cohort file (default: %(default)s)")
    p.add_argument("--subjects", type=int, default=10, help="subjects timed (default: %(default)s)")
    p.add_argument("--localizer", default=None, help="heart localization bundle: time detector ROIs, not GT boxes")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow threads (default: %(default)s)")
    p.add_argument("--batch", type=int, default=256, help="training batch for the throughput test (default: %(default)s)")
    p.add_argument("--cache", default="results/train/cache", help="cache of prepared ROI sequences and flows")
    p.add_argument("--out", default="results/bench", help="output folder (default: %(default)s)")


def run(args):
    import os
    import platform
    import tempfile
    from pathlib import Path

    import numpy as np
    import tensorflow as tf

    from ..errors import OfrnnError
    from ..files import atomic_write_text, content_digest, write_json
    from ..predict import load_bundle, predict_subjects
    from ..store import open_cohort

    if args.subjects < 1:
        raise OfrnnError("must be at least 1", field="--subjects")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    except RuntimeError:  # TensorFlow already running in this process (e.g. a test): keep its threads
        pass
    network, config = load_bundle(args.model)
    localizer = None
    if args.localizer:
        from ..localization import load_detector

        localizer = load_detector(args.localizer)
    with open_cohort(args.cohort) as c, tempfile.TemporaryDirectory(prefix="ofrnn-bench-") as tmp:
        ids = c.ids[:args.subjects + 1]
        res = predict_subjects(network, config, [c.read(s) for s in ids], tmp, roi="detector" if localizer else "gt",
                               localizer=localizer, source_path=c.path, progress=False)
    rows = res["timings"][1:] or res["timings"]
    stages = ("roi", "flow", "features", "network", "total")
    inference = {k: dict(mean=float(np.mean([r[k] for r in rows])), max=float(np.max([r[k] for r in rows])))
                 for k in stages}

    train_px_s, train_spread = _training_throughput(network, config, args, ids)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = dict(model=dict(profile=config.get("profile"), fold=config.get("fold"), sha256=config["model_sha256"]),
                  cohort_sha256=content_digest(args.cohort), subjects_timed=len(rows), threads=args.threads,
                  cpu_count=os.cpu_count(), roi_source="detector" if localizer else "gt (annotated box)",
                  flow=config["flow"], inference_seconds=inference, training_pixels_per_second=train_px_s,
                  training_pixels_per_second_range=train_spread, training_batch=args.batch,
                  platform=platform.platform(), tensorflow=tf.__version__,
                  paper=dict(testing_seconds_per_subject=191, training_minutes=373, gpu="NVIDIA Quadro K600"))
    write_json(out / "metrics.json", result, indent=2)
    lines = [f"# OF-RNN timing ({args.threads} TensorFlow threads, {os.cpu_count()} cores)", "",
             f"Model: profile `{config.get('profile')}`, fold {config.get('fold')}, weights "
             f"{config['model_sha256']} (flow: {config['flow']}); cohort {result['cohort_sha256']}, {len(rows)} subjects "
             f"(after one warm-up), ROI from {result['roi_source']}.", "",
             "| stage | mean s / subject | max s |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']:.3f} | {v['max']:.3f} |" for k, v in inference.items()]
    lines += ["", "Paper: 191 s per subject (testing) on a Quadro K600; target here < 1 s on 2 CPU cores.", "",
              f"Training throughput (full network, fine-tuning step, batch {args.batch}), one run, the feeds taking "
              f"turns ({ROUNDS} rounds of {STEPS} steps), pixels/s:", "",
              "| feed | median pixels/s | slowest - fastest round | vs generator |", "|---|---|---|---|"]
    ref = train_px_s.get("generator")
    lines += [f"| {k} | {v:.0f} | {train_spread[k][0]:.0f} - {train_spread[k][1]:.0f} | "
              f"{f'{v / ref:.2f}x' if ref else '-'} |" for k, v in train_px_s.items()]
    if ref is None:
        lines += ["", "Only random batches: the cohort has no annotated LV boxes or traced masks to sample pixels from."]
    lines += ["", "The paper trained 373 min on a GPU.", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


def _training_throughput(network, config, args, ids, *, steps=STEPS, rounds=ROUNDS):
    """Fine-tuning pixels/s by feed: random batches, generator, in-graph gather (one run, same network).

    The feeds take turns: ``rounds`` rounds of ``steps`` steps each, the order rotated every round,
    so that a slow spell of a shared machine falls on all of them. Returns ({feed: median pixels/s},
    {feed: [slowest, fastest]}). One timed pass per feed ranked them differently from run to run
    (graph 4,004 vs generator 6,635 px/s, then 6,492 vs 4,003). Only the random batches when the
    cohort cannot be sampled (no LV boxes or traced masks).
    """
    import time

    import keras
    import numpy as np

    from ..errors import OfrnnError
    from ..pipeline import PixelBatches, batch_settings, prepare_cohort, sample_pixels

    network.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    B = args.batch
    x = [rng.random((B,) + tuple(network.inputs[0].shape[1:]), dtype=np.float32),
         rng.random((B,) + tuple(network.inputs[1].shape[1:]), dtype=np.float32)]
    y = rng.integers(0, 2, B)

    def random_batches(n):
        for _ in range(n):
            network.train_on_batch(x, y)

    feeds = dict(random_batches=random_batches)
    # the feeds need what training needs: annotated LV boxes and traced infarct / myocardium masks
    try:
        subjects = prepare_cohort(args.cohort, frames=config["frames"], roi="gt", flow=config["flow"],
                                  margin=config["roi_margin"], cache_dir=args.cache, ids=ids, progress=False)
    except OfrnnError:
        subjects = None
    if subjects and "wall_segmenter" in config:  # the network reads learned wall geometry
        from ..wall import with_wall

        subjects = with_wall(subjects, config["wall_segmenter"])
    if subjects and all(r.infarct is not None and r.myocardium is not None for r in subjects):
        samples = sample_pixels(subjects, per_subject=800, fractions=[0.3, 0.3, 0.2, 0.2], seed=0)
        batches = PixelBatches(subjects, samples, batch_size=args.batch, seed=0, **batch_settings(config))
        for feed in ("generator", "graph"):
            ds = batches.dataset(feed=feed)
            feeds[feed] = lambda n, ds=ds: network.fit(ds, steps_per_epoch=n, epochs=1, verbose=0)
    for feed in feeds.values():
        feed(5)  # warm-up: tracing, first batches
    rates = {k: [] for k in feeds}
    names = list(feeds)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            feeds[k](steps)
            rates[k].append(steps * B / (time.perf_counter() - t0))
    return ({k: float(np.median(v)) for k, v in rates.items()},
            {k: [float(min(v)), float(max(v))] for k, v in rates.items()})
