"""Subcommands of ``ofrnn``, in the order ``ofrnn --help`` lists them (module names)."""
COMMANDS = ["info", "ingest", "localize"]
