import numpy as np

from xrayfactory import physics


def test_spectrum_is_physical_and_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYFACTORY_CACHE", str(tmp_path))
    physics.tube_spectrum.cache_clear()
    s = physics.tube_spectrum(90.0, al_mm=2.5)
    assert np.isclose(s.weights.sum(), 1.0) and np.all(s.weights > 0)
    assert s.energies_kev.max() < 90.0 and s.energies_kev.min() > 1.0
    files = list((tmp_path / "spectra").glob("*.json"))
    assert len(files) == 1
    physics.tube_spectrum.cache_clear()
    again = physics.tube_spectrum(90.0, al_mm=2.5)
    assert np.allclose(again.weights, s.weights) and np.allclose(again.energies_kev, s.energies_kev)
    # harder beam with copper: higher mean energy
    cu = physics.tube_spectrum(90.0, al_mm=2.5, cu_mm=0.3)
    assert (cu.energies_kev * cu.weights).sum() > (s.energies_kev * s.weights).sum()


def test_bone_attenuates_more_than_soft_tissue():
    mu = physics.mass_attenuation(
        ("air", "soft_tissue", "bone", "titanium"), np.array([30.0, 60.0, 90.0])
    )
    assert mu.shape == (4, 3)
    assert np.all(mu[2] > mu[1]) and np.all(mu[3] > mu[2])
    assert np.all(np.diff(mu, axis=1) < 0)  # falls with energy in this range
    assert np.isclose(mu[1, 1], 0.20, rtol=0.1)  # soft tissue at 60 keV ~0.20 cm^2/g (NIST)
