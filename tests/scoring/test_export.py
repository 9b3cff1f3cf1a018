"""``csrm export``: a cross-encoder CSRM as a standard transformers reward model (pipeline, TRL GRPO with
``reward_funcs="<path>"``, a fresh process that never imports csrm), the clause CSRM's card-only export, the
model card and the hub arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scoring_fixtures import CONFIGS, PROMPTS, save, tiny_decoder, tiny_encoder

import csrm
from csrm.app import cli
from csrm.scoring.export import COMPLIANCE_FILE

ROWS = [  # (config, messages, response)
    (CONFIGS[0], [{"role": "user", "content": PROMPTS[0]}], "I can't help with that."),
    (CONFIGS[1], [{"role": "user", "content": PROMPTS[1]}], "The soldiers clash in the smoke; one falls."),
    (CONFIGS[2], [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": PROMPTS[2]}], "Overdose slows breathing; call emergency services."),
    (CONFIGS[0], [{"role": "user", "content": PROMPTS[0]}], None),  # request screening
]


def chat(config: str, messages: list[dict], response: str | None) -> list[dict]:
    return [{"role": "system", "content": config}, *messages] + (
        [{"role": "assistant", "content": response}] if response is not None else [])


def _csrm_model(kind: str, path: Path) -> Path:
    model, tok = (tiny_encoder if kind == "encoder" else tiny_decoder)()
    with torch.no_grad():
        model.reward_head.bias.fill_(0.7)
        model.compliance_head.bias.fill_(-0.2)
    model.config.temperature, model.config.threshold = 1.5, 0.4
    return save(model, tok, path)


@pytest.fixture(scope="module", params=["encoder", "decoder"])
def exported(request, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp(f"export_{request.param}")
    model = _csrm_model(request.param, root / "model")
    assert cli.main(["export", str(model), str(root / "out")]) == 0
    return model, root / "out"


def test_pipeline_gives_the_csrm_reward_and_config_documents_the_rest(exported):
    from transformers import AutoModelForSequenceClassification, pipeline

    model_dir, out = exported
    scorer = csrm.load(model_dir, device="cpu")
    config = json.loads((out / "config.json").read_text())
    section = config["csrm"]
    assert config["id2label"] == {"0": "reward"} and config.get("_name_or_path", "") == ""
    assert section["compliance"]["temperature"] == 1.5 and section["compliance"]["threshold"] == 0.4
    assert section["max_abs_reward_difference"] < 1e-3
    assert not any(str(v).startswith("/") for v in json.loads((model_dir / "config.json").read_text())["backbone"]
                   .values() if isinstance(v, str)), "the CSRM's own config.json keeps a local path"
    rm = pipeline("text-classification", model=str(out), device="cpu")
    texts = [rm.tokenizer.apply_chat_template(chat(*row), tokenize=False) for row in ROWS]
    got = [r["score"] for r in rm(texts, function_to_apply="none", add_special_tokens=False)]
    results = [scorer.score(c, m, r) for c, m, r in ROWS]
    expected = [r.reward - section["reward_bias"] for r in results]
    assert got == pytest.approx(expected, abs=1e-4)
    assert len({round(v, 4) for v in got}) == len(ROWS)
    # the compliance head, read as config.json says
    from safetensors.torch import load_file

    head = load_file(str(out / COMPLIANCE_FILE))
    seq = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    enc = rm.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    enc.pop("token_type_ids", None)
    mask = enc["attention_mask"]
    with torch.no_grad():
        if config["architectures"][0].startswith("Bert"):
            hidden = seq(**enc, output_hidden_states=True).hidden_states[-2]
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        else:
            hidden = getattr(seq, seq.base_model_prefix)(**enc).last_hidden_state
            pooled = hidden[torch.arange(len(texts)), mask.sum(1) - 1]
        p = torch.sigmoid((pooled @ head["weight"][0] + head["bias"][0]) / section["compliance"]["temperature"])
    assert p.tolist() == pytest.approx([r.p_comply for r in results], abs=1e-4)
    card = (out / "README.md").read_text()
    for heading in ("## How to use", "## Training data", "## Training recipe", "## Evaluation", "## Intended use",
                    "## Limits"):
        assert heading in card


@pytest.mark.slow
def test_a_fresh_process_loads_it_without_csrm(exported, tmp_path):
    model_dir, out = exported
    script = f"""
import importlib.abc, json, sys
class NoCsrm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "csrm" or name.startswith("csrm."):
            raise ImportError("csrm must not be imported")
sys.meta_path.insert(0, NoCsrm())
from transformers import AutoModelForSequenceClassification, AutoTokenizer
import torch
tok = AutoTokenizer.from_pretrained({str(out)!r})
model = AutoModelForSequenceClassification.from_pretrained({str(out)!r}, num_labels=1).eval()
text = tok.apply_chat_template({chat(*ROWS[1])!r}, tokenize=False)
enc = tok(text, add_special_tokens=False, return_tensors="pt")
with torch.no_grad():
    value = model(**enc).logits[0, 0].item()
assert not any(m == "csrm" or m.startswith("csrm.") for m in sys.modules)
print(json.dumps({{"reward": value}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    value = json.loads(done.stdout.strip().splitlines()[-1])["reward"]
    bias = json.loads((out / "config.json").read_text())["csrm"]["reward_bias"]
    assert value + bias == pytest.approx(csrm.load(model_dir, device="cpu").score(*ROWS[1]).reward, abs=1e-4)


def test_grpo_with_the_exported_path_as_reward_funcs(exported, tmp_path, monkeypatch):
    """TRL loads the string with AutoModelForSequenceClassification(num_labels=1); every reward it computes is
    the CSRM's reward of the (system config, prompt, completion) it rendered."""
    from datasets import Dataset
    from scoring_fixtures import tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer import grpo_trainer

    model_dir, out = exported
    tok = tokenizer(decoder=True)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    tok.model_input_names = ["input_ids", "attention_mask"]
    torch.manual_seed(0)
    policy = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    policy_dir = tmp_path / "policy"
    policy.save_pretrained(policy_dir)
    tok.save_pretrained(policy_dir)
    rows = [{"prompt": [{"role": "system", "content": c}, {"role": "user", "content": p}]}
            for c, p in zip(CONFIGS, PROMPTS, strict=True)]
    rendered: list[list[dict]] = []
    original = grpo_trainer.apply_chat_template

    def recording(example, processing_class, *args, **kwargs):
        if processing_class.name_or_path == str(out):
            rendered.append(example["messages"])
        return original(example, processing_class, *args, **kwargs)

    monkeypatch.setattr(grpo_trainer, "apply_chat_template", recording)
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=4, max_steps=1, use_cpu=True, bf16=False, report_to="none",
                      save_strategy="no", logging_steps=1, beta=0.0)
    trainer = GRPOTrainer(model=str(policy_dir), reward_funcs=str(out), args=args,
                          train_dataset=Dataset.from_list(rows + rows[:1]), processing_class=tok)
    reward_model = trainer.reward_funcs[0]
    assert type(reward_model).__name__.endswith("ForSequenceClassification")
    logits: list[float] = []
    reward_model.register_forward_hook(lambda mod, inp, output: logits.extend(output.logits[:, 0].tolist()))
    assert trainer.train().global_step == 1
    assert rendered and len(rendered) == len(logits)
    scorer = csrm.load(model_dir, device="cpu")
    bias = json.loads((out / "config.json").read_text())["csrm"]["reward_bias"]
    for messages, value in zip(rendered, logits, strict=True):
        config, turns, response = messages[0]["content"], messages[1:-1], messages[-1]["content"]
        assert value + bias == pytest.approx(scorer.score(config, turns, response).reward, abs=1e-4)


def test_clause_csrm_export_carries_remote_code_and_format_csrm_is_the_folder_plus_a_card(tmp_path):
    import transformers
    from transformers import AutoTokenizer

    from csrm.base.paths import resolve_model_name
    from csrm.model.clause.modeling import ClauseCSRMModel
    from csrm.scoring.clause_export import AUTO_MAP, REMOTE_FILES

    tok = AutoTokenizer.from_pretrained(resolve_model_name("minilm"))
    torch.manual_seed(0)
    backbone = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64)
    model = ClauseCSRMModel.from_backbone_config(backbone, tokenizer=tok).eval()
    model.save_pretrained(tmp_path / "clause")
    tok.save_pretrained(tmp_path / "clause")
    # the default (auto = transformers): remote code named by auto_map, checked against csrm.load at export
    assert cli.main(["export", str(tmp_path / "clause"), str(tmp_path / "std")]) == 0
    config = json.loads((tmp_path / "std" / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and all((tmp_path / "std" / f).is_file() for f in REMOTE_FILES)
    assert config["csrm"]["max_abs_p_comply_difference"] <= 1e-5
    assert config["csrm"]["max_abs_reward_difference"] <= 1e-5
    card = (tmp_path / "std" / "README.md").read_text()
    assert "trust_remote_code=True" in card and "model.score(" in card and "custom_code" in card
    # --format csrm: the folder as is, plus a card for csrm.load
    assert cli.main(["export", str(tmp_path / "clause"), str(tmp_path / "out"), "--format", "csrm"]) == 0
    assert not (tmp_path / "out" / REMOTE_FILES[1]).exists()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "clause-reading CSRM" in card and "csrm.load" in card and "several frozen-encoder passes" in card
    assert "pip install -e ." in card and "pip install csrm`" not in card
    item = (CONFIGS[0], PROMPTS[0], "No.")
    reference = csrm.load(tmp_path / "clause", device="cpu").score(*item)
    assert csrm.load(tmp_path / "out", device="cpu").score(*item) == reference
    assert csrm.load(tmp_path / "std", device="cpu").score(*item) == reference


def test_card_eval_table_and_arguments(tmp_path, capsys, monkeypatch):
    model = _csrm_model("encoder", tmp_path / "run" / "model")
    (tmp_path / "run" / "report.json").write_text(json.dumps({"benchmarks": {"cosalign_test": {"csrm": {
        "n_test": 267, "stored": {"f1": 0.668, "auroc": 0.55, "auprc": 0.571, "ece": 0.119, "brier": 0.25}},
        "zero_shot": {"n_test": 267, "stored": {"f1": 0.5}}}}}))
    (model / "train_config.yaml").write_text("dataset_path: /somewhere/runs/augment/shared\nlearning_rate: 3.0e-5\n")
    # --push-to-hub: checked before any work (a bad id; offline), the folder is not written
    assert cli.main(["export", str(model), str(tmp_path / "a"), "--push-to-hub", "not-an-id"]) == 2
    assert "owner/name" in capsys.readouterr().err
    assert cli.main(["export", str(model), str(tmp_path / "a"), "--push-to-hub", "me/csrm"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err and not (tmp_path / "a").exists()
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload", kwargs["repo_id"], sorted(os.listdir(kwargs["folder_path"]))))
            return "https://hub/commit"

    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert cli.main(["export", str(model), str(tmp_path / "a"), "--push-to-hub", "me/csrm", "--private"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["pushed_to"] == "me/csrm" and printed["architectures"] == ["BertForSequenceClassification"]
    assert calls[0] == ("create", "me/csrm", {"private": True, "exist_ok": True})
    assert calls[1][0] == "upload" and {"README.md", "config.json", COMPLIANCE_FILE} <= set(calls[1][2])
    card = (tmp_path / "a" / "README.md").read_text()
    assert "| cosalign_test | csrm | 267 | 66.8 | 55.0 | 57.1 | 0.119 | 0.250 |" in card
    assert "| cosalign_test | zero_shot | 267 | 50.0 |" in card  # a baseline: in the table only
    assert "`shared`" in card and "/somewhere" not in card
    # the metadata, read back with huggingface_hub: model-index results are this model's row only
    from huggingface_hub import ModelCard

    data = ModelCard.load(tmp_path / "a" / "README.md").data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    results = {r.metric_type: r for r in data.eval_results}
    assert set(results) == {"f1", "roc_auc", "average_precision", "ece", "brier_score"}
    assert results["f1"].metric_value == pytest.approx(0.668) and results["ece"].metric_value == pytest.approx(0.119)
    assert {(r.dataset_type, r.dataset_split, r.task_type) for r in data.eval_results} == {
        ("cosalign_test", "test", "text-classification")}
    # a non-empty folder that is not an earlier export (tests/base/test_io_safety.py) and a bad format are refused
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.txt").write_text("x")
    assert cli.main(["export", str(model), str(tmp_path / "c")]) == 2
    assert cli.main(["export", str(model), str(tmp_path / "b"), "--format", "onnx"]) == 2
