"""Scoring a model on the held-out scene photos the way users see its colours.

Every training step that chooses something (``train``: the checkpoint kept as ``best.pt``;
``averaging``: the score of an average; ``logit_adjustment``: the alpha; ``export``: the default
temperature) scores through :func:`evaluate`: each held-out photo is turned into gray with its own
CIE L (float, no rounding), colorized with the public pipeline
(:class:`chromatize.pipeline.Colorizer`: render at about ``default_input_size`` squared pixels with
the aspect ratio kept, decode, guided-filter upsampling, gamut mapping) at every decoding
temperature, and compared with the original at full resolution with the metrics of
:mod:`chromatize.evaluation`, as ``chromatize eval`` does. The network runs once per photo: the
pipeline's calls at the other temperatures reuse its logits (:class:`LogitRecorder`).

The held-out cross-entropy (``loss``, ``weighted_loss``) is measured on the same logits, against
soft targets of the true ab resized to the render as the pipeline resizes L.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from chromatize import bins
from chromatize.bins import rebalance_weights, soft_cross_entropy
from chromatize.color import lightness_to_gray, rgb_to_lab
from chromatize.evaluation import MetricTotals, colourfulness, true_classes_chunked
from chromatize.pipeline import Colorizer
from chromatize.training.checkpoints import model_of
from chromatize.training.data import TARGET_STRIDE, Split, load_rgb, rgb_to_lab_tensor, soft_targets

#: Decoding temperatures every evaluation scores.
TEMPERATURES = (0.3, 0.38, 0.46, 0.55, 0.65, 0.8, 1.0)
#: Checkpoints are chosen by the quality targets of the model's issue, measured on the held-out
#: scene photos at this temperature: class-rebalanced AuC gain over gray, as long as PSNR stays
#: within MAX_PSNR_DROP dB of gray and colourfulness at MIN_COLOURFULNESS_RATIO of the originals'.
SELECT_TEMPERATURE = 0.38
MAX_PSNR_DROP = 1.5
MIN_COLOURFULNESS_RATIO = 0.5
#: The default temperature's harm (% of pixels >= 10 ab worse than gray) may exceed the least
#: harm among the temperatures by this many points (see :func:`default_temperature_of`).
DEFAULT_HARM_SLACK = 0.5
#: Attributes of the model contract (``chromatize.models``) a wrapper passes on from its model.
CONTRACT_ATTRIBUTES = ("stride", "logit_scale", "default_input_size", "default_temperature",
                       "accepts_hints", "name", "decode_log_prior")


@dataclass
class HeldOutPhoto:
    """One held-out photo at its own size: the original, the gray input the pipeline gets, and
    the truth the metrics compare with."""

    name: str
    rgb: np.ndarray  # (H, W, 3) uint8 sRGB original
    gray: np.ndarray  # (H, W) float32 sRGB gray with the original's lightness
    ab: torch.Tensor  # (2, H, W) float32 true ab
    classes: torch.Tensor  # (H*W,) int16 nearest bin of every true ab pixel (rebalanced AuC)
    _targets: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False)

    def targets(self, logits_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft targets (indices, weights), each (1, 5, h, w), for logits of size (h, w): the true
        ab resized to the render (4h, 4w) as the pipeline resizes L, then 4x4-averaged."""
        if logits_size not in self._targets:
            h, w = logits_size[0] * TARGET_STRIDE, logits_size[1] * TARGET_STRIDE
            shrink = self.ab.shape[-2] > h or self.ab.shape[-1] > w
            ab = F.interpolate(self.ab[None], size=(h, w), mode="bilinear", align_corners=False,
                               antialias=shrink)
            idx, weights, _ = soft_targets(ab)
            self._targets[logits_size] = (idx.long(), weights.float())
        return self._targets[logits_size]


def load_held_out(files: Sequence[Path]) -> list[HeldOutPhoto]:
    """The photos ``files`` as :class:`HeldOutPhoto` (at full size, not resized)."""
    out = []
    for f in files:
        rgb = np.asarray(load_rgb(f))
        lab = rgb_to_lab_tensor(rgb)
        gray = lightness_to_gray(lab[0]).clamp(0.0, 1.0).numpy().astype(np.float32)
        ab = lab[1:].contiguous()
        out.append(HeldOutPhoto(f.name, rgb, gray, ab, true_classes_chunked(ab).to(torch.int16)))
    return out


def held_out_of(
    checkpoint: dict[str, Any], data: Path, limit: int | None = None
) -> tuple[list[HeldOutPhoto], torch.Tensor]:
    """The held-out scene photos of ``data`` (the first ``limit``) under the split a checkpoint
    was trained with, and the cross-entropy's class weights it was trained with: what
    :func:`evaluate` needs to score it after the fact."""
    args = checkpoint["args"]
    weights = rebalance_weights(checkpoint["prior"], float(args["rebalance_lambda"]),
                                max_weight=float(args["max_weight"]))
    return load_held_out(Split.of_run(args).validation_sample(data, limit)), weights


class ModelWrapper(nn.Module):
    """Base of modules that stand in for ``model`` in the pipeline: they carry its contract
    attributes (stride, logit scale, render size, ...) and hold it as a submodule, so moving or
    switching the wrapper to eval mode does the same to the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for name in CONTRACT_ATTRIBUTES:
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))


class LogitRecorder(ModelWrapper):
    """Runs the model once per distinct input and keeps its logits (``logits``): the pipeline's
    calls for the same photo at other temperatures get them again without a second forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.input: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        if hints is not None:
            return self.model(lightness, hints)
        seen = self.input
        if seen is None or seen.shape != lightness.shape or not torch.equal(seen, lightness):
            self.input = lightness.clone()
            self.logits = self.model(lightness)
        assert self.logits is not None
        return self.logits


def selection_score(
    model: dict[str, float], gray: dict[str, float], truth_colourfulness: float
) -> float:
    """Class-rebalanced AuC gain over gray (points), less 10 points per dB of PSNR lost beyond
    :data:`MAX_PSNR_DROP` and 1 point per 1 % of the originals' colourfulness missing below
    :data:`MIN_COLOURFULNESS_RATIO`: the model issue's targets as one number to maximise."""
    gain = model["auc_rebalanced"] - gray["auc_rebalanced"]
    psnr_excess = max(0.0, gray["psnr"] - model["psnr"] - MAX_PSNR_DROP)
    colour_ratio = model["colourfulness"] / max(truth_colourfulness, 1e-6)
    colour_short = max(0.0, MIN_COLOURFULNESS_RATIO - colour_ratio)
    return gain - 10.0 * psnr_excess - 100.0 * colour_short


def default_temperature_of(per_t: dict[str, dict[str, float]], colourfulness_floor: float
                           ) -> float:
    """The temperature to ship as the default, from each temperature's held-out metrics
    (``per_t``, keys the temperatures as strings): among those keeping ``colourfulness_floor``,
    the ones whose harm is within :data:`DEFAULT_HARM_SLACK` points of the least harm (the
    default is what users keep or throw away: it must not paint confident wrong colours that a
    milder setting would avoid), and of those the highest AuC raw + AuC rebalanced."""
    ok = [t for t in per_t if per_t[t]["colourfulness"] >= colourfulness_floor] or list(per_t)
    least = min(per_t[t].get("harm", 0.0) for t in ok)
    safe = [t for t in ok if per_t[t].get("harm", 0.0) <= least + DEFAULT_HARM_SLACK]
    return float(max(safe, key=lambda t: per_t[t]["auc_raw"] + per_t[t]["auc_rebalanced"]))


@dataclass
class _Tally:
    """What :func:`evaluate` accumulates over the photos."""

    temperatures: tuple[float, ...]
    per_t: dict[float, MetricTotals] = field(default_factory=dict)
    gray: MetricTotals = field(default_factory=MetricTotals)
    truth_colourfulness: list[float] = field(default_factory=list)
    loss: float = 0.0
    weighted_loss: float = 0.0
    photos: int = 0

    def __post_init__(self) -> None:
        self.per_t = {t: MetricTotals() for t in self.temperatures}


def _score_photo(
    colorizer: Colorizer,
    recorder: LogitRecorder,
    photo: HeldOutPhoto,
    class_weights: torch.Tensor,
    tally: _Tally,
    render_size: int | None,
) -> None:
    """Colorize one photo at every temperature and add its metrics and losses to ``tally``."""
    rgb = photo.rgb.astype(np.float32) / 255.0
    classes = photo.classes.long()
    gray3 = np.repeat(photo.gray[..., None], 3, axis=2)
    tally.gray.add(gray3, torch.zeros_like(photo.ab), rgb, photo.ab, classes)
    tally.truth_colourfulness.append(colourfulness(rgb))
    for t in tally.temperatures:
        out = colorizer.colorize(photo.gray, temperature=t, render_size=render_size)
        out = np.asarray(out, np.float32)[..., :3]
        pred_ab = rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1))[1:]
        tally.per_t[t].add(out, pred_ab, rgb, photo.ab, classes)
    assert recorder.logits is not None
    logits = recorder.logits.float().cpu()
    idx, w = photo.targets((logits.shape[-2], logits.shape[-1]))
    tally.loss += float(soft_cross_entropy(logits, idx, w))
    tally.weighted_loss += float(soft_cross_entropy(logits, idx, w, class_weights))
    tally.photos += 1


def _summary(tally: _Tally) -> dict[str, Any]:
    """:func:`evaluate`'s result from its tally (see there)."""
    n = max(tally.photos, 1)
    truth_colour = (float(np.mean(tally.truth_colourfulness))
                    if tally.truth_colourfulness else 0.0)
    per_t = {str(t): m.summary() for t, m in tally.per_t.items()}
    floor = MIN_COLOURFULNESS_RATIO * truth_colour
    best_t = default_temperature_of(per_t, floor)
    gray_summary = tally.gray.summary()
    selected = per_t.get(str(SELECT_TEMPERATURE), per_t[str(best_t)])
    return {
        "loss": tally.loss / n,
        "weighted_loss": tally.weighted_loss / n,
        "gray": gray_summary,
        "truth_colourfulness": truth_colour,
        "per_temperature": per_t,
        "temperature": best_t,
        "score": selection_score(selected, gray_summary, truth_colour),
    }


def evaluate(
    model: nn.Module,
    photos: Sequence[HeldOutPhoto],
    class_weights: torch.Tensor,
    temperatures: Sequence[float] = TEMPERATURES,
    *,
    render_size: int | None = None,
    device: str | torch.device = "auto",
) -> dict[str, Any]:
    """Held-out loss and metrics of ``model`` (any module following the model contract), colorizing
    every photo with :class:`~chromatize.pipeline.Colorizer` at each of ``temperatures``.

    ``temperature`` (the default decoding temperature this model would ship with) is
    :func:`default_temperature_of` the temperatures' metrics with a floor of half the originals'
    colourfulness; ``score`` is :func:`selection_score` at :data:`SELECT_TEMPERATURE` (at that
    ``temperature`` when :data:`SELECT_TEMPERATURE` is not among ``temperatures``).
    ``render_size`` and ``device`` go to the pipeline ("auto": where the model is; the model is
    moved otherwise). Runs in float32 on the CPU, as inference does; the model's train/eval mode
    is restored afterwards."""
    temperatures = tuple(temperatures)
    if not temperatures:
        raise ValueError("evaluate needs at least one temperature")
    was_training = model.training
    recorder = LogitRecorder(model)
    colorizer = Colorizer(recorder, device=device)
    tally = _Tally(temperatures)
    try:
        for photo in photos:
            _score_photo(colorizer, recorder, photo, class_weights, tally, render_size)
    finally:
        model.train(was_training)
    return _summary(tally)


def score_checkpoint(checkpoint: dict[str, Any], data: Path) -> dict[str, Any]:
    """:func:`evaluate` of a checkpoint on all held-out scene photos of its training split in
    ``data``, over :data:`TEMPERATURES` (its ``temperature`` is the default to ship)."""
    images, weights = held_out_of(checkpoint, data)
    return evaluate(model_of(checkpoint), images, weights, TEMPERATURES)


#: Hint counts the training runs of a hint model score (besides 0), with 5x5-pixel patches.
HINT_COUNTS = (1, 10, 100)


def hint_psnr(
    model: nn.Module,
    photos: Sequence[HeldOutPhoto],
    counts: Sequence[int] = (0, *HINT_COUNTS),
    temperature: float = SELECT_TEMPERATURE,
    seed: int = 0,
) -> dict[str, float]:
    """Mean PSNR (dB) of ``model`` on ``photos`` given N seeded 5x5 hint patches with the true
    mean colour (:func:`chromatize.hints.sample_hints`, the paper's protocol) for each N in
    ``counts``, through the public pipeline's hint path; keys are the counts as strings."""
    from chromatize.evaluation import psnr
    from chromatize.hints import sample_hints

    was_training = model.training
    colorizer = Colorizer(model)
    totals = {str(n): 0.0 for n in counts}
    try:
        for i, photo in enumerate(photos):
            truth = photo.rgb.astype(np.float32) / 255.0
            for n in counts:
                hints = sample_hints(photo.rgb, n, seed + i) if n else None
                out = colorizer.colorize(photo.gray, temperature=temperature, hints=hints)
                totals[str(n)] += psnr(np.asarray(out, np.float32)[..., :3], truth)
    finally:
        model.train(was_training)
    return {k: v / max(len(photos), 1) for k, v in totals.items()}


def hint_response(model: nn.Module, photos: Sequence[HeldOutPhoto], count: int = 10,
                  temperature: float = SELECT_TEMPERATURE, seed: int = 0) -> float:
    """Mean |Δab| (ab units) of the *network's* prediction (at its own resolution, before
    the pipeline pins hint pixels, and without the pipeline's hint propagation) that ``count``
    seeded hints cause on ``photos``.

    :func:`hint_psnr` goes through the public hint path, which sets the hinted pixels to the hint
    colour whatever the network does, so its PSNR rises with hints even when the network ignores
    them (a hint encoder whose ReLUs all died, say). This says whether the network responds:
    exactly 0 for a fresh hint encoder (its projections start at zero)."""
    from chromatize.hints import sample_hints

    was_training = model.training
    colorizer = Colorizer(model)
    options = colorizer.call_options(temperature=temperature)
    total = 0.0
    try:
        for i, photo in enumerate(photos):
            prepared = colorizer.prepare(photo.gray, options)
            hints = sample_hints(photo.rgb, count, seed + i)
            guided = colorizer.predict(prepared, options, hints=hints)
            automatic = colorizer.predict(prepared, options)
            # decoded from the logits again: the prediction's ab holds the propagation's pull
            own = bins.decode(guided.logits[None], options.decode, colorizer.temperature(options),
                              guided.logit_scale, guided.log_prior)[0]
            total += float((own - automatic.ab).square().sum(0).sqrt().mean())
    finally:
        model.train(was_training)
    return total / max(len(photos), 1)
