"""Decoding the 313-bin distribution: the temperature anneals the evidence, not the prior."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import chromatize
from chromatize import bins
from chromatize.bins import AB_BINS, NUM_BINS, evidence_log_prior, probabilities
from chromatize.training.scoring import DEFAULT_HARM_SLACK, default_temperature_of

SHIPPED = Path(chromatize.__file__).parent / "shipped" / "mobile.safetensors"


def _chroma_of(q: torch.Tensor) -> float:
    ab = torch.einsum("nq...,qc->nc...", q, AB_BINS)
    return float(ab.norm(dim=1).mean())


def test_temperature_one_is_the_models_distribution_with_or_without_a_prior() -> None:
    logits = torch.randn(2, NUM_BINS, 3, 4)
    log_prior = torch.randn(NUM_BINS)
    assert torch.allclose(probabilities(logits, 1.0, 1.0, log_prior), torch.softmax(logits, 1))
    # a flat (all-zero) prior is the paper's annealing at every temperature
    for t in (0.2, 0.38, 2.0):
        assert torch.allclose(probabilities(logits, t, 1.0, torch.zeros(NUM_BINS)),
                              torch.softmax(logits / t, 1), atol=1e-6)


def test_low_temperature_picks_the_strongest_evidence_not_the_commonest_colour() -> None:
    # a pale bin common in the prior and a vivid rare one; the evidence favours the vivid one,
    # but the prior makes the pale one the mode of the model's distribution
    pale = int(AB_BINS.norm(dim=1).argmin())
    vivid = int(AB_BINS.norm(dim=1).argmax())
    log_prior = torch.full((NUM_BINS,), -30.0)
    log_prior[pale], log_prior[vivid] = math.log(0.9), math.log(0.1)
    evidence = torch.zeros(NUM_BINS)
    evidence[vivid] = math.log(4.0)  # 4x more likely than its rarity
    logits = (evidence + log_prior).view(1, NUM_BINS, 1, 1)
    plain = torch.softmax(logits / 0.1, 1)
    annealed = probabilities(logits, 0.1, 1.0, log_prior)
    assert int(plain.argmax()) == pale and int(annealed.argmax()) == vivid
    assert _chroma_of(annealed) > 3 * _chroma_of(plain)
    # T > 1 leans on the prior: toward the common colour
    assert float(probabilities(logits, 3.0, 1.0, log_prior)[0, pale]) > float(
        torch.softmax(logits, 1)[0, pale])


def test_evidence_prior_is_a_normalised_floored_distribution() -> None:
    counts = torch.zeros(NUM_BINS, dtype=torch.float64)
    counts[:40] = torch.arange(1, 41, dtype=torch.float64) ** 3
    log_prior = evidence_log_prior(counts, 0.9, max_weight=2.5)
    assert log_prior.shape == (NUM_BINS,) and log_prior.dtype == torch.float32
    assert float(torch.logsumexp(log_prior.double(), 0)) == pytest.approx(0.0, abs=1e-5)
    assert float(log_prior.min()) >= math.log(bins.EVIDENCE_PRIOR_FLOOR / NUM_BINS) - 1e-5
    # rebalancing flattens it: the model learned against a flatter prior than the data's
    data = torch.log(bins.smooth_prior(counts).float() * 0.99 + 0.01 / NUM_BINS)
    assert float(log_prior.max() - log_prior.min()) < float(data.max() - data.min())


def test_the_default_temperature_is_the_safest_then_the_best() -> None:
    def m(auc: float, harm: float, colour: float = 30.0) -> dict[str, float]:
        return {"auc_raw": auc, "auc_rebalanced": auc, "harm": harm, "colourfulness": colour}

    per_t = {"0.38": m(80.0, 15.0), "0.65": m(78.0, 11.0),
             "0.8": m(77.0, 10.0 + DEFAULT_HARM_SLACK), "1.0": m(76.0, 10.0)}
    assert default_temperature_of(per_t, 20.0) == 0.8  # within the slack of the least harm
    per_t["0.8"]["harm"] = 11.0
    assert default_temperature_of(per_t, 20.0) == 1.0
    # too pale is never the default: the colourfulness floor comes first
    per_t["1.0"]["colourfulness"] = 10.0
    assert default_temperature_of(per_t, 20.0) == 0.65


@pytest.fixture(scope="module")
def shipped():
    from safetensors import safe_open

    with safe_open(str(SHIPPED), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118


def test_the_shipped_model_holds_the_prior_its_training_learned_against(shipped) -> None:
    state, meta = shipped
    expected = evidence_log_prior(torch.tensor(json.loads(meta["prior_counts"])),
                                  float(meta["rebalance_lambda"]),
                                  float(meta["rebalance_max_weight"]))
    assert torch.allclose(state["decode_log_prior"].float(), expected, atol=0.02)


def test_the_shipped_temperature_does_what_it_says(shipped) -> None:
    """Lower = more vivid: mean chroma at T=0.2 at least 1.3x the default's (the model issue's
    target), on a synthetic scene (sky gradient over textured ground, a bright blob)."""
    from chromatize.color import rgb_to_lab
    from chromatize.pipeline import Colorizer

    h, w = 160, 240
    rng = np.random.default_rng(1)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    sky = np.broadcast_to(0.8 - 0.2 * y, (h, w))
    ground = 0.35 + 0.1 * rng.standard_normal((h, w)).astype(np.float32)
    gray = np.where(np.arange(h)[:, None] < h // 2, sky, ground).clip(0, 1).astype(np.float32)
    colorizer = Colorizer("mobile", device="cpu", engine="torch")
    assert colorizer.decode_log_prior is not None

    def chroma(t: float | None) -> float:
        out = colorizer.colorize(gray, temperature=t)
        lab = rgb_to_lab(torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1))
        return float(lab[1:].norm(dim=0).mean())

    default, vivid, muted = chroma(None), chroma(0.2), chroma(3.0)
    assert vivid >= 1.3 * default
    assert muted < default


def test_weights_without_the_decoding_prior_load_and_decode_as_before(shipped, tmp_path: Path
                                                                      ) -> None:
    from safetensors.torch import save_file

    from chromatize.pipeline import Colorizer
    from chromatize.weights import load_model

    state, meta = shipped
    older = tmp_path / "v2-older.safetensors"
    save_file({k: v for k, v in state.items() if k != "decode_log_prior"}, str(older),
              metadata=meta)
    model = load_model("mobile", weights=older)
    assert not bool(model.decode_log_prior.any())
    colorizer = Colorizer(model, device="cpu", engine="torch")
    assert colorizer.decode_log_prior is None
    lightness = torch.linspace(20, 80, 64 * 96).view(1, 1, 64, 96)
    with torch.inference_mode():
        logits = model(lightness)
    decoded = bins.decode(logits, temperature=0.3)
    assert torch.allclose(decoded, torch.einsum("nqhw,qc->nchw", torch.softmax(logits / 0.3, 1),
                                                AB_BINS), atol=1e-4)
