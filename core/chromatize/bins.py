"""The 313 quantized ab bins of the classification head, and everything that maps between them
and continuous ab colour: decoding model output (annealed mean, mean, mode), soft-encoding ground
truth for training, empirical priors and class-rebalancing weights.

Bins are the in-gamut cells of a 10-unit ab grid (Zhang, Isola & Efros, ECCV 2016), ordered by a
then b, exactly as in the official release (its ``pts_in_hull.npy``), so that logits of the official
ECCV16 network index the same colours as ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from chromatize.options import DECODE_CHOICES, DecodeMethod

#: For each a in -90, -80, ..., 100: the inclusive range of b (step 10) of the in-gamut cells.
_B_RANGES: dict[int, tuple[int, int]] = {
    -90: (50, 90), -80: (20, 90), -70: (0, 90), -60: (-20, 90), -50: (-30, 100),
    -40: (-40, 100), -30: (-50, 100), -20: (-50, 100), -10: (-60, 100), 0: (-70, 100),
    10: (-80, 90), 20: (-80, 90), 30: (-90, 90), 40: (-100, 90), 50: (-100, 80),
    60: (-110, 80), 70: (-110, 80), 80: (-110, 70), 90: (-110, 70), 100: (-90, 0),
}  # fmt: skip

NUM_BINS = 313
DEFAULT_TEMPERATURE = 0.38
SOFT_ENCODE_NEIGHBOURS = 5
SOFT_ENCODE_SIGMA = 5.0
REBALANCE_LAMBDA = 0.5
PRIOR_SMOOTHING_SIGMA = 5.0
#: Share of a uniform prior in :func:`evidence_log_prior` (bounds the rarest bins' lift).
EVIDENCE_PRIOR_FLOOR = 0.01

DECODE_METHODS: tuple[str, ...] = DECODE_CHOICES


def _build_bins() -> torch.Tensor:
    centres = [
        (a, b) for a in sorted(_B_RANGES) for b in range(_B_RANGES[a][0], _B_RANGES[a][1] + 1, 10)
    ]
    return torch.tensor(centres, dtype=torch.float32)


#: (313, 2) float32 tensor of bin centres (a, b), ordered by a then b.
AB_BINS: torch.Tensor = _build_bins()
assert AB_BINS.shape == (NUM_BINS, 2), AB_BINS.shape


def bins_on(device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The bin centres on ``device`` (cached per device/dtype)."""
    key = (str(device), dtype)
    cached = _BIN_CACHE.get(key)
    if cached is None:
        cached = AB_BINS.to(device=device, dtype=dtype)
        _BIN_CACHE[key] = cached
    return cached


_BIN_CACHE: dict[tuple[str, torch.dtype], torch.Tensor] = {}


# --------------------------------------------------------------------------------------------
# Decoding: logits (N, 313, H, W) -> ab (N, 2, H, W)
# --------------------------------------------------------------------------------------------


def probabilities(
    logits: torch.Tensor,
    temperature: float = 1.0,
    logit_scale: float = 1.0,
    log_prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bin distribution, sharpened/flattened by ``temperature``.

    ``logit_scale`` converts a model's raw output to log-probabilities up to a constant (1 for our
    own models; 1/2.606 for the official ECCV16 weights, whose last layer folds the paper's
    1/T = 2.606 rescaling). Without ``log_prior`` the result is softmax(logit_scale * logits /
    temperature), the paper's annealing.

    With ``log_prior`` (313,), the log of the colour prior the model's distribution was trained
    against (:func:`evidence_log_prior`), the temperature anneals the model's *evidence* and
    leaves the prior alone: log q = (logit_scale * logits - (1 - T) * log_prior) / T, i.e.
    q ∝ (p / prior) ** (1 / T) * prior. T = 1 is the model's own distribution either way. Below 1
    the paper's annealing also sharpens the prior, which favours the common pale colours and
    cancels the vividness a low T promises when the distribution's mode is itself pale;
    annealing the evidence moves toward the colour that is most likely *for its rarity*.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = logits.float() * logit_scale
    if log_prior is not None and temperature != 1.0:
        shape = (1, NUM_BINS) + (1,) * (logits.ndim - 2)
        scaled = scaled - (1.0 - temperature) * log_prior.to(scaled).view(shape)
    return torch.softmax(scaled / temperature, dim=1)


def evidence_log_prior(
    prior: torch.Tensor, lam: float, max_weight: float | None = None
) -> torch.Tensor:
    """The log prior (313,) float32 a model trained with class rebalancing (``lam``,
    ``max_weight``: :func:`rebalance_weights`) on bins of empirical prior ``prior`` (counts or
    probabilities) has learned its distribution against: the smoothed prior times the
    rebalancing weights, normalised, with :data:`EVIDENCE_PRIOR_FLOOR` of a uniform prior mixed
    in: colours the training photos (almost) never held have no evidence worth amplifying, and
    the floor bounds how far a low temperature can lift them. Its log is what
    :func:`probabilities` anneals relative to."""
    smoothed = smooth_prior(prior)
    effective = smoothed * rebalance_weights(prior, lam, max_weight=max_weight).double()
    effective = (1 - EVIDENCE_PRIOR_FLOOR) * effective / effective.sum()
    return (effective + EVIDENCE_PRIOR_FLOOR / NUM_BINS).log().float()


def decode(
    logits: torch.Tensor,
    method: DecodeMethod = "annealed_mean",
    temperature: float = DEFAULT_TEMPERATURE,
    logit_scale: float = 1.0,
    log_prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Turn per-pixel bin logits (N, 313, H, W) into ab values (N, 2, H, W).

    - ``annealed_mean``: mean of the distribution re-tempered with ``temperature`` (paper: 0.38;
      relative to ``log_prior`` when given, see :func:`probabilities`). T=1 is the plain mean;
      T -> 0 approaches the mode (of the evidence, with ``log_prior``).
    - ``mean``: expectation of the model's distribution (desaturated, but smooth).
    - ``mode``: centre of the most likely bin (vivid, but blotchy).
    """
    if logits.ndim != 4 or logits.shape[1] != NUM_BINS:
        raise ValueError(
            f"expected logits of shape (N, {NUM_BINS}, H, W), got {tuple(logits.shape)}"
        )
    bins = bins_on(logits.device)
    if method == "mode":
        idx = logits.argmax(dim=1)  # (N, H, W)
        return bins[idx].permute(0, 3, 1, 2).contiguous()
    if method == "mean":
        temperature = 1.0
    elif method != "annealed_mean":
        raise ValueError(
            f"unknown decode method {method!r}; choose one of {', '.join(DECODE_METHODS)}"
        )
    p = probabilities(logits, temperature, logit_scale, log_prior)
    return torch.einsum("nqhw,qc->nchw", p, bins)


def apply_saturation(ab: torch.Tensor, saturation: float) -> torch.Tensor:
    """Blend predicted ab towards gray: 0 = grayscale, 1 = model output, >1 = more vivid."""
    if saturation < 0:
        raise ValueError(f"saturation must be >= 0, got {saturation}")
    return ab if saturation == 1.0 else ab * saturation


# --------------------------------------------------------------------------------------------
# Encoding ground truth: ab (N, 2, H, W) -> soft targets over the 313 bins
# --------------------------------------------------------------------------------------------


def nearest_bins(ab: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (N, k, H, W) of the ``k`` nearest bins to each ab pixel, and squared distances."""
    n, c, h, w = ab.shape
    if c != 2:
        raise ValueError(f"expected ab of shape (N, 2, H, W), got {tuple(ab.shape)}")
    pts = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
    bins = bins_on(ab.device)
    d2 = (
        pts.square().sum(1, keepdim=True) - 2 * pts @ bins.T + bins.square().sum(1)[None]
    ).clamp_min(0)
    dist, idx = torch.topk(d2, k, dim=1, largest=False)
    idx = idx.reshape(n, h, w, k).permute(0, 3, 1, 2).contiguous()
    dist = dist.reshape(n, h, w, k).permute(0, 3, 1, 2).contiguous()
    return idx, dist


def soft_encode_sparse(
    ab: torch.Tensor, k: int = SOFT_ENCODE_NEIGHBOURS, sigma: float = SOFT_ENCODE_SIGMA
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-encode ab ground truth: the ``k`` nearest bins with Gaussian weights (sum to 1).

    Returns (indices, weights), each (N, k, H, W); indices[:, 0] is the nearest bin.
    """
    idx, d2 = nearest_bins(ab, k)
    weights = torch.exp(-d2 / (2 * sigma**2))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return idx, weights


def soft_cross_entropy(
    logits: torch.Tensor,
    target_idx: torch.Tensor,
    target_weights: torch.Tensor,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean multinomial cross-entropy of ``logits`` (N, 313, H, W) against sparse soft targets.

    With ``class_weights`` (313,), each pixel's loss is scaled by the weight of its nearest bin
    (``target_idx[:, 0]``), as in the paper's class rebalancing.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    per_pixel = -(torch.gather(logp, 1, target_idx) * target_weights).sum(dim=1)  # (N, H, W)
    if class_weights is not None:
        per_pixel = per_pixel * class_weights.to(per_pixel.device)[target_idx[:, 0]]
    return per_pixel.mean()


# --------------------------------------------------------------------------------------------
# Priors and class rebalancing
# --------------------------------------------------------------------------------------------


def bin_histogram(ab: torch.Tensor) -> torch.Tensor:
    """Counts (313,) float64 of the nearest bin of every ab pixel in ``ab`` (N, 2, H, W)."""
    idx, _ = nearest_bins(ab, 1)
    return torch.bincount(idx.flatten().cpu(), minlength=NUM_BINS).double()


def smooth_prior(prior: torch.Tensor, sigma: float = PRIOR_SMOOTHING_SIGMA) -> torch.Tensor:
    """Smooth a bin distribution with a Gaussian kernel (``sigma`` in ab units) over the bins."""
    p = prior.double() / prior.sum()
    bins = AB_BINS.double()
    kernel = torch.exp(-torch.cdist(bins, bins).square() / (2 * sigma**2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # each bin spreads its mass, total preserved
    smoothed = kernel.T @ p
    return smoothed / smoothed.sum()


def rebalance_weights(
    prior: torch.Tensor,
    lam: float = REBALANCE_LAMBDA,
    sigma: float = PRIOR_SMOOTHING_SIGMA,
    max_weight: float | None = None,
) -> torch.Tensor:
    """Class-rebalancing weights (313,) float32 from an empirical bin prior (counts or probs).

    w ∝ ((1 - lam) * smooth(prior) + lam / 313) ** -1, normalised so that E_smooth(prior)[w] = 1
    (Zhang et al. 2016, eq. 4). ``lam=1`` gives uniform weights; ``max_weight`` optionally caps
    the rarest bins (applied after normalisation).
    """
    if prior.shape != (NUM_BINS,):
        raise ValueError(f"prior must have shape ({NUM_BINS},), got {tuple(prior.shape)}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    p = smooth_prior(prior, sigma)
    w = 1.0 / ((1 - lam) * p + lam / NUM_BINS)
    w = w / (p * w).sum()
    if max_weight is not None:
        w = w.clamp(max=max_weight)
    return w.float()
