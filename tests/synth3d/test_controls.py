"""Control arms: the real CT on the synth3d grid and window, through its autoencoder, and real
images through the synth2d image size; whether the autoencoder's decoder reads its latent."""

import numpy as np
import pytest
import torch

from tests.conftest import sphere_volume
from xrayfactory.cohort.volumes import Volume
from xrayfactory.synth2d.controls import resized
from xrayfactory.synth3d.controls import latent_use, on_model_grid, reconstructed
from xrayfactory.synth3d.ctgrid import GridSpec, model_affine, to_hu, training_pair
from xrayfactory.synth3d.model import AutoencoderSettings, build_autoencoder, mask_args

SPEC = GridSpec(
    shape=(16, 16, 16),
    spacing_mm=8.0,
    hu_range=(-1024.0, 1600.0),
    groups=(("ball", (1,)),),
    bone=("ball",),
)


def _ct():
    ct = sphere_volume(np.zeros(3), 40.0, value=3000.0)  # metal-bright ball
    ct.data[ct.data == 0] = -1000.0
    return ct


def _seg(radius_mm: float = 40.0):
    seg = sphere_volume(np.zeros(3), radius_mm)
    return Volume(seg.data.astype(np.int16), seg.affine)


def _autoencoder(spade_channels: int):
    torch.manual_seed(0)
    a = AutoencoderSettings(
        channels=(4, 8),
        patch=(16, 16, 16),
        steps=1,
        learning_rate=1e-3,
        spade_channels=spade_channels,
    )
    return build_autoencoder(a, len(SPEC.channels)).eval()


def test_the_ct_on_the_generators_grid_loses_what_its_window_cuts():
    ct = _ct()
    grid = on_model_grid(ct, SPEC)
    assert grid.shape == SPEC.shape
    np.testing.assert_allclose(grid.affine, model_affine(ct, SPEC))
    assert grid.data.max() == pytest.approx(1600.0)  # 3000 HU clipped to the window
    assert grid.data.min() >= -1024.0
    # world coordinates keep their meaning: the ball's centre is the grid's centre
    centre = grid.voxel_to_world(np.array([[7.5, 7.5, 7.5]]))[0]
    np.testing.assert_allclose(centre, 0.0, atol=1e-6)


@pytest.mark.parametrize("spade_channels", [0, 8])
def test_reconstruction_goes_through_the_autoencoder_on_the_model_grid(spade_channels):
    ae = _autoencoder(spade_channels)
    rec = reconstructed(_ct(), _seg(), ae, SPEC, device="cpu")
    assert rec.shape == SPEC.shape
    assert -1024.0 <= rec.data.min() and rec.data.max() <= 1600.0
    assert not np.allclose(rec.data, on_model_grid(_ct(), SPEC).data, atol=50.0)
    # only a SPADE decoder reads the label map: another mask changes its reconstruction
    other = reconstructed(_ct(), _seg(20.0), ae, SPEC, device="cpu")
    assert np.allclose(rec.data, other.data) == (spade_channels == 0)


@pytest.mark.parametrize("spade_channels", [0, 8])
def test_latent_use_says_whether_the_decoder_reads_its_latent(spade_channels):
    ae = _autoencoder(spade_channels)
    hu = on_model_grid(_ct(), SPEC).data
    cond = training_pair(_ct(), _seg(), SPEC)[1]
    body = cond[0] > 0.5
    assert 0 < body.sum() < body.size
    used = latent_use(hu, cond, ae, SPEC)
    assert used["latent_effect_hu"] > 1.0
    # the error is the reconstruction's (the control drr_recon's volume), over the body only
    rec = reconstructed(_ct(), _seg(), ae, SPEC, device="cpu").data
    assert used["recon_mae_hu"] == pytest.approx(np.abs(rec - hu)[body].mean(), rel=1e-4)
    assert used["recon_mae_hu"] != pytest.approx(np.abs(rec - hu).mean(), rel=1e-2)
    # a decoder cut off from its latent (posterior collapse, made by hand): no effect at all
    torch.nn.init.zeros_(ae.post_quant_conv.conv.weight)
    cut = latent_use(hu, cond, ae, SPEC)
    assert cut["latent_effect_hu"] == 0.0 and cut["recon_mae_hu"] > 1.0


@pytest.mark.parametrize("spade_channels", [0, 8])
def test_with_a_mask_prior_the_autoencoder_codes_the_residual_over_it(spade_channels):
    """The prior (constant -0.1, the ball +0.5 in normalised HU) is taken off before encoding
    and put back after decoding; the prior's own error is reported beside the network's."""
    ae = _autoencoder(spade_channels)
    hu = on_model_grid(_ct(), SPEC).data
    x, cond = training_pair(_ct(), _seg(), SPEC)
    c = torch.as_tensor(cond)[None]
    plain = latent_use(hu, cond, ae, SPEC)
    assert np.isnan(plain["mask_prior_mae_hu"])
    ae.mask_prior.weights.copy_(torch.tensor([-0.1, 0.0, 0.5]))
    prior = (-0.1 + 0.5 * c[:, 1:2]).float()
    torch.testing.assert_close(ae.mask_prior(c), prior)
    with torch.no_grad():
        by_hand = ae.reconstruct(torch.as_tensor(x)[None] - prior, *mask_args(ae, c)) + prior
    rec = reconstructed(_ct(), _seg(), ae, SPEC, device="cpu").data
    np.testing.assert_allclose(rec, to_hu(by_hand[0, 0].numpy(), SPEC), atol=1e-2)
    used = latent_use(hu, cond, ae, SPEC)
    body = cond[0] > 0.5
    assert used["recon_mae_hu"] == pytest.approx(np.abs(rec - hu)[body].mean(), rel=1e-4)
    alone = np.abs(to_hu(prior[0, 0].numpy(), SPEC) - hu)[body].mean()
    assert used["mask_prior_mae_hu"] == pytest.approx(alone, rel=1e-5)


def test_resizing_through_the_generators_image_size_removes_fine_detail():
    rng = np.random.default_rng(0)
    smooth = np.outer(np.linspace(0, 1, 64), np.linspace(1, 2, 64))[None].astype(np.float32)
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)[None]
    images = np.concatenate([smooth, checker, rng.random((1, 64, 64), np.float32)])
    np.testing.assert_allclose(resized(images, 64), images, atol=1e-6)  # same size: unchanged
    small = resized(images, 16)
    assert small.shape == images.shape and small.dtype == images.dtype
    np.testing.assert_allclose(small[0, 8:-8, 8:-8], smooth[0, 8:-8, 8:-8], atol=0.02)
    assert small[1, 8:-8, 8:-8].std() < 0.02  # the checkerboard is gone
