"""What every CLI module shares: the JSON settings a rule passes from the config."""

from __future__ import annotations

import argparse
import json


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("not a JSON object")
    return value


def add_settings(p: argparse.ArgumentParser) -> None:
    """`--settings JSON`: the config sections the step uses (a rule's params show them, and a
    change in them reruns the step)."""
    p.add_argument("--settings", type=_json, required=True, help="JSON settings from the config")
