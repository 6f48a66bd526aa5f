from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from xrayfactory.core.config import validate_config
from xrayfactory.core.errors import InputError

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_default_config_validates_and_defaults_are_filled():
    config = yaml.safe_load(Path(REPO / "config" / "config.yaml").read_text())
    validate_config(config, SCHEMA)
    assert config["drr"]["al_mm"] == 2.5  # not in config.yaml: filled from the schema
    assert config["real"]["acquisition"]["kvp"] == 110.0
    assert config["cohort"]["deformation"]["control_spacing_mm"] == 80.0


def test_empty_config_gets_every_default():
    config = validate_config({}, SCHEMA)
    assert config["carm"]["sdd"] == 1020.0 and config["split"]["scheme"] == "kfold"


@pytest.mark.parametrize(
    "config,message",
    [
        (
            {"drr": {"kvpp": 90}},
            r"key drr: Additional properties are not allowed \('kvpp' was unexpected\)",
        ),
        ({"drr": {"kvp": "high"}}, r"key drr.kvp: 'high' is not of type 'number'"),
        ({"drr": {"backend": "raytracer"}}, r"key drr.backend: 'raytracer' is not one of"),
        ({"cohort": {"n_subjects": 1}}, r"key cohort.n_subjects: 1 is less than the minimum of 2"),
        ({"views": {"lao_deg": [1, 2, 3]}}, r"key views.lao_deg: .* is too long"),
        ({"arms": ["real"]}, r"key \(top level\): Additional properties are not allowed"),
        (
            {"synth2d": {"n_images": 10}, "detector": {"arms": ["synth2d"], "train_images": 20}},
            r"key synth2d.n_images: the synth2d arm makes 10 images per fold, fewer than "
            r"detector.train_images = 20",
        ),
        (
            {
                "synth3d": {"n_volumes": 1},
                "drr": {"images_per_subject": 3},
                "detector": {"arms": ["synth3d"]},
            },
            r"key synth3d.n_volumes x drr.images_per_subject: the synth3d arm makes 3 images",
        ),
        (
            {"evaluation": {"realism_images": 50}, "detector": {"train_images": 40}},
            r"key evaluation.realism_images: 50 exceeds detector.train_images = 40",
        ),
    ],
)
def test_bad_values_name_the_key(config, message):
    with pytest.raises(InputError, match=message):
        validate_config(config, SCHEMA)


def _leaf_keys(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        out += _leaf_keys(sub, f"{key}.") if "properties" in sub else [key]
    return out


def test_every_key_is_documented():
    schema = yaml.safe_load(SCHEMA.read_text())
    doc = (REPO / "config" / "README.md").read_text()
    missing = [k for k in _leaf_keys(schema) if f"`{k}`" not in doc]
    assert not missing, f"undocumented config keys: {missing}"
