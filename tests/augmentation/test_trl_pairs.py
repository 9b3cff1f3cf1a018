"""TRL-format preference pairs: ``csrm augment`` writes ``pairs_trl.<split>.jsonl`` (conversational
``prompt`` / ``chosen`` / ``rejected``, the config as the system message), and ``trl.RewardTrainer`` trains on
the file as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import augmentation
from augmentation.pairs import TRL_FILE, trl_row, trl_rows
from csrm.base.paths import CONFIGS_DIR, resolve_model_name
from csrm.base.records import PreferencePair

PAIR = PreferencePair(config_id="c1", config_text="No weapons or violence.",
                      messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                {"role": "user", "content": "How do I make a weapon?"}],
                      chosen="I can't help with that.", rejected="Here is how to build one.", chosen_error=1.0,
                      rejected_error=5.0, margin=4.0, source="t")


def test_a_pair_becomes_a_conversational_row_with_the_config_as_system_message():
    row = trl_row(PAIR)
    assert set(row) == {"prompt", "chosen", "rejected"}
    assert row["prompt"][0] == {"role": "system", "content": "No weapons or violence."}
    assert row["prompt"][1:] == PAIR.messages
    assert row["chosen"] == [{"role": "assistant", "content": "I can't help with that."}]
    assert row["rejected"] == [{"role": "assistant", "content": "Here is how to build one."}]
    full_answer = PreferencePair(**{**PAIR.to_row(), "rejected": None, "pair_id": ""})
    assert trl_row(full_answer) is None  # "the request answered in full" has no text
    assert trl_rows([PAIR, full_answer, PAIR]) == ([row, row], 1)
    with pytest.raises(ValueError, match="empty config_text"):
        trl_row(PreferencePair(**{**PAIR.to_row(), "config_text": " ", "pair_id": ""}))


@pytest.fixture(scope="module")
def augmented(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("trl_pairs") / "augment"
    manifest = augmentation.run(augmentation.load_recipe(CONFIGS_DIR / "augment" / "seed.yaml", ["progress=false"]),
                                output_dir=out)
    return out, manifest


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_augment_writes_the_trl_file_beside_the_pairs(augmented):
    out, manifest = augmented
    for split in ("train", "validation"):
        pairs = read_jsonl(out / f"pairs.{split}.jsonl")
        rows = read_jsonl(out / TRL_FILE.format(split=split))
        with_text = [p for p in pairs if p["chosen"] is not None and p["rejected"] is not None]
        assert rows and len(rows) == len(with_text) == manifest["pairs"][split]["trl"]
        assert manifest["pairs"][split]["trl_left_out_full_answer"] == len(pairs) - len(with_text)
        for row, pair in zip(rows, with_text, strict=True):  # same order as pairs.<split>.jsonl
            assert row["prompt"] == [{"role": "system", "content": pair["config_text"]}, *pair["messages"]]
            assert row["chosen"][0]["content"] == pair["chosen"] and row["rejected"][0]["content"] == pair["rejected"]
    saved = json.loads((out / "manifest.json").read_text())
    assert TRL_FILE.format(split="train") in saved["files"] and saved["pairs"]["train"]["trl"] == len(
        read_jsonl(out / TRL_FILE.format(split="train")))
    off = augmentation.run(augmentation.load_recipe(CONFIGS_DIR / "augment" / "seed.yaml",
                                                    ["progress=false", "trl_pairs=false"]), output_dir=out.parent / "off")
    assert not list((out.parent / "off").glob("pairs_trl.*")) and "trl" not in off["pairs"]["train"]


def test_reward_trainer_trains_two_steps_on_the_file(augmented, tmp_path):
    import transformers
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    out, _ = augmented
    dataset = load_dataset("json", data_files=str(out / TRL_FILE.format(split="train")), split="train")
    dataset = dataset.select(range(16))
    tok = AutoTokenizer.from_pretrained(resolve_model_name("minilm"))
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, num_labels=1, pad_token_id=tok.pad_token_id)
    model = transformers.BertForSequenceClassification(config)
    before = {k: v.clone() for k, v in model.named_parameters()}
    args = RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=2, per_device_train_batch_size=4,
                        learning_rate=1e-3, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                        logging_steps=1, max_length=512)
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    assert len(trainer.train_dataset) >= 8  # 2 steps of 4 pairs, none dropped for length
    first = trainer.train_dataset[0]
    text = tok.decode(first["chosen_ids"], skip_special_tokens=True)
    assert text.startswith("system :") and dataset[0]["prompt"][0]["content"].split()[0].lower() in text
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 2
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters())
