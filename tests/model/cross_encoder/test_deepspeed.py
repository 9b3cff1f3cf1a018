"""Two-process DeepSpeed training on CPU (gloo) under a real launcher (torchrun); the saved model loads and
scores. The first run JIT-builds DeepSpeed's small shared-memory op (g++ and ninja), which takes a while."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures.train.synthetic import write_dataset
from scoring_fixtures import free_port

from csrm.base.metrics import classification_metrics
from csrm.base.paths import CONFIGS_DIR, PROJECT_ROOT
from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer
from csrm.model.data import load_augmented, tokenize_examples
from csrm.training.calibration import compliance_logits

pytestmark = pytest.mark.slow


def saved_backbone(path: Path) -> Path:
    """A tiny BERT saved like a hub checkpoint, so ZeRO-3 loads it through zero.Init (partitioned, bf16)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=128)).save_pretrained(path)
    return path


# ZeRO-2 trains a backbone built from config in float32; ZeRO-3 loads a saved one under zero.Init in bf16
# (heads and partitions must share one dtype there)
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_two_process_deepspeed_run_under_torchrun(tmp_path, stage):
    pytest.importorskip("deepspeed")
    data = write_dataset(tmp_path / "data")
    out = tmp_path / "model"
    extra = [] if stage == "zero2" else ["backbone_config=null", f"model_name_or_path={saved_backbone(tmp_path / 'bb')}",
                                         "bf16=true", "learning_rate=3e-3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONFAULTHANDLER": "1",  # a rank that aborts prints its Python stack into the assertion message
           "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",  # = torchrun
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "csrm.app.train",
               str(CONFIGS_DIR / "train" / "tiny_test.yaml"), f"dataset_path={data}", f"output_dir={out}",
               f"deepspeed={CONFIGS_DIR / 'deepspeed' / f'{stage}.json'}", "max_steps=6", "save_steps=3",
               "eval_steps=6", *extra]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads([line for line in proc.stdout.splitlines() if line.startswith('{"output_dir"')][-1])
    assert summary["global_step"] == 6
    assert summary["examples_seen"] == 2 * 6 * 16 and summary["pairs_seen"] == 2 * 6 * 8  # both ranks trained
    checkpoint = Path(summary["checkpoint_dir"]) / "checkpoint-6"
    assert (checkpoint / "global_step6").is_dir()  # a DeepSpeed engine checkpoint (ZeRO partitions)
    # the final model is a plain CSRM folder that loads and scores like the run's own evaluation
    model = CSRMModel.from_pretrained(out)
    tok = load_tokenizer(out, decoder=False)
    split = load_augmented(data, ["validation"])["examples"]["validation"]
    feats = tokenize_examples(split, model.make_formatter(tok))
    logits = compliance_logits(model, feats.input_ids, pad_token_id=tok.pad_token_id)
    assert np.isfinite(logits).all() and np.ptp(logits) > 0
    metrics = classification_metrics(1 - np.array(feats.labels), 1 / (1 + np.exp(logits)))
    tolerance = 1e-5 if stage == "zero2" else 0.02  # bf16 training: the run evaluated in bf16 autocast
    for key in ("auroc", "ece", "brier"):
        assert metrics[key] == pytest.approx(summary["eval"][f"eval_{key}"], abs=tolerance)
