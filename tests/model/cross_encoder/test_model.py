"""CSRMModel: pooling for encoders and decoders under left and right padding, save/load, temperature."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, LlamaConfig

from csrm.base.paths import default_backbone
from csrm.model.cross_encoder.modeling import CSRMConfig, CSRMModel, load_tokenizer
from csrm.model.formatting import pad_batch

SEQS = [[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102], [101, 2000, 2001, 2002, 102]]


def tiny(kind: str, pooling: str | None = None) -> CSRMModel:
    torch.manual_seed(0)
    if kind == "bert":
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64)
    else:
        config = LlamaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1, intermediate_size=64, max_position_embeddings=64)
    kwargs = {"pooling": pooling} if pooling else {}
    model = CSRMModel.from_backbone_config(config, max_length=64, **kwargs).eval()
    with torch.no_grad():  # sharper heads so differences between inputs are visible
        model.compliance_head.weight.normal_(0, 1.0)
        model.reward_head.weight.normal_(0, 1.0)
    return model


def one_by_one(model: CSRMModel) -> tuple[torch.Tensor, torch.Tensor]:
    outs = [model(input_ids=torch.tensor([s]), attention_mask=torch.ones(1, len(s), dtype=torch.long)) for s in SEQS]
    return torch.cat([o.compliance_logits for o in outs]), torch.cat([o.rewards for o in outs])


@pytest.mark.parametrize(("kind", "pooling"), [("bert", "mean"), ("bert", "cls"), ("llama", "last")])
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_does_not_change_scores(kind, pooling, side):
    model = tiny(kind, pooling)
    assert model.config.pooling == pooling
    logits, rewards = one_by_one(model)
    with torch.no_grad():
        out = model(**pad_batch(SEQS, 0, padding_side=side, pad_to_multiple_of=8))
    torch.testing.assert_close(out.compliance_logits, logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.rewards, rewards, atol=1e-5, rtol=1e-4)
    assert len(set(logits.tolist())) == len(SEQS)  # the inputs really score differently


def test_default_pooling_by_architecture():
    assert tiny("bert").config.pooling == "mean"
    assert tiny("llama").config.pooling == "last"
    assert tiny("llama").config.is_decoder_backbone and not tiny("bert").config.is_decoder_backbone
    with pytest.raises(ValueError, match="pooling"):
        CSRMConfig(pooling="max")


def test_mean_pool_ignores_padding_positions():
    model = tiny("bert")
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [1e6, 1e6]]])
    mask = torch.tensor([[1, 1, 0]])
    assert model.pool(hidden, mask).tolist() == [[2.0, 3.0]]
    model.config.pooling = "last"
    assert model.pool(hidden, mask).tolist() == [[3.0, 4.0]]
    model.config.pooling = "cls"
    assert model.pool(hidden, torch.tensor([[0, 1, 1]])).tolist() == [[3.0, 4.0]]  # first real token


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_save_load_gives_identical_scores(tmp_path, kind):
    model = tiny(kind)
    model.config.temperature = 1.7
    model.config.blind_config = True
    model.config.template = "plain"
    logits, rewards = one_by_one(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded = CSRMModel.from_pretrained(tmp_path).eval()
    logits2, rewards2 = one_by_one(loaded)
    assert torch.equal(logits, logits2) and torch.equal(rewards, rewards2)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["temperature"] == 1.7 and saved["max_length"] == 64 and saved["pooling"] == model.config.pooling
    assert loaded.config.blind_config is True and loaded.config.backbone.model_type == kind


def test_calibrated_probability_uses_temperature():
    model = tiny("bert")
    logits = torch.tensor([-2.0, 0.0, 4.0])
    model.config.temperature = 2.0
    torch.testing.assert_close(model.calibrated_probability(logits), torch.sigmoid(logits / 2))


def test_formatter_follows_the_model_config():
    model = tiny("llama")
    tok = load_tokenizer(default_backbone(), decoder=True)
    fmt = model.make_formatter(tok)
    assert fmt.max_length == 64 and fmt.is_decoder and fmt.template == "plain"
    assert tok.padding_side == "right" and tok.pad_token_id is not None
