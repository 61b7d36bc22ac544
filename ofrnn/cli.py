"""The ``ofrnn`` command line: one subcommand per module in :mod:`ofrnn.commands`.

A subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args)``;
heavy imports (TensorFlow) happen inside ``run`` so ``ofrnn --help`` stays instant. A module that
sets ``NEEDS_TENSORFLOW = True`` gets TensorFlow imported first without its start-up log lines
(:func:`ofrnn._quiet.quiet_tensorflow`). User
mistakes raise :class:`ofrnn.errors.OfrnnError` and end as one ``ofrnn: error: ...`` line with
exit status 2.
"""
import argparse
import importlib
import os
import sys

from ._version import __version__
from .commands import COMMANDS
from .errors import OfrnnError


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ofrnn", description="OF-RNN: pixel-level myocardial infarction detection from cine CMR.")
    parser.add_argument("--version", action="version", version=f"ofrnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        mod = importlib.import_module(f"ofrnn.commands.{name}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _tensorflow=getattr(mod, "NEEDS_TENSORFLOW", False))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args._tensorflow:
            from ._quiet import quiet_tensorflow

            quiet_tensorflow()
        return args._run(args) or 0
    except OfrnnError as e:
        print(f"ofrnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ofrnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `ofrnn info ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
