"""Experiments run by ``ofrnn experiment NAME``: one module per experiment, each with
``run(config, profile, out_dir)`` (settings from experiments/NAME.toml)."""
from __future__ import annotations

import copy

from ..errors import OfrnnError


def merge(base, over):
    """A deep copy of ``base`` with the nested dict ``over`` laid on top (tables merge, values replace)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(config, profile):
    """The TOML settings with the ``[profile.<profile>]`` overrides applied (``full``: none).

    Raises
    ------
    OfrnnError
        For a profile the file does not define.
    """
    profiles = config.get("profile", {})
    if profile not in ("full", *profiles):
        raise OfrnnError(f"unknown profile {profile!r}; known: full, {', '.join(profiles)}", field="profile")
    return merge({k: v for k, v in config.items() if k != "profile"}, profiles.get(profile, {}))
