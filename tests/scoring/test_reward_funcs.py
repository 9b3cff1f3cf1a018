"""CSRMReward: TRL's reward_funcs signature, config from a column, and a real (tiny) GRPO step."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from scoring_fixtures import CONFIGS, PROMPTS

from csrm.base.safety_config import SafetyConfig
from csrm.scoring.ranking import estimated_error
from csrm.scoring.reward_funcs import CSRMReward, completion_text


def test_plain_and_conversational_rows_score_like_the_library(decoder_scorer):
    reward = CSRMReward(decoder_scorer)
    completions = ["Sure, here it is.", "I can't help with that.", "A story about knights."]
    plain = reward(PROMPTS, completions, config=CONFIGS, completion_ids=[[1]] * 3, trainer_state=None)
    expected = [decoder_scorer.score(c, p, r).reward for c, p, r in zip(CONFIGS, PROMPTS, completions, strict=True)]
    assert plain == pytest.approx(expected, abs=1e-5)
    assert len(set(plain)) == 3
    # conversational: the same texts as messages give the same rewards
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    convo = [[{"role": "assistant", "content": c}] for c in completions]
    assert reward(prompts, convo, config=CONFIGS) == pytest.approx(expected, abs=1e-5)
    # the config as the prompt's system message (no column), and equal to the column: not duplicated
    with_system = [[{"role": "system", "content": c}, *p] for c, p in zip(CONFIGS, prompts, strict=True)]
    assert reward(with_system, convo) == pytest.approx(expected, abs=1e-5)
    assert reward(with_system, convo, config=CONFIGS) == pytest.approx(expected, abs=1e-5)
    # a SafetyConfig dict in the column, and a default config
    as_dicts = [SafetyConfig(text=c).to_dict() for c in CONFIGS]
    assert reward(prompts, convo, config=as_dicts) == pytest.approx(expected, abs=1e-5)
    assert CSRMReward(decoder_scorer, default_config=CONFIGS[0])(prompts[:1], convo[:1]) == pytest.approx(expected[:1],
                                                                                                    abs=1e-5)


def test_other_outputs_and_errors(decoder_scorer):
    result = decoder_scorer.score(CONFIGS[0], PROMPTS[0], "ok")
    assert CSRMReward(decoder_scorer, output="p_comply")([PROMPTS[0]], ["ok"], config=[CONFIGS[0]]) == pytest.approx(
        [result.p_comply], abs=1e-5)
    assert CSRMReward(decoder_scorer, output="neg_error", config_column="policy")(
        [PROMPTS[0]], ["ok"], policy=[CONFIGS[0]]) == pytest.approx([-estimated_error(result)], abs=1e-5)
    with pytest.raises(ValueError, match="no safety config"):
        CSRMReward(decoder_scorer)([PROMPTS[0]], ["ok"])
    with pytest.raises(ValueError, match="rows"):
        CSRMReward(decoder_scorer)(PROMPTS, ["a", "b", "c"], config=CONFIGS[:2])
    with pytest.raises(ValueError):
        CSRMReward(decoder_scorer, output="logit")
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}]) == "hi"


def test_reward_drives_a_grpo_step_with_the_config_column(decoder_scorer, tmp_path):
    from scoring_fixtures import tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    tok = tokenizer(decoder=True)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    tok.model_input_names = ["input_ids", "attention_mask"]  # a BERT vocabulary, but no token_type_ids
    torch.manual_seed(0)
    policy = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    rows = [{"prompt": [{"role": "user", "content": p}], "config": c} for c, p in zip(CONFIGS, PROMPTS, strict=True)]
    dataset = Dataset.from_list(rows + rows[:1])
    reward = CSRMReward(decoder_scorer)
    calls = []

    def csrm_reward(prompts, completions, **kwargs):
        values = reward(prompts, completions, **kwargs)
        calls.append((prompts, completions, kwargs, values))
        return values

    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=4, max_steps=1, use_cpu=True, bf16=False, report_to="none",
                      save_strategy="no", logging_steps=1, beta=0.0)
    trainer = GRPOTrainer(model=policy, reward_funcs=csrm_reward, args=args, train_dataset=dataset,
                          processing_class=tok)
    out = trainer.train()
    assert out.global_step == 1
    assert calls, "the CSRM reward was never called"
    by_prompt = {r["prompt"][0]["content"]: r["config"] for r in rows}
    for prompts, completions, kwargs, values in calls:
        assert len(kwargs["config"]) == len(prompts) == len(values)
        for prompt, config, completion, value in zip(prompts, kwargs["config"], completions, values, strict=True):
            assert config == by_prompt[prompt[-1]["content"]]  # the row's own config reached the reward
            expected = decoder_scorer.score(config, prompt, completion_text(completion)).reward
            assert value == pytest.approx(expected, abs=1e-5)
