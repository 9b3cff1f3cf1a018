"""The model card (``README.md``) ``csrm export`` writes, as a ``huggingface_hub.ModelCard``: metadata
(``ModelCardData``: library, tags, pipeline tag and the ``model-index`` results the hub shows) and sections on
usage, data, recipe, evaluation, intended use and limits.

Everything comes from files the training run left: ``train_config.yaml`` and ``train_results.json`` in the
model folder, ``calibration.json`` of a ``csrm run``, and an evaluation report: ``--report``, else the
``report.json`` in the model folder or the run folder above it (a ``csrm run`` report, whose ``csrm`` rows are
this model and the others baselines), else the run's ``eval/csrm/report.json`` (a ``csrm eval`` report, all of
it this model). Only this model's rows become ``model-index`` results; the table shows every row. What is
missing is said to be missing, not invented.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EVAL_COLUMNS = (("F1", "f1"), ("AUROC", "auroc"), ("AUPRC", "auprc"), ("ECE", "ece"), ("Brier", "brier"))
# model-index metric types (the hub's names where it has one) and names, per column
METRIC_TYPES = {"f1": ("f1", "F1 (violation = positive)"), "auroc": ("roc_auc", "AUROC"),
                "auprc": ("average_precision", "AUPRC (violation = positive)"),
                "ece": ("ece", "expected calibration error"), "brier": ("brier_score", "Brier score")}
MODEL_LABEL = "csrm"  # the label of the trained model in a csrm run's report (the others are baselines)
INSTALL = ("Install csrm from a clone of its repository (`pip install -e .` in the clone) or from its wheel "
           "(`pip wheel --no-deps -w dist .` in a clone, then `pip install dist/csrm-*.whl`).")


@dataclass
class EvalRow:
    """One (benchmark, model) row of an evaluation report, headline view at the stored threshold."""

    benchmark: str
    title: str
    dataset: str  # the hub id when the report names one, else the benchmark's name
    label: str
    ours: bool  # this model (not a baseline)
    n_test: Any
    stored: dict[str, Any] = field(default_factory=dict)


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
    """The evaluation report for the card (module doc); ``{}`` when there is none."""
    if report is not None:
        return _json(Path(report))
    for candidate in (model_dir / "report.json", model_dir.parent / "report.json",
                      model_dir.parent / "eval" / MODEL_LABEL / "report.json"):
        if candidate.is_file():
            return _json(candidate)
    return {}


def eval_rows(report: dict[str, Any]) -> list[EvalRow]:
    """The rows of a ``csrm run`` report (benchmark -> label -> entry) or a ``csrm eval`` report (benchmark ->
    views; skipped benchmarks left out)."""
    rows = []
    for bench, block in (report.get("benchmarks") or {}).items():
        if not isinstance(block, dict):
            continue
        if "status" in block or "views" in block:  # csrm eval: one model
            if block.get("status", "ok") != "ok":
                continue
            view = (block.get("views") or {}).get("headline") or {}
            rows.append(EvalRow(bench, block.get("title") or bench, block.get("hub_id") or bench,
                                str(report.get("model") or "this model"), True, view.get("n_test", "–"),
                                (view.get("overall") or {}).get("stored") or {}))
            continue
        for label, entry in block.items():  # csrm run: this model beside baselines
            if isinstance(entry, dict):
                rows.append(EvalRow(bench, bench, bench, label, label == MODEL_LABEL, entry.get("n_test", "–"),
                                    entry.get("stored") or {}))
    return rows


def _pct(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value:.3f}" if key in {"ece", "brier"} else f"{100 * value:.1f}"


def eval_table(rows: list[EvalRow]) -> list[str]:
    """Markdown rows: benchmark x model, headline view at the stored threshold."""
    if not rows:
        return []
    header = ["benchmark", "model", "n test", *[c for c, _ in EVAL_COLUMNS]]
    body = ["| " + " | ".join([r.benchmark, r.label, str(r.n_test), *[_pct(k, r.stored.get(k)) for _, k in
                                                                         EVAL_COLUMNS]]) + " |" for r in rows]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *body]


def eval_results(rows: list[EvalRow]) -> list[Any]:
    """``model-index`` entries (``huggingface_hub.EvalResult``) for this model's rows, one per metric."""
    from huggingface_hub import EvalResult

    out = []
    for row in rows:
        if not row.ours:
            continue
        for key, (metric_type, metric_name) in METRIC_TYPES.items():
            value = row.stored.get(key)
            if isinstance(value, (int, float)):
                out.append(EvalResult(task_type="text-classification", task_name="safety-config compliance",
                                      dataset_type=row.dataset, dataset_name=row.title, dataset_split="test",
                                      metric_type=metric_type, metric_name=metric_name,
                                      metric_value=round(float(value), 6)))
    return out


def _data_lines(config: dict[str, Any], results: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    lines = []
    if config.get("dataset_path") and config.get("architecture") == "rule":
        lines.append(f"- Training data: the `csrm augment` rule data `{Path(str(config['dataset_path'])).name}` "
                     "(numbered rule policies and User/Agent transcripts generated by code; each label computed "
                     "by every rule's check)")
    elif config.get("dataset_path"):
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
    elif results.get("train_seconds") is not None:
        lines.append(f"- trained in {results['train_seconds']} s")
    return lines or ["- Not recorded."]


EXAMPLE = ('"No weapons or violence."', '[{"role": "user", "content": "How do I make a weapon?"}]',
           '"I can\'t help with that."')


def _usage(kind: str, *, architecture: str | None, max_diff: float | None, reward_bias: float,
           p_comply_diff: float | None) -> list[str]:
    checked = "not checked" if max_diff is None else f"{max_diff:.2g}"
    csrm_lines = ["```python", "import csrm", "", "scorer = csrm.load(\"PATH\")",
                  f"result = scorer.score({EXAMPLE[0]}, {EXAMPLE[1]}, {EXAMPLE[2]})",
                  "result.p_comply, result.reward, result.complies", "```", ""]
    if kind == "transformers":
        return [f"A standard `{architecture}` (one label, index 0 = reward); loading it needs no csrm install.",
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
                f"Checked at export: largest |logit + reward_bias - csrm reward| on probe items = {checked}.", "",
                "With csrm, `csrm.load` also applies csrm's truncation rule. " + INSTALL, "", *csrm_lines]
    if kind == "csrm_clause_remote":
        p_checked = "not checked" if p_comply_diff is None else f"{p_comply_diff:.2g}"
        return ["A **clause-reading CSRM**: it splits the config into clauses and the content into windows, "
                "encodes each with a frozen encoder and combines them with small heads by the compliance rule "
                "(several encoder passes per item, so there is no single-forward `*ForSequenceClassification` "
                "form). The folder carries that code (`modeling_csrm_clause.py`, named by `auto_map` in "
                "`config.json`), so plain `transformers` loads it without csrm:", "",
                "```python", "from transformers import AutoModel", "",
                "model = AutoModel.from_pretrained(\"PATH\", trust_remote_code=True)  # tokenizer: same folder",
                f"out = model.score({EXAMPLE[0]}, {EXAMPLE[1]}, {EXAMPLE[2]})",
                "out[\"p_comply\"], out[\"reward\"], out[\"complies\"]  # response None: screen the request",
                "```", "",
                "`config` is the policy text, `messages` a prompt string or chat turns (the response under "
                "review not among them). Calibration temperature(s) and thresholds are read from `config.json`. "
                "`score(..., tokenizer=tok)` takes a tokenizer you loaded (`AutoTokenizer.from_pretrained(\"PATH\", "
                "trust_remote_code=True)`: `config.json` names the remote code, so the tokenizer loader asks too).",
                f"Checked at export against `csrm.load` on probe items (a long policy under a multi-turn "
                f"transcript among them): largest |p_comply difference| = {p_checked}, largest |reward "
                f"difference| = {checked}.", "",
                "With csrm the same folder loads with `csrm.load`, which batches many items and caches encoded "
                "clauses; in TRL pass `csrm.scoring.reward_funcs.CSRMReward(csrm.load(\"PATH\"))` as a reward "
                "function. " + INSTALL, "",
                *csrm_lines]
    lines = [INSTALL + " Then load it with csrm:", "", *csrm_lines]
    if kind == "csrm_rule":
        lines += ["This is a **rule judge** (research state): it reads a numbered rule list one rule against one "
                  "Agent turn window at a time, after a frozen encoder narrows the pairs worth reading, and takes "
                  "an OR over the pairs; `result.evidence` names the rule and turn that drove the verdict. It "
                  "loads with `csrm.load` only (two encoders and an OR over pairs have no single-forward "
                  "`transformers` form). On DynaBench's hand-written rules it does not yet read the rules: see "
                  "csrm's docs/results.md.", ""]
    if kind == "csrm_policy":
        lines += ["This is a **policy judge**: one folder holding a category reader (`category/`) and a rule judge "
                  "(`rules/`). A router sends each part of a policy to the reader made for it: allow lists over "
                  "the risk taxonomy to the category reader, free-text rules to the rule judge; a policy with both "
                  "complies iff it complies with both parts (`p_comply` is the product), and `result.evidence` "
                  "names the rule and turn that drove the rule judge's verdict. It loads with `csrm.load` only. "
                  "The rule judge is in research state: see csrm's docs/results.md.", ""]
    if kind == "csrm_clause":
        lines += ["This is a **clause-reading CSRM**: it splits the config into clauses and the content into "
                  "windows and runs several frozen-encoder passes per item (one per distinct clause and "
                  "window, cached) before its small heads combine them by the compliance rule. This folder "
                  "loads with `csrm.load` only; `csrm export --format transformers` adds the code that plain "
                  "`transformers` loads (`trust_remote_code=True`). In TRL pass "
                  "`csrm.scoring.reward_funcs.CSRMReward(csrm.load(\"PATH\"))` as a reward function.", ""]
    return lines


def card_data(kind: str, rows: list[EvalRow], model_name: str, base_model: str | None) -> Any:
    """The card's metadata: ``library_name``, tags, pipeline tag, base model and ``model-index`` results."""
    from huggingface_hub import ModelCardData

    library = "transformers" if kind in ("transformers", "csrm_clause_remote") else "csrm"
    tags = ["reward-model", "safety", "csrm"] + (["custom_code"] if kind == "csrm_clause_remote" else [])
    results = eval_results(rows)
    return ModelCardData(model_name=model_name, library_name=library, tags=tags, language="en",
                         pipeline_tag="text-classification" if kind == "transformers" else None,
                         base_model=base_model, eval_results=results or None)


def write_card(folder: Path, model_dir: Path, *, kind: str, report: str | Path | None = None,
               architecture: str | None = None, max_diff: float | None = None, reward_bias: float = 0.0,
               p_comply_diff: float | None = None) -> Path:
    """Write ``folder/README.md``. ``kind``: ``transformers`` (a standard export), ``csrm_clause_remote`` (a
    clause CSRM with its remote code), ``csrm`` or ``csrm_clause`` (the CSRM folder, for ``csrm.load``)."""
    from huggingface_hub import ModelCard

    model_dir = Path(model_dir)
    config = _yaml(model_dir / "train_config.yaml")
    results = _json(model_dir / "train_results.json")
    run_dir = model_dir.parent
    manifest = _json(run_dir / "data" / "manifest.json")
    calibration = _json(run_dir / "calibration.json")
    saved = _json(model_dir / "config.json")
    rows = eval_rows(find_report(model_dir, report))
    name = f"csrm-{run_dir.name}" if model_dir.name == "model" and run_dir.name else f"csrm-{model_dir.name}"
    base = config.get("model_name_or_path")
    base = base if isinstance(base, str) and "/" in base and not Path(base).is_absolute() else None  # hub ids
    lines = ["# Configurable safety reward model (csrm)", "",
             "Reads **(safety config, conversation, response)** and returns a reward that ranks responses "
             "(helpful and compliant best; among violations, the more severe the lower) and a calibrated "
             "probability that the response complies with *that* config. Changing safety behaviour means "
             "editing the config text, not retraining.", "", "## How to use", "",
             *_usage(kind, architecture=architecture, max_diff=max_diff, reward_bias=reward_bias,
                     p_comply_diff=p_comply_diff),
             "## Training data", "", *_data_lines(config, results, manifest), "",
             "## Training recipe", "", *_recipe_lines(config, results), ""]
    if calibration:
        lines += [f"Calibration: temperature {calibration.get('temperature', 1):.3f} fitted on "
                  f"{calibration.get('n')} validation examples.", ""]
    elif saved.get("temperature") is not None:
        lines += [f"Calibration temperature: {float(saved['temperature']):.3f}.", ""]
    table = eval_table(rows)
    lines += ["## Evaluation", ""]
    if table:
        lines += ["Headline view, positive class = violation, at the stored threshold (percent except ECE/Brier; "
                  f"the `{MODEL_LABEL}` rows are this model and are the card's `model-index` results):", "",
                  *table, ""]
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
    card = ModelCard.from_template(card_data(kind, rows, name, base), template_str="---\n{{ card_data }}\n---\n\n"
                                   "{{ body }}", body="\n".join(lines))
    path = folder / "README.md"
    card.save(path)
    return path
