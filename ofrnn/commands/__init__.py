"""Subcommands of ``ofrnn``, in the order ``ofrnn --help`` lists them (module names)."""
COMMANDS = ["simulate", "info", "ingest", "localize", "flow", "experiment", "train", "predict", "bench"]
