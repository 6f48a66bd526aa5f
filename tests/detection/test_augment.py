"""Domain randomisation moves landmark coordinates exactly; targets follow the moved landmarks."""

import math

import numpy as np
import pytest
import torch

from xrayfactory.detection.augment import DomainRandomisation, warp

SIZE = 32


def _blobs(points: list[tuple[float, float]], size: int = SIZE) -> torch.Tensor:
    r, c = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.zeros(size, size)
    for x, y in points:
        img += torch.exp(-((c - x) ** 2 + (r - y) ** 2) / 4.0)
    return img[None, None]


def _centroid(img: torch.Tensor, near: torch.Tensor, radius: float = 5.0) -> torch.Tensor:
    r, c = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    w = img[0, 0] * (torch.hypot(c - near[0], r - near[1]) < radius)
    return torch.stack([(w * c).sum(), (w * r).sum()]) / w.sum()


def _affine(angle_deg: float = 0.0, scale: float = 1.0, shift=(0.0, 0.0)) -> torch.Tensor:
    a = math.radians(angle_deg)
    centre = torch.tensor([(SIZE - 1) / 2] * 2)
    rot = scale * torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = torch.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = centre - rot @ centre + torch.tensor(shift)
    return m[None]


def test_a_translation_brings_an_outside_landmark_into_view():
    lm = torch.tensor([[[-3.0, 10.0], [10.0, 12.0]]])
    vis = torch.tensor([[False, True]])
    img = _blobs([(10.0, 12.0)])
    out, moved, new_vis = warp(
        img, lm, vis, _affine(shift=(6.0, 0.0)), torch.zeros(1, 2, SIZE, SIZE)
    )
    assert moved[0].flatten().tolist() == pytest.approx([3.0, 10.0, 16.0, 12.0], abs=1e-5)
    assert new_vis.tolist() == [[True, True]]
    assert _centroid(out, moved[0, 1]).tolist() == pytest.approx([16.0, 12.0], abs=0.05)
    # and back out again: the landmark that left the image is no longer visible
    _, _, back = warp(img, lm, vis, _affine(shift=(-12.0, 0.0)), torch.zeros(1, 2, SIZE, SIZE))
    assert back.tolist() == [[False, False]]


def test_a_landmark_hidden_inside_the_image_stays_hidden():
    lm = torch.tensor([[[12.0, 12.0]]])
    _, _, vis = warp(
        _blobs([]), lm, torch.tensor([[False]]), _affine(5.0), torch.zeros(1, 2, SIZE, SIZE)
    )
    assert vis.tolist() == [[False]]


def test_image_content_lands_where_the_landmarks_go_under_rotation_and_elastic_warp():
    """Round trip of the geometry: a blob drawn at each landmark is found, after the warp, at
    the landmark's moved coordinates."""
    points = [(9.0, 9.0), (22.0, 11.0), (15.0, 23.0)]
    wave = torch.sin(torch.linspace(0, math.pi, SIZE))
    disp = torch.stack(
        [1.5 * wave.view(1, SIZE).expand(SIZE, SIZE), -wave.view(SIZE, 1).expand(SIZE, SIZE)]
    )[None]
    lm = torch.tensor([points])
    out, moved, vis = warp(
        _blobs(points),
        lm,
        torch.ones(1, 3, dtype=torch.bool),
        _affine(9.0, 1.08, (2.0, -1.5)),
        disp,
    )
    assert vis.all()
    for k in range(3):
        found = _centroid(out, moved[0, k])
        assert torch.hypot(*(found - moved[0, k])) < 0.15


def test_random_domain_randomisation_is_seeded_and_reveals_edge_landmarks():
    aug = DomainRandomisation()
    img = torch.rand(64, 1, SIZE, SIZE)
    lm = torch.tensor([[-1.5, 16.0], [16.0, 16.0]]).expand(64, 2, 2).clone()
    vis = torch.tensor([False, True]).expand(64, 2).clone()
    torch.manual_seed(3)
    a = aug(img, lm, vis)
    torch.manual_seed(3)
    b = aug(img, lm, vis)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    shown = a[2][:, 0].float().mean().item()
    assert 0.1 < shown < 0.6  # the landmark 1.5 px outside the edge is in view in some samples
    assert a[2][:, 1].all()  # the central one always stays in view
    assert np.isfinite(a[1].numpy()).all()


def test_shutters_cover_the_field_outside_an_opening_over_the_centre():
    from xrayfactory.detection.augment import RandomShutter

    torch.manual_seed(0)
    img = torch.rand(64, 1, SIZE, SIZE) * 0.5 + 0.25
    out = RandomShutter(p=1.0, edge_sigma=0.05)(img)  # sharp edges: one grey per shutter
    centre = slice(SIZE // 2 - 2, SIZE // 2 + 2)
    # the open centre is windowed: its 1st..99th percentile (about 0.255..0.745) -> [0, 1]
    x, y = img[..., centre, centre].flatten(1), out[..., centre, centre].flatten(1)
    slope = ((x - x.mean(1, keepdim=True)) * (y - y.mean(1, keepdim=True))).sum(1) / (
        (x - x.mean(1, keepdim=True)) ** 2
    ).sum(1)
    assert ((slope > 1.9) & (slope < 2.2)).all()
    assert torch.allclose(y, (x - 0.25) * slope[:, None] - 0.01, atol=0.03)
    corner = out[:, 0, 0, 0]  # a corner lies under the shutter
    assert not torch.isclose(corner, img[:, 0, 0, 0]).any()
    lead = torch.isclose(corner, torch.tensor(1.0))  # lead: white, as bone is bright
    assert 0.5 < lead.float().mean() < 0.9
    assert ((out >= 0) & (out <= 1)).all()
    assert torch.equal(RandomShutter(p=0.0)(img), img)


def test_shutters_window_the_exposed_field_only():
    from xrayfactory.detection.augment import RandomShutter

    torch.manual_seed(2)
    img = torch.full((16, 1, SIZE, SIZE), 0.4)
    img[..., SIZE // 2 :, :] = 0.6
    ring = torch.tensor([0, SIZE - 1])
    img[..., ring, :], img[..., :, ring] = 1.0, 1.0  # a bright rim, under every shutter
    out = RandomShutter(p=1.0, inset=0.3, radii=(0.2, 0.2), edge_sigma=0.05)(img)
    # the border is left out of the window: the field's two greys become black and white
    open_rows = out[:, 0, SIZE // 2 - 4 : SIZE // 2 + 4, SIZE // 2]
    assert torch.allclose(open_rows[:, :4], torch.zeros(16, 4), atol=1e-6)
    assert torch.allclose(open_rows[:, 4:], torch.ones(16, 4), atol=1e-6)


def test_shutter_edges_are_soft_or_sharp_as_drawn():
    from xrayfactory.detection.augment import RandomShutter

    torch.manual_seed(1)
    img = torch.zeros(32, 1, SIZE, SIZE)  # a flat field: windowed to black
    row = RandomShutter(p=1.0, p_lead=0.0, inset=0.0, radii=(0.3, 0.3))(img + 0.5)[:, 0, SIZE // 2]
    # from the open centre to the shutter: values between the two show a blurred edge
    between = (row.abs() > 1e-3) & ((row - row[:, :1]).abs() > 1e-3)
    assert between.sum(dim=1).max() >= 4 and between.sum(dim=1).min() <= 2


def test_unsharp_masking_overshoots_at_edges_and_keeps_flat_fields():
    from xrayfactory.detection.augment import RandomUnsharpMask

    torch.manual_seed(0)
    step = torch.zeros(4, 1, SIZE, SIZE)
    step[..., SIZE // 2 :] = 0.6
    out = RandomUnsharpMask(p=1.0)(step)
    assert (out.amax(dim=(1, 2, 3)) > 0.65).all() and (out.amin(dim=(1, 2, 3)) < -0.05).all()
    flat = torch.full((4, 1, SIZE, SIZE), 0.4)
    assert torch.allclose(RandomUnsharpMask(p=1.0)(flat), flat, atol=1e-6)


@pytest.mark.parametrize("effect", ["shutter", "unsharp mask"])
def test_an_effect_drawn_for_some_images_is_the_one_every_image_would_get(effect):
    """Shutters and unsharp masks are computed only for the images drawn to get them: those
    images equal what the same draws give when every image gets it, the others are untouched."""
    from xrayfactory.detection.augment import RandomShutter, RandomUnsharpMask

    def module(p: float):
        return RandomShutter(p=p) if effect == "shutter" else RandomUnsharpMask(p=p)

    img = torch.rand(64, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(7)
    out = module(0.5)(img)
    torch.manual_seed(7)  # the same draws again, to see which images were chosen
    if effect == "shutter":
        torch.rand(64, 11)  # each shutter's shape and grey come first
        chosen = torch.rand(64) < 0.5
    else:
        chosen = torch.rand(64, 3)[:, 2] < 0.5
    torch.manual_seed(7)
    every = module(1.0)(img)
    assert 16 < chosen.sum() < 48
    assert torch.equal(out[~chosen], img[~chosen])
    assert torch.allclose(out[chosen], every[chosen], atol=1e-5)
    assert not torch.allclose(every[~chosen], img[~chosen], atol=1e-3)


def test_elastic_fields_are_zero_for_the_images_not_drawn_to_get_one():
    torch.manual_seed(4)
    field = DomainRandomisation(p_elastic=0.5).random_displacement(64, SIZE, SIZE)
    still = (field == 0).flatten(1).all(1)
    assert 16 < still.sum() < 48
    assert (field[~still].abs().flatten(1).amax(1) > 0.1).all()  # pixels, alpha 0.5 of 16
