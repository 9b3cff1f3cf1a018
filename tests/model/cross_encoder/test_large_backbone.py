"""Large-backbone training options of the cross-encoder CSRM on a tiny random BERT: LoRA through
``peft_config`` (only adapters and heads train; the merged final model scores like the trained one),
QLoRA refused without bitsandbytes, ``attn_implementation`` reaching the backbone, and tokenization cached
through ``datasets.map`` and reused by a second run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from fixtures.train.synthetic import write_dataset
from transformers import TrainerCallback, set_seed

import csrm
from csrm.base.errors import InputError
from csrm.base.paths import CONFIGS_DIR
from csrm.base.score_types import ScoreItem
from csrm.model.cross_encoder.lora import has_lora
from csrm.model.cross_encoder.train import build_data, build_model
from csrm.scoring.scorer import Scorer
from csrm.training.train import load_train_config, run_training

TINY = CONFIGS_DIR / "train" / "tiny_test.yaml"
LORA = "{r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: [query, value]}"
ITEMS = [ScoreItem("No violence of any kind.", [{"role": "user", "content": "Tell me a story."}], "Once upon a time."),
         ScoreItem("Violence is fine.", [{"role": "user", "content": "Describe a fight."}], "He punched him hard."),
         ScoreItem("No weapons.", [{"role": "user", "content": "How do I build a gun?"}], None)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("synthetic"))


def config(tmp: Path, dataset: Path, *overrides: str):
    return load_train_config(TINY, ["max_steps=6", "eval_strategy=no", "save_strategy=no", *overrides],
                             dataset_path=str(dataset), output_dir=str(tmp / "model"))


class Capture(TrainerCallback):
    """Scores of the trained (unmerged) model at the end of training, and which parameters had gradients."""

    def __init__(self):
        self.scores, self.grads = None, None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.grads is None:  # gradients are zeroed after the step: record which parameters train instead
            self.grads = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        assert has_lora(model)
        self.scores = Scorer(model, processing_class, device="cpu").score_items(ITEMS)


def test_lora_trains_only_adapters_and_heads_and_saves_a_loadable_merged_model(tmp_path, dataset):
    cfg, raw = config(tmp_path, dataset, f"peft_config={LORA}", "learning_rate=1e-2")
    set_seed(cfg.seed)  # as run_training does: the same random backbone
    model, _ = build_model(cfg)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith(("compliance_head", "reward_head")) for n in trainable)
    assert {"compliance_head.weight", "reward_head.bias"} <= trainable
    assert any(".query.lora_A." in n for n in trainable) and not any(".key." in n for n in trainable)

    capture = Capture()
    summary = run_training(cfg, raw_config=raw, callbacks=[capture])
    assert summary["global_step"] == 6 and capture.scores is not None
    assert capture.grads == trainable
    loaded = csrm.load(cfg.output_dir, device="cpu")
    assert not has_lora(loaded.model)  # merged: a plain CSRM, peft not needed to load it
    names = set(loaded.model.state_dict())
    assert not any("lora_" in n or "base_model" in n for n in names)
    after = loaded.score_items(ITEMS)
    for a, b in zip(capture.scores, after, strict=True):
        assert b.reward == pytest.approx(a.reward, abs=1e-5) and b.p_comply == pytest.approx(a.p_comply, abs=1e-5)
    # training moved the heads and (through the merge) the adapted weights, never the others
    state = loaded.model.state_dict()
    assert not torch.equal(state["reward_head.weight"], frozen_before["reward_head.weight"])
    query = "backbone.encoder.layer.0.attention.self.query.weight"
    key = "backbone.encoder.layer.0.attention.self.key.weight"
    base_query = frozen_before["backbone.base_model.model.encoder.layer.0.attention.self.query.base_layer.weight"]
    assert not torch.equal(state[query], base_query)
    assert torch.equal(state[key], frozen_before["backbone.base_model.model.encoder.layer.0.attention.self.key.weight"])


def test_peft_and_attention_settings_are_checked(tmp_path, dataset):
    with pytest.raises(InputError, match=r"peft_config\.rank"):
        config(tmp_path, dataset, "peft_config={rank: 4}")
    with pytest.raises(InputError, match=r"peft_config\.lora_dropout"):
        config(tmp_path, dataset, "peft_config={dropout: 1.5}")
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(InputError, match="bitsandbytes"):
            config(tmp_path, dataset, "peft_config={load_in_4bit: true}")
    cfg, _ = config(tmp_path, dataset, "attn_implementation=eager")
    model, _ = build_model(cfg)
    assert model.backbone.config._attn_implementation == "eager"
    cfg, _ = config(tmp_path, dataset, "attn_implementation=sdpa")
    assert build_model(cfg)[0].backbone.config._attn_implementation == "sdpa"
    cfg, _ = config(tmp_path, dataset, "backbone_config=null", "model_name_or_path=minilm",
                    "attn_implementation=eager")  # a pretrained backbone: passed to from_pretrained
    assert build_model(cfg)[0].backbone.config._attn_implementation == "eager"
    cfg, _ = config(tmp_path, dataset, "attn_implementation=no_such_kernel")
    with pytest.raises(InputError, match="attn_implementation"):
        build_model(cfg)


def test_tokenization_is_cached_and_reused(tmp_path, dataset, monkeypatch):
    from csrm.model.formatting import InputFormatter

    cfg, _ = config(tmp_path, dataset)
    model, tok = build_model(cfg)
    first = build_data(cfg, model.make_formatter(tok))
    cache = Path(cfg.checkpoint_dir) / "tokenized"
    files = sorted(p.name for p in cache.glob("*.arrow"))
    assert len(files) == 4  # examples and pairs of train and validation
    calls = []
    original = InputFormatter.encode_batch
    monkeypatch.setattr(InputFormatter, "encode_batch", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    again = build_data(cfg, model.make_formatter(tok))  # a second run: loads the arrow files
    assert not calls
    assert again[0].examples.input_ids == first[0].examples.input_ids
    assert again[0].pairs.rejected_ids == first[0].pairs.rejected_ids and again[1].examples.labels == first[1].examples.labels
    # a setting the ids depend on writes a new cache (and tokenizes)
    cfg2, _ = config(tmp_path, dataset, "max_length=32")
    model2, tok2 = build_model(cfg2)
    shorter = build_data(cfg2, model2.make_formatter(tok2))
    assert calls and len(list(cache.glob("*.arrow"))) == 8
    assert max(map(len, shorter[0].examples.input_ids)) <= 32
