import dataclasses
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from xrayfactory.cohort.deform import DeformationParams
from xrayfactory.core.config import reference, schema_file, validate_config
from xrayfactory.core.errors import InputError
from xrayfactory.datasets.deepfluoro import Preprocessing
from xrayfactory.detection.detector import DetectorSettings
from xrayfactory.imaging.acquisition import AcquisitionParams
from xrayfactory.imaging.drr import TorchRenderer
from xrayfactory.imaging.geometry import CArm, ViewSampler
from xrayfactory.synth2d.model import Synth2DSettings
from xrayfactory.synth3d.ctgrid import GridSpec
from xrayfactory.synth3d.model import AutoencoderSettings, DiffusionSettings, Runtime

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
            {"synth2d": {"n_images": 10}},
            r"key synth2d: Additional properties are not allowed \('n_images' was unexpected\)",
        ),
        (
            {"synth2d": {"image_size": 20, "channels": [8, 16, 32, 64]}},
            r"key synth2d.image_size: 20 must be divisible by 8 \(synth2d.channels has 4 levels\)",
        ),
        (
            {"synth3d": {"shape": [48, 40, 40]}},
            r"key synth3d.shape: \[48, 40, 40\] must be divisible by 16 and",
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


def _properties(schema: dict, prefix: str = ""):
    for name, sub in schema.get("properties", {}).items():
        yield f"{prefix}{name}", sub
        yield from _properties(sub, f"{prefix}{name}.")


def test_every_key_is_described_and_the_reference_is_generated_from_the_schema():
    """Defaults and descriptions live in the schema only; config/README.md is generated from
    it and config/config.yaml (value by value), so it cannot state a wrong default."""
    schema = yaml.safe_load(SCHEMA.read_text())
    undescribed = [k for k, sub in _properties(schema) if not sub.get("description")]
    assert not undescribed, f"schema properties without a description: {undescribed}"
    expected = reference(SCHEMA, REPO / "config" / "config.yaml")
    assert (REPO / "config" / "README.md").read_text() == expected + "\n", (
        "config/README.md is stale: python -m xrayfactory.core.config > config/README.md"
    )
    assert "| `detector.train_images` | `40` | `80` |" in expected  # default, the demo's value


def test_settings_dataclasses_agree_with_the_schema():
    """A settings dataclass either has no default for a config key or the schema's."""
    schema = yaml.safe_load(SCHEMA.read_text())
    pairs = [
        (DetectorSettings, ["detector"]), (Synth2DSettings, ["synth2d"]),
        (AutoencoderSettings, ["synth3d", "autoencoder"]),
        (DiffusionSettings, ["synth3d", "diffusion"]), (Runtime, ["synth3d"]),
        (GridSpec, ["synth3d"]), (AcquisitionParams, ["real", "acquisition"]),
        (DeformationParams, ["cohort", "deformation"]), (CArm, ["carm"]),
        (ViewSampler, ["views"]), (TorchRenderer, ["drr"]),
        (Preprocessing, ["deepfluoro", "preprocessing"]),
    ]  # fmt: skip
    checked = 0
    for cls, path in pairs:
        props = schema
        for key in path:
            props = props["properties"][key]
        for f in dataclasses.fields(cls):
            if f.name not in props["properties"] or f.default is dataclasses.MISSING:
                continue
            default = props["properties"][f.name]["default"]
            value = list(f.default) if isinstance(f.default, tuple) else f.default
            assert value == default, f"{cls.__name__}.{f.name} = {f.default!r}, schema {default!r}"
            checked += 1
    assert checked > 50


def test_schemas_are_found_in_the_checkout_and_a_missing_one_is_named():
    """Jobs look schemas up in the package (a job image has no checkout; pyproject.toml ships
    workflow/schemas as xrayfactory/schemas); in a checkout they are workflow/schemas."""
    assert schema_file("cohort.schema.yaml") == SCHEMA.parent / "cohort.schema.yaml"
    with pytest.raises(InputError, match=r"nothing.yaml: no such schema in .*workflow/schemas"):
        schema_file("nothing.yaml")


def _key_paths(section: dict, prefix: tuple = ()) -> set[tuple]:
    paths = set()
    for key, value in section.items():
        if isinstance(value, dict) and value:
            paths |= _key_paths(value, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


def test_the_paper_configuration_sets_again_every_key_the_demo_sets():
    """Merged over the demo's, the paper configuration must not inherit a demo setting (it
    inherited the demo's SPADE decoder and mask prior, which the README says it does not use)."""
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "deepfluoro.yaml").read_text())
    unread = {p for p in _key_paths(demo) if p[0] == "demo_data"}
    unread |= {("cohort", "n_subjects"), ("split", "n_folds")}  # DeepFluoro: 6 specimens, loso
    inherited = _key_paths(demo) - _key_paths(paper) - unread
    assert not inherited, sorted(inherited)
    assert paper["synth3d"]["autoencoder"]["spade_channels"] == 0
    assert paper["synth3d"]["autoencoder"]["mask_prior"] is False
