"""Shared test fixtures. Area-specific fixtures live beside their tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder (training data, Kodak24, backbone); skips when absent."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"../shared is not present beside the project (looked at {SHARED_DIR}); "
                    "it only exists on the developers' machines and in CI")
    return SHARED_DIR


@pytest.fixture(scope="session")
def eccv16_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised (seeded) ECCV16 state dict in the official .pth layout, made once
    per session: lets tests run the real network without the 129 MB official download."""
    from worker_helpers import random_eccv16_weights

    return random_eccv16_weights(tmp_path_factory.getbasetemp())
