"""Strip-wise bilinear resizing and guided (edge-aware) upsampling of ab."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chromatize.upsample import ABUpsampler, UpsampleMethod, resize_bilinear_rows


def upsample_ab(ab_low: torch.Tensor, lightness_full: torch.Tensor,
                method: UpsampleMethod = "guided") -> torch.Tensor:
    """Whole image: ab (2, h, w) -> (2, H, W) at the size of ``lightness_full``."""
    return ABUpsampler(ab_low, lightness_full, method).rows(slice(None), lightness_full)


@pytest.mark.parametrize(
    ("src_hw", "out_hw"), [((17, 23), (68, 92)), ((17, 23), (100, 31)), ((17, 23), (5, 7)),
                           ((17, 23), (17, 23)), ((1, 1), (9, 4)), ((6, 40), (1, 1))],
)  # fmt: skip
def test_resize_matches_torch_interpolate_for_whole_image_and_strips(src_hw, out_hw):
    src = torch.randn(2, *src_hw, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(src[None], out_hw, mode="bilinear", align_corners=False)[0]
    assert torch.allclose(resize_bilinear_rows(src, *out_hw), expected, atol=1e-5)
    h = out_hw[0]
    strips = [resize_bilinear_rows(src, *out_hw, slice(y, min(h, y + 3))) for y in range(0, h, 3)]
    assert torch.allclose(torch.cat(strips, dim=1), expected, atol=1e-5)


def _edge_scene(h: int = 384, w: int = 512, noise: float = 2.0):
    """A slanted sharp L edge, ground-truth ab that changes exactly there, and the blurry
    low-resolution ab a model would predict (1/16 size, then a 3x3 blur)."""
    gen = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    boundary = 200.0 + 0.3 * y
    edge = (x > boundary).float()
    lightness = 30 + 40 * edge + noise * torch.randn(h, w, generator=gen)
    ab = torch.stack((-20 + 60 * edge, 10 - 40 * edge))
    low = F.interpolate(ab[None], (h // 16, w // 16), mode="area")
    low = F.avg_pool2d(low, 3, stride=1, padding=1, count_include_pad=False)[0]
    near = (x - boundary).abs() < 40
    return lightness, ab, low, near


def test_guided_upsampling_snaps_colour_edges_to_lightness_edges():
    lightness, truth, low, near = _edge_scene()
    bilinear = upsample_ab(low, lightness, "bilinear")
    guided = upsample_ab(low, lightness, "guided")
    err_bilinear = (bilinear - truth).abs()[:, near].mean()
    err_guided = (guided - truth).abs()[:, near].mean()
    # measured when written: 5.8 vs 8.3 ab units within 40 px of the edge
    assert err_guided < 0.75 * err_bilinear
    # away from the edge the L noise must not leak much into the colour
    assert (guided - truth).abs()[:, ~near].mean() < 1.0
    # sharper: the share of the colour change that happens within 2 px of the true edge
    rows = torch.arange(0, lightness.shape[0], 16)
    cols = (200.0 + 0.3 * rows).ceil().long()  # first pixel right of the edge

    def share_at_edge(a: torch.Tensor) -> float:
        step = a[rows, cols + 1] - a[rows, cols - 3]
        total = a[rows, -1] - a[rows, 0]
        return float((step / total).mean())

    sharp_guided, sharp_bilinear = share_at_edge(guided[0]), share_at_edge(bilinear[0])
    assert sharp_guided > 2 * sharp_bilinear, (sharp_guided, sharp_bilinear)  # was 0.66 vs 0.08


def test_constant_colour_stays_constant():
    lightness, _, _, _ = _edge_scene(96, 128)
    low = torch.tensor([12.5, -30.0])[:, None, None].expand(2, 6, 8)
    for method in ("bilinear", "guided"):
        out = upsample_ab(low, lightness, method)
        assert out.shape == (2, 96, 128)
        assert torch.allclose(out, low[:, :1, :1].expand_as(out), atol=1e-3)


def test_strips_equal_whole_image():
    lightness, _, low, _ = _edge_scene(200, 96)
    for method in ("bilinear", "guided"):
        up = ABUpsampler(low, lightness, method)
        whole = up.rows(slice(None), lightness)
        parts = [
            up.rows(slice(y, min(200, y + 37)), lightness[y : y + 37]) for y in range(0, 200, 37)
        ]
        assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-4)


def test_degenerate_sizes_work():
    low = torch.randn(2, 4, 4)
    assert upsample_ab(low, torch.full((1, 1), 50.0), "guided").shape == (2, 1, 1)
    assert upsample_ab(low, torch.rand(1, 300) * 100, "guided").shape == (2, 1, 300)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown upsample method"):
        ABUpsampler(torch.zeros(2, 4, 4), torch.zeros(8, 8), "nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(2, h, w\)"):
        ABUpsampler(torch.zeros(3, 4, 4), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="lightness"):
        ABUpsampler(torch.zeros(2, 4, 4), torch.zeros(8, 8)).rows(slice(0, 2))


@pytest.mark.parametrize("radius", [1, 3, 12, 40])
@pytest.mark.parametrize("shape", [(2, 48, 72), (1, 5, 9), (3, 1, 30)])
def test_box_mean_equals_average_pooling_over_truncated_windows(radius, shape):
    from chromatize.upsample import _box_mean

    x = torch.rand(*shape, generator=torch.Generator().manual_seed(radius)) * 3 - 1
    k = 2 * radius + 1
    # the same windows, spelled as avg_pool2d over zero padding that is not counted
    pad = F.pad(x[None], (radius, radius, radius, radius))
    ones = F.pad(torch.ones(1, 1, *shape[1:]), (radius, radius, radius, radius))
    expected = (F.avg_pool2d(pad, k, stride=1, divisor_override=1)
                / F.avg_pool2d(ones, k, stride=1, divisor_override=1))[0]
    assert torch.allclose(_box_mean(x, radius), expected, atol=2e-6)


def test_guide_statistics_given_or_computed_give_the_same_colour():
    from chromatize.upsample import guide_key, guide_statistics

    lightness, _, low, _ = _edge_scene(200, 96)
    key = guide_key(tuple(low.shape[-2:]), tuple(lightness.shape))
    guide = guide_statistics(lightness, key)
    for ab in (low, low * -0.5 + 3):  # the guide's statistics serve any colour of this image
        fresh = ABUpsampler(ab, lightness).rows(slice(None), lightness)
        reused = ABUpsampler(ab, lightness, guide=guide).rows(slice(None), lightness)
        assert torch.equal(fresh, reused)
    with pytest.raises(ValueError, match="guide statistics for"):
        ABUpsampler(low[:, :5], lightness, guide=guide)
