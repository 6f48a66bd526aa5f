import numpy as np
import torch

from xrayfactory.imaging import acquisition, physics
from xrayfactory.imaging.drr import hu_to_density


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


def test_drr_density_is_deepdrr_hu_fit():
    """DRRs use DeepDRR 1.2.2's HU -> density fit (Volume._convert_hounsfield_to_density)."""
    hu = np.array([-1100.0, -1000, -500, 0, 350, 700, 1000, 1600])
    deepdrr = np.maximum(np.minimum(0.001029 * hu + 1.030, 0.0005886 * hu + 1.03), 0)
    ours = hu_to_density(torch.as_tensor(hu, dtype=torch.float32)).numpy()
    assert np.allclose(ours, deepdrr, rtol=1e-6, atol=1e-6)


def test_proxy_real_density_stays_water_equivalent():
    """The proxy-real model keeps 1 + HU/1000 (clipped at 0), summed over its CT materials."""
    hu = torch.tensor([-1100.0, -1000, -900, 0, 350, 700, 1600])
    rho = acquisition.material_channels(hu)[:3].sum(0)
    assert torch.allclose(rho, (1 + hu / 1000).clamp(min=0))
