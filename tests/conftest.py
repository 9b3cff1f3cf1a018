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


# -- the alignment tests' and the fault suite's tiny policy, judge and item files (helpers: align_fixtures) --
@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory) -> Path:
    """A 2-layer Llama built from a config, with a tokenizer trained in-test and a simple chat template."""
    import torch
    from align_fixtures import tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("policy")
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_csrm(tmp_path_factory) -> Path:
    """A tiny encoder CSRM; its compliance head says "complies" for everything so every item makes pairs
    (ranked by the random but input-dependent reward head)."""
    import torch

    model, tok = tiny_encoder(max_length=192)
    with torch.no_grad():
        model.compliance_head.weight.zero_()
        model.compliance_head.bias.fill_(3.0)
    return save(model, tok, tmp_path_factory.mktemp("csrm"))


@pytest.fixture(scope="session")
def item_files(tmp_path_factory) -> tuple[Path, Path]:
    import json

    from align_fixtures import CONFIGS, EVAL_PROMPTS, TRAIN_PROMPTS

    folder = tmp_path_factory.mktemp("items")
    train = [{"config": c, "prompt": p} for c in CONFIGS[:2] for p in TRAIN_PROMPTS[:3]]
    held_out = [{"config": {"name": "held-out", "text": CONFIGS[2]}, "prompt": p} for p in EVAL_PROMPTS]
    for name, rows in (("train.jsonl", train), ("eval.jsonl", held_out)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder / "train.jsonl", folder / "eval.jsonl"
