"""Configuration: JSON-schema validation with defaults filled, errors that name the key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from xrayfactory.core.errors import InputError


def schema_file(name: str) -> Path:
    """A workflow schema: workflow/schemas/<name> in a checkout, the copy packaged as
    xrayfactory/schemas/<name> in an installed package (a job image has no checkout)."""
    package = Path(__file__).resolve().parents[1]
    folders = (package.parent / "schemas", package / "schemas")
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise InputError(name, f"no such schema in {' or '.join(map(str, folders))}")


def _with_defaults(cls: type) -> type:
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = _copy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


def _copy(v: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(v))


def validate_config(config: dict, schema_path: str | os.PathLike, *, where: str = "config") -> dict:
    """Fill defaults into `config` in place and validate it; raise InputError naming the key."""
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            lines.append(f"key {key}: {e.message}")
        raise InputError(where, "invalid configuration\n  " + "\n  ".join(lines))
    _check_synth2d(config["synth2d"], where)
    _check_synth3d(config["synth3d"], where)
    _check_realism(config, where)
    return config


def _check_realism(config: dict, where: str) -> None:
    """Realism samples every arm's training set: it cannot ask for more images than it has."""
    need = config["detector"]["train_images"]
    if config["evaluation"]["realism_images"] > need:
        raise InputError(
            where,
            f"key evaluation.realism_images: {config['evaluation']['realism_images']} exceeds "
            f"detector.train_images = {need} (realism compares samples of the training sets)",
        )


def _check_synth2d(section: dict, where: str) -> None:
    """The generator's U-Net halves its images at every level but the last."""
    factor = 2 ** (len(section["channels"]) - 1)
    if section["image_size"] % factor:
        raise InputError(
            where,
            f"key synth2d.image_size: {section['image_size']} must be divisible by {factor} "
            f"(synth2d.channels has {len(section['channels'])} levels)",
        )


def _check_synth3d(section: dict, where: str) -> None:
    """What the schema cannot say: bone groups are condition groups; the grid divides."""
    unknown = sorted(set(section["bone"]) - set(section["condition"]))
    if unknown:
        raise InputError(where, f"key synth3d.bone: {unknown} are not groups of synth3d.condition")
    factor = 2 ** (
        len(section["autoencoder"]["channels"]) + len(section["diffusion"]["channels"]) - 2
    )
    patch_factor = 2 ** (len(section["autoencoder"]["channels"]) - 1)
    if any(s % factor for s in section["shape"]) or any(
        p % patch_factor for p in section["autoencoder"]["patch"]
    ):
        raise InputError(
            where,
            f"key synth3d.shape: {section['shape']} must be divisible by {factor} and "
            f"synth3d.autoencoder.patch {section['autoencoder']['patch']} by {patch_factor} "
            "(the networks' downsampling)",
        )


_UNSET = object()


def _value(v: Any) -> str:
    """A config value as the README shows it (long strings shortened)."""
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    return f"`{text if len(text) <= 60 else text[:57] + '...'}`"


def _rows(schema: dict, config: dict, prefix: str = "") -> list[str]:
    rows = []
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        value = config.get(name, _UNSET) if isinstance(config, dict) else _UNSET
        if "properties" in sub:
            rows += _rows(sub, value if isinstance(value, dict) else {}, f"{key}.")
            continue
        demo = "" if value is _UNSET or value == sub.get("default") else _value(value)
        rows.append(f"| `{key}` | {_value(sub.get('default'))} | {demo} | {sub['description']} |")
    return rows


_HEADER = """\
# Configuration keys

<!-- Generated from workflow/schemas/config.schema.yaml and config/config.yaml by
     `python -m xrayfactory.core.config > config/README.md`; edit those, not this file. -->

Every key has its default and its description in `workflow/schemas/config.schema.yaml`, the one
source of settings: the workflow fills the defaults when it validates the config, before any job,
and a key the schema does not know stops the run with a message naming it. `config/config.yaml`
is the embedded demo; the `config.yaml` column shows where it differs from the default. Override
with `--configfile other.yaml` (merged section by section) or `--config key=value`.
"""


def reference(schema_path: str | os.PathLike, config_path: str | os.PathLike) -> str:
    """config/README.md: one table per section, key by key (default, demo value, meaning)."""
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    with open(config_path) as f:
        config = yaml.safe_load(f) or {}
    table = ["| key | default | config.yaml | meaning |", "| --- | --- | --- | --- |"]
    top = {k: v for k, v in schema["properties"].items() if "properties" not in v}
    parts = [_HEADER, "## Top level\n", *table, *_rows({"properties": top}, config), ""]
    for name, sub in schema["properties"].items():
        if "properties" in sub:
            section = _rows(sub, config.get(name) or {}, f"{name}.")
            parts += [f"## `{name}`\n", sub["description"] + "\n", *table, *section, ""]
    return "\n".join(parts)


if __name__ == "__main__":
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    print(reference(repo / "workflow/schemas/config.schema.yaml", repo / "config/config.yaml"))
