"""Experiments run by ``ofrnn experiment NAME``: one module per experiment, each with
``run(config, profile, out_dir)`` (settings from experiments/NAME.toml)."""
