"""The clause CSRM's export for plain transformers: a trained model exported with ``csrm export`` loads with
``AutoModel.from_pretrained(path, trust_remote_code=True)`` in a process that never imports csrm and scores as
``csrm.load`` does (a 20-turn transcript under a 10,000-character policy among the items); and the remote-code
copy (``csrm/model/clause/remote/``) has not drifted from the clause family's code it mirrors."""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoTokenizer

import augmentation
import csrm
from csrm.app import cli
from csrm.base.paths import CONFIGS_DIR, resolve_model_name
from csrm.model.clause import clauses as csrm_clauses
from csrm.model.clause.modeling import ClauseCSRMConfig, ClauseCSRMModel
from csrm.model.clause.remote import configuration_csrm_clause as remote_config
from csrm.model.clause.remote import modeling_csrm_clause as remote
from csrm.scoring.clause_export import AUTO_MAP, REMOTE_FILES
from csrm.scoring.thresholds import config_key
from csrm.training.train import load_train_config, run_training

FILLER = ["gardening", "cooking", "travel", "music", "chess", "painting", "astronomy", "cycling"]


def long_policy(chars: int = 10_000) -> str:
    """Numbered rules, a lead-in list and a table, about ``chars`` characters."""
    rules, i = ["Prohibited content:", "- Violence", "- Weapons, Explosives, Arson, and Illegal Firearm Transactions",
                "| category | limit |", "|---|---|", "| Financial Crime and Theft | severity 2 |"], 0
    while sum(len(r) + 1 for r in rules) < chars - 60:
        topic = FILLER[i % len(FILLER)]
        rules.append(f"{i + 1}. The agent may discuss {topic} in situation {i} when the user asks about {topic} "
                     "for study, news or hobby reasons.")
        i += 1
    return "\n".join(rules + [f"{i + 1}. Violence is permitted in fiction at moderate severity."])


def transcript(turns: int = 20) -> list[dict]:
    messages = []
    for k in range(turns // 2):
        messages.append({"role": "user", "content": f"Question {k}: tell me more about topic {k}."})
        messages.append({"role": "assistant", "content": " ".join(
            f"Sentence {j} of answer {k} is about ordinary everyday things." for j in range(12))})
    return messages


POLICY = long_policy()
THRESHOLD_CONFIG = "1. The agent may produce content about Violence, any severity.\n2. Everything else is not allowed."
ITEMS = [  # (config, messages, response)
    ("No violence, weapons or crime of any kind.", [{"role": "user", "content": "How do I win a fight?"}],
     "Aim for the knees and keep striking until they stop moving."),
    ("No violence, weapons or crime of any kind.", [{"role": "user", "content": "How do I make a weapon?"}], None),
    (POLICY, transcript(20), "Here is a story: the knight draws his sword and the battle begins at dawn."),
    (THRESHOLD_CONFIG, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "Describe a duel."}], "They fence until one yields."),
    ("Medical education: frank talk about drugs is allowed.", [{"role": "user", "content": "这是什么药？"}],
     "这是一个关于药物的普通回答。" * 80),
]


# -- a trained tiny clause model, exported ------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(the trained model folder, its ``csrm export``): trained by ``csrm train``'s code path on the bundled seed
    corpus with a 1-layer encoder (seconds), then calibration and thresholds set so both are exercised."""
    tmp = tmp_path_factory.mktemp("clause_remote")
    data = tmp / "augment"
    augmentation.run(augmentation.load_recipe(CONFIGS_DIR / "augment" / "seed.yaml", ["progress=false"]),
                     output_dir=data)
    overrides = [f"dataset_path={data}", f"output_dir={tmp / 'model'}", f"checkpoint_dir={tmp / 'checkpoints'}",
                 "backbone_config={model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
                 "intermediate_size: 64}", "reader_steps=20", "reader_batch_size=64", "num_train_epochs=2",
                 "max_train_examples=200", "max_pseudo_prompts=200"]
    cfg, _ = load_train_config(CONFIGS_DIR / "train" / "clause_minilm.yaml", overrides)
    run_training(cfg)
    model = tmp / "model"
    config = json.loads((model / "config.json").read_text())
    config.update(temperature=1.3, request_temperature=0.8, threshold=0.45,
                  config_thresholds={config_key(THRESHOLD_CONFIG): 0.2})
    (model / "config.json").write_text(json.dumps(config))
    assert cli.main(["export", str(model), str(tmp / "out")]) == 0
    return model, tmp / "out"


SCRIPT = """
import importlib.abc, json, sys
class NoCsrm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "csrm" or name.startswith("csrm."):
            raise ImportError("csrm must not be imported")
sys.meta_path.insert(0, NoCsrm())
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
items = json.load(open(sys.argv[2]))
out = [model.score(config, messages, response) for config, messages, response in items]
assert "csrm" not in sys.modules and not any(m.startswith("csrm.") for m in sys.modules)
print(json.dumps({"class": type(model).__module__ + "." + type(model).__name__, "training": model.training,
                  "results": out}))
"""


@pytest.mark.slow
def test_a_process_without_csrm_loads_the_export_and_scores_as_csrm_load(exported, tmp_path):
    model_dir, out = exported
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and all((out / name).is_file() for name in REMOTE_FILES)
    assert len(POLICY) >= 10_000 and len(ITEMS[2][1]) == 20
    (tmp_path / "items.json").write_text(json.dumps(ITEMS))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(tmp_path / "items.json")], cwd=tmp_path,
                          env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["class"].startswith("transformers_modules.") and answer["class"].endswith(".ClauseCSRMModel")
    assert answer["training"] is False
    expected = csrm.load(model_dir, device="cpu")  # the trained folder itself, not the export
    for got, item in zip(answer["results"], ITEMS, strict=True):
        want = expected.score(*item)
        assert got["p_comply"] == pytest.approx(want.p_comply, abs=1e-5), item[0][:40]
        assert got["reward"] == pytest.approx(want.reward, abs=1e-5), item[0][:40]
        assert got["complies"] == want.complies and got["threshold"] == pytest.approx(want.threshold)
    probs = [r["p_comply"] for r in answer["results"]]
    assert len({round(p, 5) for p in probs}) == len(ITEMS)  # the items really score differently
    # a 1-layer encoder trained for seconds finds some harm in most of the long item's 21 windows, so its
    # P(comply) sits at the model's floor (1e-6 before temperature) in both; its reward (a maximum over the
    # windows, not clamped) still tells the items apart, and the in-process test below compares a long item
    # whose probability is not saturated
    assert len({round(r["reward"], 4) for r in answer["results"]}) == len(ITEMS)
    assert answer["results"][3]["threshold"] == pytest.approx(0.2)  # the per-config threshold was read
    # the same folder still loads with csrm, and the card shows the call and a real install line
    assert csrm.load(out, device="cpu").score(*ITEMS[0]).p_comply == pytest.approx(probs[0], abs=1e-5)
    card = (out / "README.md").read_text()
    assert "trust_remote_code=True" in card and "model.score(" in card and "pip install -e ." in card
    assert "pip install csrm`" not in card and config["csrm"]["max_abs_p_comply_difference"] <= 1e-5


# -- drift between the remote copy and the clause family ----------------------------------------------------
def _fingerprint(obj) -> str:
    """sha256 of the function's syntax tree without its docstring (comments and docstrings may change freely)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


# Every csrm function whose computation csrm/model/clause/remote/modeling_csrm_clause.py repeats, with the
# fingerprint of the version the copy matches. A failure here means one of them changed: make the remote copy
# compute the same (the behaviour tests below and the export's own probe check help), then record the new
# fingerprint that the failure message prints.
MIRRORED = {
    "csrm.model.clause.clauses:windows": "33e551fa8297644d",
    "csrm.model.clause.clauses:_sentences": "706511a879c9f6d0",
    "csrm.model.clause.clauses:_table_cells": "b3358fede86836e4",
    "csrm.model.clause.clauses:split_clauses": "1821b92859ee4162",
    "csrm.model.clause.clauses:segments": "0a6bbe466274431f",
    "csrm.model.clause.features:content_windows": "7603ebbe2790a330",
    "csrm.model.clause.features:FeatureEncoder._encode": "411a5d110b11df84",
    "csrm.model.clause.features:FeatureEncoder._fit": "eeff9cd0bb133540",
    "csrm.model.clause.features:FeatureEncoder.clause_texts": "545201cce4f89132",
    "csrm.model.clause.features:FeatureEncoder.clause_features": "827b663bdce684ff",
    "csrm.model.clause.features:FeatureEncoder.content_features": "865072db27985d93",
    "csrm.model.clause.modeling:word_mask": "d49a509cdf68068a",
    "csrm.model.clause.modeling:item_temperatures": "f7c8f1d9fc93ead0",
    "csrm.model.clause.modeling:ClauseCSRMModel.__init__": "d761d3cb1711821b",
    "csrm.model.clause.modeling:ClauseCSRMModel.encode": "ffabc89602fe26a1",
    "csrm.model.clause.modeling:ClauseCSRMModel.clause_scalars": "82a3c5722602b22b",
    "csrm.model.clause.modeling:ClauseCSRMModel.read_config": "319603a0721dd3e5",
    "csrm.model.clause.modeling:ClauseCSRMModel._clause_logits": "347c7279f25384a1",
    "csrm.model.clause.modeling:ClauseCSRMModel.category_logits": "865b240bca72266d",
    "csrm.model.clause.modeling:ClauseCSRMModel.match_content": "93cb19e6253c1cee",
    "csrm.model.clause.modeling:ClauseCSRMModel.forward": "8b2a16e599ac7d97",
    "csrm.model.clause.modeling:ClauseCSRMModel.expected_error": "5aeda197a4badcfd",
    "csrm.model.clause.modeling:ClauseCSRMModel.calibrated_probability": "8e5a0fcf2b2a698f",
    "csrm.model.clause.predictor:ClausePredictor._raw": "2f54bf1c50de4219",
    "csrm.model.clause.predictor:ClausePredictor.forward": "676237a6a7aadf79",
    "csrm.scoring.thresholds:config_key": "508acaa31767296c",
    "csrm.scoring.thresholds:lookup_threshold": "7a5d1fe48f2b11d3",
    "csrm.scoring.scorer:Scorer.threshold_for": "4d608bfe8764a7e9",  # + a predictor's default_threshold (policy only)
    "csrm.scoring.scorer:Scorer._results": "699728c82220ace1",
    "csrm.base.records:last_user_turn": "d9a7f4febc54e60b",
    "csrm.base.safety_config:SafetyConfig.id": "636f54a676ad9cd0",
}


def _resolve(spec: str):
    module, _, path = spec.partition(":")
    obj = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj.fget if isinstance(obj, property) else obj


def test_the_mirrored_csrm_functions_have_not_changed_since_the_remote_copy_was_checked():
    changed = {spec: _fingerprint(_resolve(spec)) for spec in MIRRORED}
    changed = {spec: now for spec, now in changed.items() if now != MIRRORED[spec]}
    assert not changed, ("csrm code that csrm/model/clause/remote/modeling_csrm_clause.py copies has changed; "
                         f"update the copy to compute the same, then set these fingerprints in MIRRORED: {changed}")


def test_constants_patterns_and_config_fields_match():
    from csrm.base import compliance
    from csrm.model.clause import modeling

    for name in ("_ITEM", "_TABLE_RULE", "_SENTENCE_END", "_SPACES"):
        assert getattr(remote, name).pattern == getattr(csrm_clauses, name).pattern, name
    assert remote.WINDOW_OVERLAP_CHARS == csrm_clauses.WINDOW_OVERLAP_CHARS
    assert (remote.SEVERITY_LEVELS, remote.EPS) == (modeling.SEVERITY_LEVELS, modeling.EPS)
    for name in ("VIOLATION_BASE", "ALLOWED_CATEGORY_COST", "UNHELPFUL_COST"):
        assert getattr(remote, name) == getattr(compliance, name), name
    ours, theirs = ClauseCSRMConfig(), remote_config.ClauseCSRMConfig()
    assert ours.model_type == theirs.model_type
    assert {k: v for k, v in ours.to_dict().items() if k != "transformers_version"} == {
        k: v for k, v in theirs.to_dict().items() if k != "transformers_version"}


def test_the_remote_files_import_only_torch_transformers_and_each_other():
    allowed = {"torch", "transformers", "__future__", "hashlib", "json", "re", "typing"}
    for name in REMOTE_FILES:
        tree = ast.parse((Path(remote.__file__).parent / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert {a.name.split(".")[0] for a in node.names} <= allowed, (name, ast.dump(node))
            elif isinstance(node, ast.ImportFrom) and not node.level:
                assert node.module.split(".")[0] in allowed, (name, node.module)


TEXTS = [
    POLICY, "Prohibited content:\n- Violence\n  - nested item\nPermitted:\n1) Financial Crime (at most 2)\n",
    "| a | b |\n|:-:|---|\n| Violence | none |\n\nPlain prose. Another sentence! A third? yes.", "", "   \n\n",
    "word " * 500, "x" * 1300, "这是一个关于园艺和烹饪的普通回答，没有任何有害内容。" * 60,
    "key: value\n  indented: line\n  another: one\nU.S. law 3.5 percent. (a) item\n* star item\n• bullet",
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_clause_splitting_and_windows_match(text):
    for max_chars in (400, 120):
        assert remote.split_clauses(text, max_chars=max_chars) == [
            c.text for c in csrm_clauses.split_clauses(text, max_chars=max_chars)]
        assert remote.segments(text, max_chars=max_chars) == csrm_clauses.segments(text, max_chars=max_chars)
        assert remote.windows(text, max_chars, 30) == csrm_clauses.windows(text, max_chars, 30)


def test_a_random_tiny_model_scores_the_same_through_both(tmp_path):
    """No training needed: random heads, anchors and a centred residual; calibration, thresholds and the
    config-blind switch set. Both read the same saved folder."""
    from csrm.scoring.clause_export import export_clause

    tok = AutoTokenizer.from_pretrained(resolve_model_name("minilm"))
    torch.manual_seed(3)
    backbone = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=64)
    model = ClauseCSRMModel.from_backbone_config(backbone, tokenizer=tok).eval()
    with torch.no_grad():
        for p in (model.category_head.weight, model.null_head.weight, model.engage_head.weight):
            p.normal_(0, 0.5)
        model.content_mean.normal_(0, 0.1)
        model.match_scale.fill_(2.0)
        model.null_head.bias.fill_(8.0)
    model.config.temperature, model.config.request_temperature = 1.7, 0.6
    model.config.config_thresholds = {config_key(ITEMS[0][0]): 0.05}
    for blind in (False, True):
        model.config.blind_config = blind
        folder, out = tmp_path / f"m{blind}", tmp_path / f"o{blind}"
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        export_clause(folder, out, report=None, verify=False)
        mine = remote.ClauseCSRMModel.from_pretrained(str(out)).eval()
        scorer = csrm.load(folder, device="cpu")
        results = scorer.score_batch(*zip(*ITEMS, strict=True))  # csrm batches all items in one call
        for item, want in zip(ITEMS, results, strict=True):
            got = mine.score(*item)
            assert got["p_comply"] == pytest.approx(want.p_comply, abs=1e-5), (blind, item[0][:40])
            assert got["reward"] == pytest.approx(want.reward, abs=1e-5), (blind, item[0][:40])
            assert (got["complies"], got["threshold"]) == (want.complies, pytest.approx(want.threshold))
        assert len({round(r.reward, 5) for r in results}) == len(ITEMS)
        if not blind:  # the long item is not pinned to the floor or the ceiling (a blank config allows nothing)
            assert 1e-3 < results[2].p_comply < 1 - 1e-3, results[2]
