"""sRGB <-> Lab in torch against scikit-image, the lightness fast path, and gamut mapping."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from chromatize import color

skcolor = pytest.importorskip("skimage.color")


def _grid(steps: int = 64) -> np.ndarray:
    """Every combination of ``steps`` levels per channel, as an (N, M, 3) float64 image."""
    g = np.linspace(0.0, 1.0, steps)
    rgb = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1)
    return rgb.reshape(steps * steps, steps, 3)


def _to_chw(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hwc)).float().permute(2, 0, 1)


def _to_hwc(chw: torch.Tensor) -> np.ndarray:
    return chw.permute(1, 2, 0).double().numpy()


def _delta_e(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    return np.sqrt(((lab1 - lab2) ** 2).sum(-1))


def test_rgb_to_lab_matches_scikit_image_on_a_dense_grid():
    rgb = _grid(64)
    ours = _to_hwc(color.rgb_to_lab(_to_chw(rgb)))
    reference = skcolor.rgb2lab(rgb)
    assert _delta_e(ours, reference).max() < 0.05


def test_lab_to_rgb_matches_scikit_image_on_a_dense_grid():
    lab = skcolor.rgb2lab(_grid(64))
    ours = _to_hwc(color.lab_to_rgb(_to_chw(lab), gamut="clip"))
    reference = skcolor.lab2rgb(lab)
    # compare as colours: ΔE between the Lab of both results
    assert _delta_e(skcolor.rgb2lab(ours), skcolor.rgb2lab(reference)).max() < 0.05


def test_clip_mode_matches_scikit_image_for_out_of_gamut_colours():
    gen = torch.Generator().manual_seed(1)
    lab = torch.stack(
        (
            torch.rand(64, 64, generator=gen) * 100,
            torch.randn(64, 64, generator=gen) * 60,
            torch.randn(64, 64, generator=gen) * 60,
        )
    )
    # scikit-image zeroes f(Z) where it would go negative (b far above any real colour); we
    # extend the curve linearly instead, so compare where the two definitions coincide
    defined = ((lab[0] + 16) / 116 - lab[2] / 200 >= 0).numpy()
    assert defined.mean() > 0.9
    ours = _to_hwc(color.lab_to_rgb(lab, gamut="clip"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image warns about the zeroed values
        reference = skcolor.lab2rgb(_to_hwc(lab))
    assert np.abs(ours - reference)[defined].max() < 2e-3


def test_round_trip_and_batch_dimensions():
    rgb = _to_chw(_grid(16))  # (3, 256, 16)
    batched = torch.stack((rgb, rgb.flip(-1)))  # (2, 3, 256, 16)
    lab = color.rgb_to_lab(batched)
    assert lab.shape == batched.shape and lab.dtype == torch.float32
    back = color.lab_to_rgb(lab)
    assert (back - batched).abs().max() < 1e-4
    assert color.rgb_to_lab(rgb.double()).dtype == torch.float32


def test_wrong_channel_count_is_rejected():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        color.rgb_to_lab(torch.zeros(4, 8, 8))


def test_lightness_fast_path_equals_full_conversion():
    rgb = _to_chw(_grid(32))
    fast = color.rgb_to_lightness(rgb)
    assert fast.shape == (1, *rgb.shape[1:])
    assert (fast[0] - color.rgb_to_lab(rgb)[0]).abs().max() < 1e-4


def test_gray_lightness_matches_scikit_image_and_inverts():
    gray = np.linspace(0, 1, 1001)
    reference = skcolor.rgb2lab(np.repeat(gray[:, None, None], 3, axis=2))[:, 0, 0]
    ours = color.gray_to_lightness(torch.from_numpy(gray).float()).double().numpy()
    assert np.abs(ours - reference).max() < 0.01
    back = color.lightness_to_gray(torch.from_numpy(ours).float()).double().numpy()
    assert np.abs(back - gray).max() < 1e-5


def test_neutral_axis_is_exactly_gray():
    lightness = torch.linspace(0, 100, 501)[None, :, None].expand(1, 501, 4)
    lab = torch.cat((lightness, torch.zeros(2, 501, 4)))
    rgb = color.lab_to_rgb(lab)
    spread = rgb.max(0).values - rgb.min(0).values
    assert spread.max() < 1e-5


def _random_lab(n: int, chroma: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack(
        (
            torch.rand(n, n, generator=gen) * 100,
            torch.randn(n, n, generator=gen) * chroma,
            torch.randn(n, n, generator=gen) * chroma,
        )
    )


def test_gamut_map_keeps_lightness_and_hue_and_lands_in_gamut():
    lab = _random_lab(96, chroma=70)
    linear = color.lab_to_linear_rgb(lab)
    outside = ((linear < 0) | (linear > 1)).any(0)
    assert outside.float().mean() > 0.3  # the test data really needs mapping
    mapped = color.gamut_map_chroma(lab)
    # L untouched (exactly), in gamut, hue kept, chroma only reduced
    assert torch.equal(mapped[0], lab[0])
    linear_mapped = color.lab_to_linear_rgb(mapped)
    assert linear_mapped.min() > -1e-5 and linear_mapped.max() < 1 + 1e-5
    cross = lab[1] * mapped[2] - lab[2] * mapped[1]
    assert cross.abs().max() < 1e-3
    assert ((lab[1] * mapped[1] + lab[2] * mapped[2]) >= 0).all()
    scale = mapped[1:].norm(dim=0) / lab[1:].norm(dim=0).clamp_min(1e-6)
    assert scale.max() <= 1.0 + 1e-6
    # in-gamut colours are returned bit for bit
    assert torch.equal(mapped[:, ~outside], lab[:, ~outside])
    # the reduction is (nearly) minimal: 1 % more chroma than kept would leave the gamut
    further = torch.cat((lab[:1], lab[1:] * (scale * 1.01).clamp(max=1.0)))
    lin_further = color.lab_to_linear_rgb(further)
    leaves = ((lin_further < -1e-6) | (lin_further > 1 + 1e-6)).any(0)
    assert leaves[outside].float().mean() > 0.99
    # lightness of the final sRGB equals the requested L before any quantisation
    rgb = color.lab_to_rgb(lab)
    assert (color.rgb_to_lightness(rgb)[0] - lab[0]).abs().max() < 2e-3


def test_gamut_map_beats_naive_clipping_on_lightness():
    lab = _random_lab(64, chroma=80, seed=3)
    mapped_l = color.rgb_to_lightness(color.lab_to_rgb(lab, gamut="chroma"))[0]
    clipped_l = color.rgb_to_lightness(color.lab_to_rgb(lab, gamut="clip"))[0]
    assert (mapped_l - lab[0]).abs().mean() < 1e-3
    assert (clipped_l - lab[0]).abs().mean() > 1.0  # what per-channel clipping does to L


def test_lightness_survives_gamut_mapping_and_8bit_on_natural_images(shared_dir):
    kodak = sorted((shared_dir / "data" / "val" / "kodak24").glob("*.png"))[:4]
    assert kodak, "Kodak24 images are missing"
    for path in kodak:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((256, 256))
            rgb = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255
        lab = color.rgb_to_lab(rgb)
        boosted = torch.cat((lab[:1], lab[1:] * 2.5))  # far more colourful than sRGB allows
        lin = color.lab_to_linear_rgb(boosted)
        assert ((lin < 0) | (lin > 1)).any(0).float().mean() > 0.05
        out = color.lab_to_rgb(boosted)
        assert (color.rgb_to_lightness(out)[0] - lab[0]).abs().max() < 2e-3  # before quantising
        out8 = (out * 255).round() / 255
        assert (color.rgb_to_lightness(out8)[0] - lab[0]).abs().mean() < 0.5


def test_unknown_gamut_mode_is_rejected():
    with pytest.raises(ValueError, match="gamut"):
        color.lab_to_rgb(torch.zeros(3, 2, 2), gamut="squash")  # type: ignore[arg-type]


def test_uint8_table_matches_exact_rounding():
    linear = torch.rand(1_000_000, generator=torch.Generator().manual_seed(5)) ** 2.2
    exact = (color.linear_to_srgb(linear) * 255).round().to(torch.int16)
    table = color.linear_to_srgb_uint8(linear).to(torch.int16)
    assert (table - exact).abs().max() <= 1
    assert (table != exact).float().mean() < 3e-3  # only values within 0.004 of x.5
    # every level's own linear value maps back to that level
    levels = torch.arange(256, dtype=torch.float32) / 255
    assert torch.equal(color.linear_to_srgb_uint8(color.srgb_to_linear(levels)).long(),
                       torch.arange(256))  # fmt: skip


def test_lightness_and_ab_apart_convert_as_one_lab_tensor():
    from chromatize.color import lab_to_linear_rgb, lightness_ab_to_linear_rgb

    gen = torch.Generator().manual_seed(3)
    lightness = torch.rand(40, 50, generator=gen) * 100
    ab = (torch.rand(2, 40, 50, generator=gen) - 0.5) * 260  # many colours outside sRGB
    joined = lab_to_linear_rgb(torch.cat((lightness[None], ab)), gamut="chroma")
    assert torch.equal(lightness_ab_to_linear_rgb(lightness, ab), joined)
    with pytest.raises(ValueError, match=r"L \(H, W\) and ab \(2, H, W\)"):
        lightness_ab_to_linear_rgb(lightness, ab[:, :10])
