"""X-ray physics tables: tube spectra (SpekPy) and mass attenuation of tissues (XrayDB).

Compositions are mass fractions (ICRU Report 44 / NIST); densities in g/cm^3.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xrayfactory.core.atomic import atomic_path

COMPOSITIONS: dict[str, dict[str, float]] = {
    "air": {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827},
    "soft_tissue": {
        "H": 0.102,
        "C": 0.143,
        "N": 0.034,
        "O": 0.708,
        "Na": 0.002,
        "P": 0.003,
        "S": 0.003,
        "Cl": 0.002,
        "K": 0.003,
    },
    "bone": {
        "H": 0.034,
        "C": 0.155,
        "N": 0.042,
        "O": 0.435,
        "Na": 0.001,
        "Mg": 0.002,
        "P": 0.103,
        "S": 0.003,
        "Ca": 0.225,
    },
    "titanium": {"Ti": 1.0},
    "steel": {"Fe": 0.70, "Cr": 0.19, "Ni": 0.11},
}

DENSITY = {"air": 0.001205, "soft_tissue": 1.06, "bone": 1.92, "titanium": 4.51, "steel": 8.0}


@dataclass(frozen=True)
class Spectrum:
    """Energy bins (keV) and detector weights (fluence x energy, summing to 1)."""

    energies_kev: np.ndarray
    weights: np.ndarray


def cache_dir() -> Path:
    """Where computed spectra are kept: $XRAYFACTORY_CACHE, else $XDG_CACHE_HOME/xrayfactory."""
    if "XRAYFACTORY_CACHE" in os.environ:
        return Path(os.environ["XRAYFACTORY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xrayfactory"


@functools.lru_cache(maxsize=16)
def tube_spectrum(
    kvp: float, *, al_mm: float = 2.5, cu_mm: float = 0.0, n_bins: int = 24, anode_deg: float = 12.0
) -> Spectrum:
    """Tungsten-anode spectrum from SpekPy, filtered, rebinned to `n_bins` energy bins and
    weighted for an energy-integrating detector. Cached on disk (SpekPy takes seconds to load)."""
    key = json.dumps([float(kvp), float(al_mm), float(cu_mm), int(n_bins), float(anode_deg)])
    path = cache_dir() / "spectra" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached["key"] == key:
            return Spectrum(np.array(cached["energies_kev"]), np.array(cached["weights"]))
    spectrum = _spekpy_spectrum(kvp, al_mm, cu_mm, n_bins, anode_deg)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "key": key,
                        "energies_kev": spectrum.energies_kev.tolist(),
                        "weights": spectrum.weights.tolist(),
                    }
                )
            )
    except OSError:
        pass  # a read-only cache only costs time
    return spectrum


def _spekpy_spectrum(
    kvp: float, al_mm: float, cu_mm: float, n_bins: int, anode_deg: float
) -> Spectrum:
    import spekpy  # imported here: loading its tables takes seconds

    spek = spekpy.Spek(kvp=kvp, th=anode_deg)
    spek.filter("Al", al_mm)
    if cu_mm > 0:
        spek.filter("Cu", cu_mm)
    k, fluence = spek.get_spectrum()
    edges = np.linspace(k.min(), k.max(), n_bins + 1)
    idx = np.clip(np.digitize(k, edges) - 1, 0, n_bins - 1)
    energy = np.bincount(idx, weights=fluence * k, minlength=n_bins)
    counts = np.bincount(idx, weights=fluence, minlength=n_bins)
    keep = energy > 1e-6 * energy.sum()
    return Spectrum(energy[keep] / counts[keep], energy[keep] / energy[keep].sum())


@functools.lru_cache(maxsize=64)
def _mass_attenuation(material: str, energies: tuple[float, ...]) -> np.ndarray:
    import xraydb

    ev = np.asarray(energies) * 1000.0
    return sum(w * xraydb.mu_elam(el, ev) for el, w in COMPOSITIONS[material].items())


def mass_attenuation(materials: tuple[str, ...], energies_kev: np.ndarray) -> np.ndarray:
    """(M, E) mass attenuation coefficients mu/rho in cm^2/g."""
    e = tuple(float(x) for x in energies_kev)
    return np.stack([_mass_attenuation(m, e) for m in materials])
