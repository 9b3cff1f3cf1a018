"""The model card (``README.md``) ``csrm export`` writes: data, recipe, evaluation table, intended use, limits.

Everything comes from files the training run left: ``train_config.yaml`` and ``train_results.json`` in the
model folder, ``calibration.json`` and ``report.json`` of a ``csrm run`` (the folder above the model, or
``--report``). What is missing is said to be missing, not invented.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

EVAL_COLUMNS = (("F1", "f1"), ("AUROC", "auroc"), ("AUPRC", "auprc"), ("ECE", "ece"), ("Brier", "brier"))


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def find_report(model_dir: Path, report: str | Path | None) -> dict[str, Any]:
    if report is not None:
        return _json(Path(report))
    for candidate in (model_dir / "report.json", model_dir.parent / "report.json"):
        if candidate.is_file():
            return _json(candidate)
    return {}


def _pct(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value:.3f}" if key in {"ece", "brier"} else f"{100 * value:.1f}"


def eval_table(report: dict[str, Any]) -> list[str]:
    """Markdown rows: benchmark x model, headline view at the stored threshold (``csrm run``'s report.json)."""
    rows = []
    for bench, models in (report.get("benchmarks") or {}).items():
        for label, entry in (models or {}).items():
            stored = entry.get("stored") or {}
            rows.append("| " + " | ".join([bench, label, str(entry.get("n_test", "–")),
                                           *[_pct(k, stored.get(k)) for _, k in EVAL_COLUMNS]]) + " |")
    if not rows:
        return []
    header = ["benchmark", "model", "n test", *[c for c, _ in EVAL_COLUMNS]]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows]


def _data_lines(config: dict[str, Any], results: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    lines = []
    if config.get("dataset_path"):
        lines.append(f"- Training data: the `csrm augment` output `{Path(str(config['dataset_path'])).name}` "
                     "(safety configs synthesised over the CoSA risk taxonomy, labels from csrm's compliance rule)")
    for split, block in (manifest.get("examples") or {}).items():
        lines.append(f"- {split}: {block.get('count')} examples ({100 * block.get('compliant_fraction', 0):.1f}% "
                     f"compliant), {(manifest.get('pairs') or {}).get(split, {}).get('count', 0)} pairs")
    if results.get("examples_seen") is not None:
        lines.append(f"- Seen in training: {results.get('examples_seen')} examples and {results.get('pairs_seen')} "
                     "preference pairs")
    return lines or ["- Not recorded (no train_config.yaml / train_results.json in the model folder)."]


def _recipe_lines(config: dict[str, Any], results: dict[str, Any]) -> list[str]:
    keys = ("architecture", "model_name_or_path", "max_length", "learning_rate", "num_train_epochs", "max_steps",
            "per_device_train_batch_size", "pairs_per_batch", "compliance_weight", "reward_weight", "margin_scale",
            "peft_config", "bf16", "deepspeed")
    lines = [f"- `{k}`: `{config[k]}`" for k in keys if k in config]
    if results.get("global_step") is not None:
        lines.append(f"- {results['global_step']} optimizer steps in {results.get('train_seconds')} s")
    return lines or ["- Not recorded."]


def write_card(folder: Path, model_dir: Path, *, kind: str, report: str | Path | None = None,
               architecture: str | None = None, max_diff: float | None = None, reward_bias: float = 0.0) -> Path:
    """Write ``folder/README.md``. ``kind``: ``transformers`` (a standard export), ``csrm`` or ``csrm_clause``
    (the CSRM folder itself, loaded with ``csrm.load``)."""
    model_dir = Path(model_dir)
    config = _yaml(model_dir / "train_config.yaml")
    results = _json(model_dir / "train_results.json")
    run_dir = model_dir.parent
    manifest = _json(run_dir / "data" / "manifest.json")
    calibration = _json(run_dir / "calibration.json")
    evaluation = find_report(model_dir, report)
    saved = _json(model_dir / "config.json")
    tags = ["reward-model", "safety", "csrm"] + (["text-classification"] if kind == "transformers" else [])
    lines = ["---", "library_name: " + ("transformers" if kind == "transformers" else "csrm"),
             "tags:", *[f"- {t}" for t in tags], "---", "",
             "# Configurable safety reward model (csrm)", "",
             "Reads **(safety config, conversation, response)** and returns a reward that ranks responses "
             "(helpful and compliant best; among violations, the more severe the lower) and a calibrated "
             "probability that the response complies with *that* config. Changing safety behaviour means "
             "editing the config text, not retraining.", ""]
    lines += ["## How to use", ""]
    if kind == "transformers":
        lines += [f"A standard `{architecture}` (one label, index 0 = reward); loading it needs no csrm install.",
                  "The safety config goes in the **system message**; the last assistant message is the response "
                  "under review (no assistant message: the request itself is screened). The tokenizer's chat "
                  "template writes the special tokens, so tokenize with `add_special_tokens=False`.", "",
                  "```python", "from transformers import pipeline", "",
                  "rm = pipeline(\"text-classification\", model=\"PATH\")",
                  "messages = [{\"role\": \"system\", \"content\": \"No weapons or violence.\"},",
                  "            {\"role\": \"user\", \"content\": \"How do I make a weapon?\"},",
                  "            {\"role\": \"assistant\", \"content\": \"I can't help with that.\"}]",
                  "text = rm.tokenizer.apply_chat_template(messages, tokenize=False)",
                  "reward = rm(text, function_to_apply=\"none\", add_special_tokens=False)[0][\"score\"]",
                  "```", "",
                  "TRL: `GRPOTrainer(..., reward_funcs=\"PATH\")` with conversational prompts whose system "
                  "message is the config.",
                  f"The logit is the CSRM reward minus `csrm.reward_bias` ({reward_bias:.4g}; 0 unless the "
                  "architecture's score layer has no bias); rankings and advantages are unaffected.",
                  "The compliance probability, temperature and thresholds are documented under `csrm` in "
                  "`config.json` (compliance head weights in `csrm_compliance_head.safetensors`).",
                  f"Checked at export: largest |logit + reward_bias - csrm reward| on probe items = "
                  f"{max_diff if max_diff is not None else 'not checked'}.", ""]
    else:
        lines += ["Load it with csrm, the supported path: `pip install csrm`, then", "",
                  "```python", "import csrm", "", "scorer = csrm.load(\"PATH\")",
                  "result = scorer.score(\"No weapons or violence.\", \"How do I make a weapon?\", "
                  "\"I can't help with that.\")",
                  "result.p_comply, result.reward, result.complies", "```", ""]
        if kind == "csrm_clause":
            lines += ["This is a **clause-reading CSRM**: it splits the config into clauses and the content into "
                      "windows and runs several frozen-encoder passes per item (one per distinct clause and "
                      "window, cached) before its small heads combine them by the compliance rule. No "
                      "single-forward `transformers` architecture reproduces that, so there is no "
                      "`AutoModelForSequenceClassification` export; in TRL pass `csrm.scoring.reward_funcs.CSRMReward"
                      "(csrm.load(\"PATH\"))` as a reward function.", ""]
    lines += ["## Training data", "", *_data_lines(config, results, manifest), "",
              "## Training recipe", "", *_recipe_lines(config, results), ""]
    if calibration:
        lines += [f"Calibration: temperature {calibration.get('temperature', 1):.3f} fitted on "
                  f"{calibration.get('n')} validation examples.", ""]
    elif saved.get("temperature") is not None:
        lines += [f"Calibration temperature: {float(saved['temperature']):.3f}.", ""]
    table = eval_table(evaluation)
    lines += ["## Evaluation", ""]
    if table:
        lines += ["Headline view, positive class = violation, at the stored threshold (percent except ECE/Brier):",
                  "", *table, ""]
    else:
        ev = results.get("eval") or {}
        if ev:
            lines += [f"Held-out validation split during training: F1 {_pct('f1', ev.get('eval_f1'))}, AUROC "
                      f"{_pct('auroc', ev.get('eval_auroc'))}, ECE {_pct('ece', ev.get('eval_ece'))}, pair "
                      f"accuracy {_pct('f1', ev.get('eval_pair_accuracy'))}. No benchmark report was found.", ""]
        else:
            lines += ["No evaluation report was found (run `csrm eval`, or export with `--report report.json`).",
                      ""]
    lines += ["## Intended use", "",
              "- Judging or ranking assistant responses (or screening requests) against a natural-language "
              "safety config: RLHF / GRPO / DPO reward and pair selection, best-of-n, offline evaluation.",
              "- The config should resemble the training configs: a policy over the CoSA risk categories (which "
              "harms are allowed, up to which severity).", "",
              "## Limits", "",
              "- A judge, not a guarantee: scores are errors-included estimates; check the evaluation table "
              "before relying on it, and keep a human in the loop for consequential decisions.",
              "- Calibration holds on data like the validation split; on unseen configs and domains the "
              "probabilities drift (see the ECE column).",
              "- Rules that name no risk category (\"always mention X\") are read only as text.",
              "- Inputs longer than the model's `max_length` are cut; only `csrm.load` applies csrm's "
              "truncation rule (oldest turns first, config last)." if kind == "transformers" else
              "- Very long configs and transcripts cost one encoder pass per clause or window.",
              "- English only in training.", ""]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
