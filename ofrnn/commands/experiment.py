"""Run a named experiment: ofrnn/experiments/<NAME>.py with the settings of experiments/<NAME>.toml.

Each experiment module defines run(config, profile, out_dir); the config is the TOML file as a
dict, the profile selects one of its [profile.<name>] sections (the experiment decides what a
profile changes), and results go to OUT_DIR (default results/<NAME>).

Profiles per experiment (experiments/<NAME>.toml; the default is marked *):
  flow           full* (the benchmark), quick, tune, tune-matching, tune-data, tune-smoothing, tune-filtering, tune-tracking, tune-sparse
  localization   full* (the whole training and evaluation), quick, seed1, seed2, rescore, rescore-seed1, rescore-seed2
                 (rescore*: the trained bundles scored again under [detect]'s sequence rule)
  localization_seeds
                 full* (mean +- sd over the localization runs of seeds 0-2)
  localization_rule
                 full* (the sequence rule, chosen on calibration data with the seeds' bundles)
  phantom        full*, smoke
  realism        full*, calibrate, smoke
  ceiling        full*, quick, smoke
  ablation_features, ablation_classifier, ablation_patchsize
                 quick*, quick2, paper, smoke
  figures, report
                 quick*, quick2, paper, smoke
"""
import re

#: experiments that train or run networks: TensorFlow is imported first, without its start-up log
#: lines (checked against the modules' imports by the tests)
TENSORFLOW_EXPERIMENTS = frozenset({"ablation_classifier", "ablation_features", "ablation_patchsize", "localization",
                                    "localization_rule", "realism"})

HELP = "run an experiment by name (settings in experiments/<name>.toml, results in results/<name>/)"


def add_arguments(p):
    p.add_argument("name", metavar="NAME", help="experiment name, e.g. 'flow'")
    p.add_argument("--config", metavar="FILE.toml", help="settings (default: experiments/NAME.toml)")
    p.add_argument("--profile", default=None,
                   help="profile within the settings file (default: its default_profile, else 'full'; see above)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: results/NAME)")


def run(args):
    import importlib
    from pathlib import Path

    from ..errors import OfrnnError
    from ..files import read_toml

    if not re.fullmatch(r"[a-z][a-z0-9_]*", args.name):
        raise OfrnnError(f"experiment name {args.name!r} must be a module name", field="NAME")
    if args.name in TENSORFLOW_EXPERIMENTS:
        from .._quiet import quiet_tensorflow

        quiet_tensorflow()
    try:
        module = importlib.import_module(f"ofrnn.experiments.{args.name}")
    except ModuleNotFoundError as e:
        if e.name != f"ofrnn.experiments.{args.name}":
            raise
        raise OfrnnError(f"no experiment {args.name!r} (ofrnn/experiments/{args.name}.py)", field="NAME") from None
    config = Path(args.config) if args.config else Path("experiments") / f"{args.name}.toml"
    settings = read_toml(config)
    profile = args.profile or settings.get("default_profile", "full")
    out = Path(args.out) if args.out else Path("results") / args.name
    out.mkdir(parents=True, exist_ok=True)
    try:
        return module.run(settings, profile, out) or 0
    except OfrnnError as e:
        # an experiment checks its settings as plain tables and names only the key at fault: the
        # user also needs to know which file holds it
        if e.path is None and e.field and _is_setting(settings, e.field):
            raise OfrnnError(e.message, path=config, field=e.field) from None
        raise


def _is_setting(settings, field):
    """Whether ``field`` (``key``, ``table.key`` or ``key[3]``) names a key of the TOML tables
    ``settings`` at any depth (experiments check keys after merging a profile into its defaults)."""
    head = re.split(r"[.\[]", field, maxsplit=1)[0]

    def keys(table):
        for k, v in table.items():
            yield k
            if isinstance(v, dict):
                yield from keys(v)

    return head in set(keys(settings))
