"""Shared test set-up: offline hubs, small thread counts, the shared-data fixture, and the small saved models
several test files score with (one home each)."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from scoring_fixtures import save, tiny_decoder, tiny_encoder  # noqa: E402

from csrm.base.paths import data_dir  # noqa: E402
from csrm.scoring.scorer import Scorer  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$CSRM_DATA_DIR``). Skips where absent; in CI (CI=true) absence is a failure."""
    path = data_dir()
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data folder {path} is missing in CI (set CSRM_DATA_DIR)")
        pytest.skip(f"shared data folder {path} not found (set CSRM_DATA_DIR to run this test)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def eval_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests/fixtures/eval`` laid out as a benchmark data folder: the CoSAlign-Test fixtures are stored as
    ``cosalign_local/{seen,unseen}.jsonl`` (names that cannot be mistaken for the shared data) and placed here
    under the names the loader reads, ``cosalign_test/cosalign_test_{seen,unseen}.jsonl``."""
    root = tmp_path_factory.mktemp("eval_data") / "eval"
    shutil.copytree(FIXTURES / "eval", root)
    local = root / "cosalign_local"
    (root / "cosalign_test").mkdir()
    for name in ("seen", "unseen"):
        (local / f"{name}.jsonl").rename(root / "cosalign_test" / f"cosalign_test_{name}.jsonl")
    local.rmdir()
    return root


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One torch thread for the whole suite: the tests run tiny models, whose matmuls only lose from threading
    (more so on a shared 2-core machine). The previous setting is restored at the end. Tests that need more
    threads run their work in a subprocess."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def decoder_scorer():
    """A scorer over a tiny random decoder CSRM (sharpened heads, see tests/scoring_fixtures.py); one per module,
    so a test file that changes its thresholds cannot affect another."""
    return Scorer(*tiny_decoder())


@pytest.fixture(scope="module")
def encoder_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny encoder CSRM saved like a trained one (``csrm.load``-able); one per module, since calibration
    may rewrite its temperature."""
    return save(*tiny_encoder(), tmp_path_factory.mktemp("encoder") / "model")
