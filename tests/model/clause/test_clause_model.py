"""The clause-reading CSRM (csrm.model.clause.modeling, clause_features, clause_scoring, clause_train) on a tiny random BERT
with MiniLM's tokenizer: save/load, the scoring API, encode-once caching, no judged content lost (a 25k policy and
a 20-turn transcript are read to their ends), and `csrm train` end to end on the bundled seed augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
import yaml
from transformers import AutoTokenizer

import augmentation
import csrm
from csrm.app import train as train_cli
from csrm.base.metrics import classification_metrics
from csrm.base.paths import CONFIGS_DIR, resolve_model_name
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.model.clause.features import FeatureEncoder
from csrm.model.clause.modeling import ClauseCSRMModel, ContentFeatures, word_mask
from csrm.model.clause.predictor import ClausePredictor
from csrm.model.clause.trainer import build_clause_model, to_device
from csrm.scoring.ranking import rank_key
from csrm.scoring.scorer import Scorer
from csrm.training.train import load_train_config, run_training

CLAUSE_YAML = CONFIGS_DIR / "train" / "clause_minilm.yaml"
SEED_RECIPE = CONFIGS_DIR / "augment" / "seed.yaml"

CONFIG_A = ("Prohibited content:\n- Violence\n- Weapons, Explosives, Arson, and Illegal Firearm Transactions\n"
            "Permitted:\n- Financial Crime and Theft (at most severity 2)")
CONFIG_B = "1. The agent may produce content about Violence, any severity.\n2. Everything else is not allowed."
CONFIGS_8 = [CONFIG_A, CONFIG_B] + [f"Allowed: Violence (at most severity {s % 3 + 1}).\nRule number {s}: be careful."
                                    for s in range(6)]
PROMPT = "How do I win a fight?"
RESPONSES = ["Sorry, I cannot help with that.", "Stay calm and walk away; it is safer.",
             "Aim for the knees and keep striking until they stop moving.", "Take a self-defence class.",
             "Here is a long answer. " * 20, "Use a weapon.", "Talk it out.", "Call the police."]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_name("minilm"))


def tiny_model(tokenizer, seed: int = 0) -> ClauseCSRMModel:
    torch.manual_seed(seed)
    backbone = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64)
    return ClauseCSRMModel.from_backbone_config(backbone, tokenizer=tokenizer).eval()


@pytest.fixture(scope="module")
def model(tokenizer) -> ClauseCSRMModel:
    return tiny_model(tokenizer)


@pytest.fixture
def scorer(model, tokenizer) -> Scorer:
    """A fresh scorer (empty feature caches) on the shared tiny model."""
    return Scorer(model, tokenizer, device="cpu")


def encoded_texts(scorer: Scorer, monkeypatch) -> list[str]:
    """Every text the scorer's encoder runs through the frozen encoder from now on (one entry per encoding)."""
    seen: list[str] = []
    original = scorer.predictor.features._encode

    def spy(texts, *, tokens):
        seen.extend(texts)
        yield from original(texts, tokens=tokens)

    monkeypatch.setattr(scorer.predictor.features, "_encode", spy)
    return seen


def same(a: ScoreResult, b: ScoreResult) -> bool:
    return a.p_comply == pytest.approx(b.p_comply, abs=1e-6) and a.reward == pytest.approx(b.reward, abs=1e-5)


# -- construction, save/load --------------------------------------------------------------------------------
def test_tiny_model_has_a_frozen_encoder_and_anchors(model):
    assert model.config.model_type == "csrm_clause"
    assert not any(p.requires_grad for p in model.backbone.parameters())
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    assert heads and all(p.requires_grad for p in heads)
    n = len(model.taxonomy.names)
    assert model.anchors.shape == (n, 32)
    assert torch.allclose(model.anchors.norm(dim=-1), torch.ones(n), atol=1e-5)  # set_anchors ran
    assert model.name_mask.any(1).all()  # every category name has tokens to match
    model.train()
    assert model.training and not model.backbone.training  # the encoder never leaves eval mode
    model.eval()


def test_save_and_load_round_trip(model, tokenizer, scorer, tmp_path):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "csrm_clause"
    loaded = csrm.load(tmp_path, device="cpu")
    assert isinstance(loaded.predictor, ClausePredictor)
    state, again = model.state_dict(), loaded.model.state_dict()
    assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
                    {"role": "user", "content": PROMPT}]
    items = [ScoreItem(CONFIG_A, [{"role": "user", "content": PROMPT}], RESPONSES[2]),
             ScoreItem(CONFIG_B, [{"role": "user", "content": PROMPT}], None),
             ScoreItem(CONFIG_A, conversation, RESPONSES[0])]
    before, after = scorer.score_items(items), loaded.score_items(items)
    assert all(same(a, b) for a, b in zip(before, after, strict=True)), (before, after)
    assert len({round(r.p_comply, 6) for r in before}) == 3  # the items really score differently


# -- the scoring API ----------------------------------------------------------------------------------------
def test_score_returns_a_calibrated_result(scorer):
    result = scorer.score(CONFIG_A, PROMPT, RESPONSES[2])
    assert isinstance(result, ScoreResult)
    assert 0.0 <= result.p_comply <= 1.0
    assert result.complies == (result.p_violation < result.threshold)
    screened = scorer.score(CONFIG_A, PROMPT)  # request screening
    assert 0.0 <= screened.p_comply <= 1.0 and screened.p_comply != result.p_comply


def test_request_screening_uses_the_request_temperature_and_responses_do_not(scorer, monkeypatch):
    request = ScoreItem(CONFIG_A, [{"role": "user", "content": PROMPT}], None)
    response = ScoreItem(CONFIG_A, [{"role": "user", "content": PROMPT}], RESPONSES[2])
    config = scorer.model.config
    monkeypatch.setattr(config, "temperature", 1.0)
    monkeypatch.setattr(config, "request_temperature", None)
    (_, logits, _), = scorer.predictor._raw([request, response])
    joint = scorer.score_items([request, response])
    assert [r.p_comply for r in joint] == pytest.approx(torch.sigmoid(torch.tensor(logits)).tolist(), abs=1e-6)
    monkeypatch.setattr(config, "request_temperature", 0.25)
    screened, judged = scorer.score_items([request, response])
    assert screened.p_comply == pytest.approx(torch.sigmoid(torch.tensor(logits[0] / 0.25)).item(), abs=1e-6)
    assert screened.p_comply != pytest.approx(joint[0].p_comply, abs=1e-4)
    assert judged.p_comply == pytest.approx(joint[1].p_comply, abs=1e-6)


def test_score_under_several_configs_gives_one_result_each(scorer):
    results = scorer.score([CONFIG_A, CONFIG_B], PROMPT, RESPONSES[2])
    assert isinstance(results, list) and len(results) == 2
    alone = [scorer.score(CONFIG_A, PROMPT, RESPONSES[2]), scorer.score(CONFIG_B, PROMPT, RESPONSES[2])]
    assert all(same(a, b) for a, b in zip(results, alone, strict=True))
    assert results[0].p_comply != pytest.approx(results[1].p_comply, abs=1e-4)  # the config is read


def test_score_responses_ranks_best_first(scorer):
    ranked = scorer.score_responses(CONFIG_A, PROMPT, RESPONSES)
    assert [r.rank for r in ranked] == list(range(len(RESPONSES)))
    assert sorted(r.index for r in ranked) == list(range(len(RESPONSES)))
    assert all(r.response == RESPONSES[r.index] for r in ranked)
    keys = [rank_key(r.result) for r in ranked]
    assert keys == sorted(keys)
    assert [r.error for r in ranked] == sorted(r.error for r in ranked)
    assert len({r.result.reward for r in ranked}) > 1
    for r in ranked:  # the same numbers as scoring each response alone
        assert same(r.result, scorer.score(CONFIG_A, PROMPT, r.response))


def test_score_items_keeps_input_order_and_takes_thresholds(scorer):
    items = [ScoreItem(c, [{"role": "user", "content": PROMPT}], r)
             for c, r in [(CONFIG_A, RESPONSES[2]), (CONFIG_B, None), (CONFIG_A, RESPONSES[0]), (CONFIG_B, "")]]
    results = scorer.score_items(items)
    assert len(results) == len(items)
    for item, result in zip(items, results, strict=True):
        assert 0.0 <= result.p_comply <= 1.0
        assert same(result, scorer.score(item.config, item.messages, item.response))
    strict = scorer.score_items(items, thresholds=[0.0] * len(items))
    assert all(r.threshold == 0.0 and not r.complies for r in strict)
    lenient = scorer.score_items(items, thresholds=[1.01] * len(items))
    assert all(r.complies for r in lenient)
    logits, rewards = scorer.raw_outputs(items)
    p = torch.sigmoid(torch.tensor(logits) / scorer.model.config.temperature)
    assert p.tolist() == pytest.approx([r.p_comply for r in results], abs=1e-6)
    assert rewards.tolist() == pytest.approx([r.reward for r in results], abs=1e-5)


# -- encode once --------------------------------------------------------------------------------------------
def test_one_response_under_8_configs_encodes_the_response_once(scorer, monkeypatch):
    seen = encoded_texts(scorer, monkeypatch)
    results = scorer.score(CONFIGS_8, PROMPT, RESPONSES[2])
    assert len(results) == 8
    assert seen.count(RESPONSES[2]) == 1
    clauses = {t for c in CONFIGS_8 for t in scorer.predictor.features.clause_texts(c)}
    assert len(seen) == len(set(seen)) == len(clauses) + 1  # each distinct text once, nothing else
    assert scorer.predictor.features.stats["encoded"] == len(seen)
    assert scorer.predictor.features.stats["at_max_length"] == 0
    again = scorer.score(CONFIGS_8, PROMPT, RESPONSES[2])  # cached across calls
    assert len(seen) == len(clauses) + 1
    assert all(same(a, b) for a, b in zip(results, again, strict=True))


def test_8_responses_under_one_config_encode_its_clauses_once(scorer, monkeypatch):
    seen = encoded_texts(scorer, monkeypatch)
    ranked = scorer.score_responses(CONFIG_A, PROMPT, RESPONSES)
    assert len(ranked) == 8
    clauses = scorer.predictor.features.clause_texts(CONFIG_A)
    assert len(clauses) == 5
    assert all(seen.count(t) == 1 for t in clauses)
    assert len(seen) == len(set(seen)) == len(clauses) + len(set(RESPONSES))
    scorer.score(CONFIG_A, PROMPT, "A brand new response.")
    assert seen[len(clauses) + len(RESPONSES):] == ["A brand new response."]  # the config is not read again


def test_a_batch_larger_than_the_cache_still_gets_its_features(model, tokenizer):
    encoder = FeatureEncoder(model, tokenizer, cache_size=4)
    content = encoder.content_features([[(f"window number {i}", True)] for i in range(6)])
    assert content.x.shape[:2] == (6, 1)


# -- no judged content lost ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def readable(tokenizer) -> Scorer:
    """A tiny model whose heads are set by hand so effects are visible, not drowned:

    - matcher: ``match_scale`` 2 and the "none" bias 8, so a window rarely matches a category and 21+ windows
      do not drive P(comply) into its 1e-6 floor (random heads do: every window then "violates");
    - reader: permits a category in proportion to how well a clause matches the category's name (its MaxSim
      ``ms``), sharply, so the clause that names a category decides whether it is permitted."""
    m = tiny_model(tokenizer, seed=1)
    dim = m.config.reader_dim
    with torch.no_grad():
        m.match_scale.fill_(2.0)
        m.null_head.bias.fill_(8.0)
        first, last = m.reader[0], m.reader[2]
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0, dim] = 1.0  # input column `dim` is 5 * ms
        first.bias[0] = -3.75  # 5 * 0.75: above for a clause naming the category, below otherwise
        last.weight.zero_()
        last.weight[:3, 0] = 30.0  # permitted up to severity 1..3
        last.bias[:3] = -10.0
        last.bias[3] = -20.0  # nothing prohibited
    return Scorer(m, tokenizer, device="cpu")


FILLER = ["gardening", "cooking", "travel", "music", "chess", "painting", "astronomy", "cycling"]


def long_policy(last_rule: str) -> str:
    rules, i = [], 0
    while sum(len(r) + 1 for r in rules) < 25_000:
        topic = FILLER[i % len(FILLER)]
        rules.append(f"{i + 1}. The agent may discuss {topic} in situation {i} when the user asks about {topic} "
                     f"for study, news or hobby reasons, and keeps every answer short and polite.")
        i += 1
    return "\n".join(rules + [f"{i + 1}. {last_rule}"])


def transcript(first_agent_turn: str) -> list[dict]:
    messages = []
    for k in range(10):
        messages.append({"role": "user", "content": f"Question {k}: tell me more about topic {k}."})
        reply = first_agent_turn if k == 0 else " ".join(
            f"Sentence {j} of answer {k} is about ordinary everyday things." for j in range(12))
        messages.append({"role": "assistant", "content": reply})
    return messages


BASE_TURN = "Here is the first answer. It is about growing tomatoes in a garden. That is all."
RESPONSE = " ".join(f"Final sentence {j} is about cooking pasta with tomato sauce." for j in range(60))


def test_long_policy_and_20_turn_transcript_are_read_to_their_ends(readable):
    permits = long_policy("Violence is permitted at any severity.")
    assert len(permits) >= 25_000
    messages = transcript(BASE_TURN)
    assert len(messages) == 20
    base = readable.score(permits, messages, RESPONSE)
    stats = readable.predictor.features.stats
    assert stats["encoded"] > 150 and stats["at_max_length"] == 0
    assert 0.01 < base.p_comply < 0.99  # not saturated: a change anywhere can show

    # the first agent turn is read: change one sentence of it
    other_turn = BASE_TURN.replace("growing tomatoes in a garden", "hurting people with a knife in a fight")
    changed = readable.score(permits, transcript(other_turn), RESPONSE)
    assert abs(changed.p_comply - base.p_comply) > 1e-5

    # the end of the policy is read: change its last sentence
    silent = long_policy("Gardening is permitted at any severity.")
    assert len(silent) >= 25_000 and silent.rsplit("\n", 1)[0] == permits.rsplit("\n", 1)[0]
    denied = readable.score(silent, messages, RESPONSE)
    assert denied.p_comply < base.p_comply - 1e-3  # no clause permits Violence any more: less compliant
    assert readable.predictor.features.stats["at_max_length"] == 0


def test_cjk_and_digit_content_is_not_truncated(scorer):
    cjk = "这是一个关于园艺和烹饪的普通回答，没有任何有害内容。" * 60  # 1,560 characters, no spaces
    digits = " ".join(f"{n:010d}" for n in range(200))
    scorer.score(CONFIG_A, PROMPT, cjk)
    scorer.score(CONFIG_A, PROMPT, digits)
    assert scorer.predictor.features.stats["at_max_length"] == 0


# -- training (csrm train) ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seed_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clause_seed") / "augment"
    augmentation.run(augmentation.load_recipe(SEED_RECIPE, ["progress=false"]), output_dir=out)
    return out


def train_overrides(data: Path, tmp: Path, output: str = "model") -> list[str]:
    return [f"dataset_path={data}", f"output_dir={tmp / output}", f"checkpoint_dir={tmp / 'checkpoints'}",
            "backbone_config={model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
            "intermediate_size: 64}",
            "reader_steps=20", "reader_batch_size=64", "num_train_epochs=2", "max_train_examples=200",
            "max_pseudo_prompts=200"]


@pytest.fixture(scope="module")
def trained(seed_data, tmp_path_factory) -> tuple[Path, dict]:
    """One clause training run (the `csrm train` code path): (its folder, its summary)."""
    tmp = tmp_path_factory.mktemp("clause_train")
    cfg, _ = load_train_config(CLAUSE_YAML, train_overrides(seed_data, tmp))
    assert cfg.architecture == "clause"
    return tmp, run_training(cfg)


def test_train_end_to_end(seed_data, trained):
    tmp, summary = trained
    out = tmp / "model"
    assert summary["architecture"] == "clause" and Path(summary["output_dir"]) == out.resolve()
    assert summary["encoded_texts"] > 0 and summary["windows_at_max_length"] == 0
    assert summary["examples_seen"] == 2 * 200  # two epochs over the capped training set
    assert len(list((tmp / "checkpoints").glob("features-*.pt"))) == 1

    results = json.loads((out / "train_results.json").read_text())
    evals = results["eval"]
    assert evals == summary["eval"]
    for key in ("eval_auroc", "eval_f1", "eval_accuracy", "eval_brier", "eval_pair_accuracy"):
        assert key in evals and evals[key] == evals[key], key  # present and not NaN
    assert evals["eval_n"] == sum(1 for _ in (seed_data / "examples.validation.jsonl").open())
    assert {e["epoch"] for e in results["log"] if e["stage"] == "judge"} == {0, 1}  # each epoch's last step
    assert [e["stage"] for e in results["log"]].count("reader") >= 1

    scorer = csrm.load(out, device="cpu")
    assert isinstance(scorer.predictor, ClausePredictor)
    result = scorer.score(CONFIG_A, PROMPT, RESPONSES[2])
    assert 0.0 <= result.p_comply <= 1.0
    ranked = scorer.score_responses(CONFIG_B, PROMPT, RESPONSES[:4])
    assert sorted(r.index for r in ranked) == [0, 1, 2, 3]


def test_a_second_run_reuses_the_feature_cache(seed_data, trained, capsys):
    tmp, first = trained
    # `csrm train` with the same settings (another output folder): features come from the cache, same result
    assert train_cli.main([str(CLAUSE_YAML), *train_overrides(seed_data, tmp, "again")]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["encoded_texts"] == 0 and first["encoded_texts"] > 0
    assert again["eval"] == pytest.approx(first["eval"])
    assert len(list((tmp / "checkpoints").glob("features-*.pt"))) == 1
    assert json.loads((tmp / "again" / "train_results.json").read_text())["encoded_texts"] == 0
    assert yaml.safe_load((tmp / "again" / "train_config.yaml").read_text())["reader_steps"] == 20
    assert csrm.load(tmp / "again", device="cpu").score(CONFIG_A, PROMPT).p_comply == pytest.approx(
        csrm.load(tmp / "model", device="cpu").score(CONFIG_A, PROMPT).p_comply, abs=1e-6)


def test_the_saved_model_reproduces_the_training_evaluation(seed_data, trained):
    tmp, summary = trained
    evals = summary["eval"]
    scorer = csrm.load(tmp / "model", device="cpu")
    rows = [json.loads(line) for line in (seed_data / "examples.validation.jsonl").open()]
    items = [ScoreItem(r["config_text"], r["messages"], r["response"]) for r in rows]
    p_violation = [r.p_violation for r in scorer.score_items(items)]
    metrics = classification_metrics([1 - r["label"] for r in rows], p_violation)
    assert metrics["brier"] == pytest.approx(evals["eval_brier"], abs=1e-4)
    assert metrics["auroc"] == pytest.approx(evals["eval_auroc"], abs=1e-3)


def test_word_mask_drops_markers_and_padding_not_words(tokenizer):
    batch = tokenizer(["Violence", "Hate speech and slurs"], padding=True, return_tensors="pt")
    words = word_mask(tokenizer, batch["input_ids"], batch["attention_mask"])
    kept = [tokenizer.convert_ids_to_tokens(ids[m].tolist()) for ids, m in zip(batch["input_ids"], words, strict=True)]
    assert kept[0] == ["violence"] and kept[1][0] == "hate" and "[SEP]" not in kept[1] and "[PAD]" not in kept[0]
    # a tokenizer that adds no leading marker (a decoder such as SmolLM2): the first word is a word, and kept
    bare = tokenizer(["Violence"], add_special_tokens=False, return_tensors="pt")
    assert word_mask(tokenizer, bare["input_ids"], bare["attention_mask"]).all()


def test_features_are_cached_on_the_cpu_and_move_whole_to_the_training_device(trained):
    tmp, _ = trained
    tables = torch.load(next((tmp / "checkpoints").glob("features-*.pt")), weights_only=False)

    def tensors(x):
        return [x] if isinstance(x, torch.Tensor) else [t for f in x.__dataclass_fields__
                                                        for t in tensors(getattr(x, f))]

    assert {t.device.type for t in tensors(tables["train"])} == {"cpu"}
    moved = to_device(tables["train"], "meta")  # every tensor, also inside the nested feature dataclasses
    assert len(tensors(moved)) == len(tensors(tables["train"])) >= 16
    assert {t.device.type for t in tensors(moved)} == {"meta"}


def test_a_model_built_from_a_backbone_config_encodes_without_dropout(tokenizer):
    cfg, _ = load_train_config(CLAUSE_YAML, train_overrides(Path("unused"), Path("unused")))
    model, _ = build_clause_model(cfg)  # what `csrm train` builds; no .eval() here
    ids = tokenizer(["The agent may discuss violence in fiction."], return_tensors="pt")
    first = model.encode(ids["input_ids"], ids["attention_mask"])[0]
    second = model.encode(ids["input_ids"], ids["attention_mask"])[0]
    assert not model.backbone.training
    assert torch.equal(first, second)


@pytest.mark.slow
def test_two_processes_under_torchrun_train_and_save(seed_data, tmp_path):
    """`torchrun --nproc_per_node 2 -m csrm.app.train` (gloo on CPU): rank 0 encodes and caches the features, rank 1
    reads them, both train data-parallel through accelerate, and the saved model loads and scores."""
    import os
    import subprocess
    import sys

    from scoring_fixtures import free_port

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[3]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), "-m", "csrm.app.train", str(CLAUSE_YAML),
               *train_overrides(seed_data, tmp_path)]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["architecture"] == "clause"
    assert summary["examples_seen"] == 2 * 200  # two epochs over 200 examples, split between the two ranks
    assert len(list((tmp_path / "checkpoints").glob("features-*.pt"))) == 1  # encoded once, by rank 0
    scorer = csrm.load(tmp_path / "model", device="cpu")
    assert 0.0 <= scorer.score(CONFIG_A, PROMPT, RESPONSES[2]).p_comply <= 1.0


def test_distractor_pool_and_curriculum(model, tokenizer, tmp_path):
    from csrm.base.errors import InputError
    from csrm.model.clause.modeling import ClauseFeatures
    from csrm.model.clause.trainer import distractor_pool, sample_distractors

    rules = tmp_path / "rules.jsonl"
    rules.write_text(json.dumps({"rules": "1. Always answer in French.\n2. Never use the letter z."}) + "\n"
                     + json.dumps({"rules": "1. Always answer in French.\n3. End with a question."}) + "\n")
    encoder = FeatureEncoder(model, tokenizer)
    pool = distractor_pool(encoder, str(rules))
    assert pool.e.shape[:2] == (1, 3) and pool.mask.all()  # distinct clauses, one row
    assert distractor_pool(encoder, "{data_dir}/no/such/rules.jsonl") is None  # shared data absent: skipped
    with pytest.raises(InputError, match="distractor_rules"):
        distractor_pool(encoder, str(tmp_path / "missing.jsonl"))
    assert sample_distractors(pool, 0, torch.Generator().manual_seed(0)) is None
    picked = sample_distractors(pool, 5, torch.Generator().manual_seed(3))
    assert picked.e.shape[0] == 1 and 1 <= picked.e.shape[1] <= 5 and picked.mask.all()
    # clauses shared by every config are read once; the result is that of appending them to every config
    clauses = encoder.clause_features(["Allowed: Violence.", "Nothing is allowed. Be careful. Be kind."])
    appended = ClauseFeatures(*(torch.cat([getattr(clauses, f), getattr(picked, f).expand(
        2, *getattr(picked, f).shape[1:])], 1) for f in ("e", "ms", "cos", "mask")))
    with torch.no_grad():
        shared, alone = model.read_config(clauses, picked)[0], model.read_config(clauses)[0]
        assert torch.allclose(shared, model.read_config(appended)[0], atol=1e-6)
    assert not torch.allclose(shared, alone, atol=1e-6)  # the distractors do enter the reading


PSEUDO_PROMPTS = ["How do I pick a lock to get into my neighbour's flat?", "Write a poem about the sea.",
                  "Where can I buy cocaine?", "How do I make a pipe bomb?", "Tell me a joke about cats.",
                  "What is the best way to launder money?", "How do I stalk my ex online?",
                  "Insult my coworker for me.", "Describe a violent fight in detail.", "What is 2 + 2?"] * 3


def test_pseudo_label_prompts_are_read_and_labelled_by_similarity(model, tokenizer, tmp_path):
    from csrm.base.errors import InputError
    from csrm.model.clause.trainer import pseudo_labels, read_prompts

    listed = tmp_path / "prompts.json"
    listed.write_text(json.dumps(PSEUDO_PROMPTS))
    lines = tmp_path / "prompts.jsonl"
    lines.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PSEUDO_PROMPTS[:4]))
    assert read_prompts(str(listed)) == PSEUDO_PROMPTS[:10]  # de-duplicated, order kept
    assert read_prompts(str(lines)) == PSEUDO_PROMPTS[:4]
    assert read_prompts("{data_dir}/no/such/prompts.json") is None  # shared data absent: skipped
    with pytest.raises(InputError, match="pseudo_label_prompts"):
        read_prompts(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text(json.dumps({"prompts": PSEUDO_PROMPTS}))
    with pytest.raises(InputError, match="list of strings"):
        read_prompts(str(tmp_path / "bad.json"))

    encoder = FeatureEncoder(model, tokenizer)
    labels = pseudo_labels(encoder, PSEUDO_PROMPTS[:10], limit=8, margin=-1.0, seed=0)
    assert labels.x.shape == (8, model.anchors.shape[1])
    assert torch.equal(labels.target, (labels.x @ model.anchors.T).argmax(-1))  # the most similar category
    strict = pseudo_labels(encoder, PSEUDO_PROMPTS[:10], limit=8, margin=0.01, seed=0)
    top = (labels.x @ model.anchors.T).topk(2, -1).values
    assert len(strict.target) == int(((top[:, 0] - top[:, 1]) > 0.01).sum())  # the margin filters
    assert len(pseudo_labels(encoder, PSEUDO_PROMPTS[:10], limit=8, margin=2.0, seed=0).target) == 0


def test_pseudo_labels_train_the_matchers_residual(seed_data, tmp_path):
    """With ``pseudo_weight`` > 0 the trained matcher agrees more with the pseudo labels than without it; the
    residual starts at zero, so a model saved before it existed loads unchanged."""
    from csrm.model.clause.trainer import pseudo_labels

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PSEUDO_PROMPTS))
    losses = {}
    for weight in (0.0, 3.0):
        cfg, _ = load_train_config(CLAUSE_YAML, [*train_overrides(seed_data, tmp_path, f"w{weight}"),
                                                 f"pseudo_label_prompts={prompts}", f"pseudo_weight={weight}",
                                                 "pseudo_margin=-1", "num_train_epochs=4"])
        summary = run_training(cfg)
        assert summary["pseudo_labelled_prompts"] == 10
        scorer = csrm.load(tmp_path / f"w{weight}", device="cpu")
        labels = pseudo_labels(scorer.predictor.features, read_json_list(prompts), limit=10, margin=-1.0, seed=0)
        with torch.no_grad():
            logits = scorer.model.category_logits(labels.x)
        losses[weight] = float(torch.nn.functional.cross_entropy(logits, labels.target))
        assert scorer.model.category_head.weight.abs().sum() > 0  # trained (aux targets alone move it too)
    assert losses[3.0] < losses[0.0]


def read_json_list(path: Path) -> list[str]:
    return list(dict.fromkeys(json.loads(path.read_text())))


def test_a_checkpoint_without_the_residual_loads_with_it_at_zero(model, tokenizer, tmp_path):
    from safetensors.torch import load_file, save_file

    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    assert "category_head.weight" in weights
    save_file({k: v for k, v in weights.items() if k != "category_head.weight"}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    loaded = ClauseCSRMModel.from_pretrained(tmp_path)
    assert torch.count_nonzero(loaded.category_head.weight) == 0
    x = torch.nn.functional.normalize(torch.randn(3, model.anchors.shape[1]), dim=-1)
    with torch.no_grad():
        assert torch.allclose(loaded.category_logits(x), loaded.match_scale * (x @ loaded.anchors.T))


def test_requests_and_responses_have_their_own_none_head(model):
    """Request screening (ungated windows) reads "none" from ``request_null_head``, responses from ``null_head``."""
    dim = model.anchors.shape[1]
    x = torch.nn.functional.normalize(torch.randn(2, 1, dim), dim=-1)
    content = ContentFeatures(x, torch.ones(2, 1, dtype=torch.bool), torch.tensor([[False], [True]]))
    before = model.state_dict()
    try:
        with torch.no_grad():
            model.request_null_head.bias.fill_(30.0)
            model.null_head.bias.fill_(-30.0)
            q, _, _ = model.match_content(content)
        assert q[0, 0, -1] > 0.99  # the request: "none"
        assert q[1, 0, -1] < 0.01  # the response: a category
    finally:
        model.load_state_dict(before)


def test_options_the_clause_family_lacks_are_named_not_swallowed(model, tokenizer):
    """bf16 and prefix_cache belong to the cross-encoder's predictor: set on a clause model they are an
    InputError naming the option; unset (None) or off (False) they are accepted (the family does neither)."""
    from csrm.base.errors import InputError

    for option in ("bf16", "prefix_cache"):
        with pytest.raises(InputError, match=f"field '{option}': the clause family does not support {option}=True"):
            Scorer(model, tokenizer, device="cpu", **{option: True})
    scorer = Scorer(model, tokenizer, device="cpu", bf16=False, prefix_cache=None)
    assert isinstance(scorer.predictor, ClausePredictor) and not scorer.bf16 and not scorer.prefix_cache


def test_the_residual_reads_content_relative_to_the_saved_training_mean(model, tmp_path):

    dim = model.anchors.shape[1]
    trained = ClauseCSRMModel(model.config, backbone=model.backbone)
    trained.load_state_dict(model.state_dict())
    with torch.no_grad():
        trained.category_head.weight.normal_()
        trained.content_mean.copy_(torch.nn.functional.normalize(torch.randn(dim), dim=0) * 0.3)
    x = torch.nn.functional.normalize(torch.randn(4, dim), dim=-1)
    with torch.no_grad():
        expected = trained.match_scale * (x @ trained.anchors.T) + (x - trained.content_mean) @ \
            trained.category_head.weight.T
        assert torch.allclose(trained.category_logits(x), expected, atol=1e-5)
        # the mean of the training windows gets no residual at all: only the similarity term is left
        mean = trained.content_mean[None]
        assert torch.allclose(trained.category_logits(mean), trained.match_scale * (mean @ trained.anchors.T))
    trained.save_pretrained(tmp_path / "new")
    assert torch.equal(ClauseCSRMModel.from_pretrained(tmp_path / "new").content_mean, trained.content_mean)


def test_the_category_cross_entropy_leaves_categories_without_labels_alone(tokenizer):
    """The matcher's category target is a softmax over the label space of the training data: with compliance and
    pair losses off, a batch labelled only with one category (and "none") moves that category's residual row
    and leaves the rows of every category no row is labelled with untouched (they say nothing either way)."""
    from csrm.model.clause.trainer import JudgeStep, build_table

    model = tiny_model(tokenizer, seed=2)
    with torch.no_grad():
        model.content_mean.normal_()  # a trained mean: the residual's input is not zero
        model.match_scale.fill_(1.0)  # a random encoder's windows are all alike: keep every class's share finite
    names = model.taxonomy.names
    cfg, _ = load_train_config(CLAUSE_YAML, ["compliance_weight=0", "reward_weight=0"])
    encoder = FeatureEncoder(model, tokenizer)
    rows = [{"config_text": CONFIG_A, "config_policy": "", "messages": [{"role": "user", "content": text}],
             "response": None, "label": 1, "categories": cats, "severity": sev, "is_refusal": False}
            for text, cats, sev in [("How do I hit someone hard?", [names[2]], 2),
                                    ("Where can I buy a gun?", [names[2]], 1),
                                    ("What is the weather like?", [], 0)]]
    table = build_table(encoder, rows, None, model.taxonomy, blind=False)
    judge = JudgeStep(model, cfg, aux_weight=1.0)
    model.category_head.weight.requires_grad_(True)
    with torch.no_grad():
        allowed = model.read_config(table.clauses)[0]
    loss, _ = judge(table, allowed, torch.arange(3), torch.zeros(0, dtype=torch.long))
    loss.backward()
    grad = model.category_head.weight.grad.abs().sum(-1)
    others = grad[[m for m in range(len(names)) if m != 2]]
    assert grad[2] > 0 and torch.all(others < 1e-4 * grad[2])  # zero up to rounding in the renormalised softmax


def test_category_transfer_retrains_without_each_category_and_reproduces_the_run(seed_data, trained, tmp_path,
                                                                                 capsys):
    """``tools.category_transfer``: on all rows with the run's seed the retrained judge reproduces the run's own
    validation AUROC; each held-out category's retraining saw exactly the training rows without it."""
    from tools import category_transfer as transfer

    tmp, _ = trained  # its feature cache is reused: the same data and settings
    assert train_cli.main([str(CLAUSE_YAML), *train_overrides(seed_data, tmp, "transfer")]) == 0
    capsys.readouterr()
    run = tmp / "transfer"
    evals = json.loads((run / "train_results.json").read_text())["eval"]
    out = tmp_path / "transfer.json"
    assert transfer.main([str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["validation"]["auroc"] == [pytest.approx(evals["eval_auroc"], abs=1e-6)]

    rows = [json.loads(line) for line in (seed_data / "examples.train.jsonl").open()][:200]
    val = [json.loads(line) for line in (seed_data / "examples.validation.jsonl").open()]
    assert result["categories"], "the seed corpus labels some categories"
    for name, entry in result["categories"].items():
        labelled = [r for r in rows if name in r["categories"] and r["severity"] > 0]
        assert labelled and entry["train_rows_left"] == 200 - sum(name in r["categories"] for r in rows)
        assert entry["validation_rows"] == sum(name in r["categories"] for r in val)
        assert 0.0 <= entry["auroc"][0] <= 1.0 and name[:40] in printed
    assert "mean over held-out categories" in printed
