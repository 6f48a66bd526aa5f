import torch

from xrayfactory.detection.heatmaps import gaussian_heatmaps, peaks


def test_heatmaps_round_trip_to_their_landmarks():
    lm = torch.tensor([[[10.3, 20.7], [50.0, 5.25], [33.9, 60.1], [0.0, 0.0]]])
    vis = torch.tensor([[True, True, True, False]])
    maps = gaussian_heatmaps(lm, vis, 64, 64, sigma=2.0)
    assert maps.shape == (1, 4, 64, 64)
    assert maps[0, 3].abs().max() == 0  # invisible: empty channel
    xy, value = peaks(maps)
    assert torch.allclose(xy[0, :3], lm[0, :3], atol=0.02)
    assert torch.all(value[0, :3] > 0.9) and value[0, 3] == 0


def test_peak_at_the_border_stays_finite():
    lm = torch.tensor([[[0.0, 63.0]]])
    xy, _ = peaks(gaussian_heatmaps(lm, torch.tensor([[True]]), 64, 64, sigma=1.5))
    assert torch.allclose(xy, lm, atol=0.5)
