"""Train the rule judge: (rule, Agent window) pairs from generated rule data, transformers' Trainer, then
calibration and the threshold on the dev split.

**Pairs.** Every (rule, Agent turn) pair of a training example is a candidate, labelled 1 iff ``[rule_number,
turn_index]`` is in ``metadata.violations``; a turn longer than ``window_chars`` gives one pair per window
with the turn's label. A policy of 100 rules over 5 turns is 500 pairs, almost all negative, so pairs are
sampled into ``max_train_pairs`` in this order: every positive (up to ``positive_share`` of the budget),
then **hard negatives** (half of what is left): pairs that share the violated rule or the violating turn's
text with a positive of the same ``base_id`` (the same turn under a removed or swapped rule, the violated rule
against an innocent turn), then random negatives. The compliant twin of a violating transcript has its own
``base_id``, so its answer under the violated rule (the near miss, the declined request, the obligation met) is
only a random negative and is almost never drawn: the shipped judge reads the condition, not the answer
(*include the word "falcon"* scores ~5 with or without "falcon" in the reply; same-question twins of the
generated dev split 0.39 for obligations). ``twin_negatives`` groups by ``metadata.conversation`` (the scaffold
both twins share) and draws those twin pairs first: twins read 0.39 -> 0.89, but DynaBench's rule swap fell
0.981 -> 0.731 (docs/results.md, 2026-12-07), so it is off by default. Then random negatives (real, unrelated rules against
real turns, which teach the judge not to fire on rules that merely share words). With an uncased tokenizer
(all-MiniLM-L6-v2 lower-cases everything), the pairs of rules whose verdict depends on letter case
(``metadata.case_dependent``: "write in all capitals", "no all-caps sentences") are left out: the violating and
the compliant turn read the same to the model, so their labels would only teach it that such rules fire at
random (at scoring time a rule only about case is checked by code: :mod:`csrm.model.rule.letter_case`). So are
the pairs whose verdict needs more of the conversation than the pair shows
(``metadata.history_dependent``: "only after the user was verified" when the verification came turns earlier).
Calibration still scores every dev item: it maps scores to probabilities on items as users send them.

**Training.** ``AutoModelForSequenceClassification`` (one logit, BCE) with ``transformers.Trainer`` (on a GPU
when one is present and ``use_cpu`` is off, else on the CPU),
pairs padded per batch and grouped by length. **Calibration.** The dev split is scored the way a user scores
(narrowing, windows, the OR), a temperature and bias are fitted on its item labels
(:func:`~csrm.model.rule.aggregation.fit_calibration`) and the F1-best cut on dev is the saved threshold.

**Output.** ``csrm train`` with ``architecture: rule`` lands in :func:`train` through :mod:`csrm.model.registry`.
The judge is written atomically (:func:`csrm.base.io.atomic_path`, with the ``csrm train`` marker, so a rerun
may replace it and a foreign non-empty folder is refused by :func:`csrm.training.train.check_train_output`),
with ``train_results.json`` (what the run measured) and ``train_config.yaml`` (the config as given) beside the
weights, as the other families write them. The Trainer's own scratch folder is a temporary one.
"""

from __future__ import annotations

import json
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

from csrm.base.errors import InputError
from csrm.base.io import atomic_path
from csrm.base.memory import release_freed_memory
from csrm.model.rule.aggregation import best_f1_threshold, fit_calibration
from csrm.model.rule.args import RuleJudgeArgs
from csrm.model.rule.data import RuleExample, preceding_user, read_examples
from csrm.model.rule.modeling import Pair, PairEncoder, freeze_lower, load_backbone, turn_windows
from csrm.model.rule.predictor import RulePredictor, save
from csrm.model.sentence_embedder import SentenceEmbedder


def is_uncased(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the tokenizer reads "Word" and "word" as the same tokens."""
    return tokenizer("Word WORD", add_special_tokens=False)["input_ids"] == \
        tokenizer("word word", add_special_tokens=False)["input_ids"]


def example_pairs(example: RuleExample, window_chars: int, *, uncased: bool = False) -> list[tuple[Pair, int]]:
    """Every (rule, Agent window) pair of one labelled example with its label (module doc), without the pairs a
    pair judge cannot read: history-dependent ones, and with ``uncased`` the rules whose verdict needs letter case."""
    if example.violations is None:
        raise ValueError(f"{example.where}: training rows need metadata.violations")
    out = []
    for t in example.agent_indices:
        context = preceding_user(example.turns, t)
        for w, text in enumerate(turn_windows(example.turns[t].text, window_chars)):
            for r, rule in enumerate(example.rules):
                if (uncased and rule.number in example.case_dependent) or (rule.number, t) in example.history_dependent:
                    continue
                label = int((rule.number, t) in example.violations)
                out.append((Pair(rule.text, context, text, rule_index=r, turn_index=t, window_index=w), label))
    return out


def sample_pairs(examples: list[RuleExample], args: RuleJudgeArgs, *, uncased: bool = False
                 ) -> tuple[list[tuple[Pair, int]], dict]:
    """Positives, hard negatives and random negatives within ``max_train_pairs`` (module doc)."""
    rng = random.Random(args.seed)
    violated_rules: dict[str, set[str]] = {}
    violating_turns: dict[str, set[str]] = {}
    violated_at: dict[str, set[tuple[str, int]]] = {}
    all_pairs = []
    for ex in examples:
        pairs = example_pairs(ex, args.window_chars, uncased=uncased)
        group = ex.conversation if args.twin_negatives else ex.base_id
        for pair, label in pairs:
            if label:
                violated_rules.setdefault(group, set()).add(pair.rule)
                violating_turns.setdefault(group, set()).add(pair.window)
                violated_at.setdefault(group, set()).add((pair.rule, pair.turn_index))
        all_pairs += [(group, pair, label) for pair, label in pairs]
    positives = [(p, y) for _, p, y in all_pairs if y]
    twins, hard, rest = {}, [], []
    for base, pair, label in all_pairs:
        if label:
            continue
        if args.twin_negatives and (pair.rule, pair.turn_index) in violated_at.get(base, ()):  # the twin's answer
            twins.setdefault((pair.rule, pair.context, pair.window), (pair, 0))  # once, whatever the contrast
        elif pair.rule in violated_rules.get(base, ()) or pair.window in violating_turns.get(base, ()):
            hard.append((pair, 0))
        else:
            rest.append(pair)
    easy = [(p, 0) for p in rest if (p.rule, p.context, p.window) not in twins]  # no twin drawn twice
    twin_list = list(twins.values())
    for group in (positives, twin_list, hard, easy):
        rng.shuffle(group)
    budget = args.max_train_pairs
    positives = positives[: int(args.positive_share * budget)]
    left = budget - len(positives)
    hard = (twin_list + hard)[: left // 2]  # the compliant twins first: the one negative that differs only in the answer
    easy = easy[: budget - len(positives) - len(hard)]
    chosen = positives + hard + easy
    rng.shuffle(chosen)
    counts = {"candidate_pairs": len(all_pairs), "positives": len(positives), "hard_negatives": len(hard),
              "twin_negatives": min(len(twin_list), len(hard)),
              "random_negatives": len(easy),
              "case_dependent_rules_left_out": sum(len(ex.case_dependent) for ex in examples) if uncased else 0,
              "history_dependent_pairs_left_out": sum(len(ex.history_dependent) for ex in examples)}
    return chosen, counts


def peak_rss_gb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def calibrate(predictor: RulePredictor, examples: list[RuleExample]) -> dict[str, Any]:
    """Fit the calibration and threshold on ``examples`` (dev) in place; returns what was fitted."""
    judgements = predictor.judge_many([(ex.rules, ex.turns) for ex in examples])
    labels = [ex.label for ex in examples]
    predictor.calibration = fit_calibration([j.score for j in judgements], labels)
    p = [predictor.calibration(j.score) if j.pairs else 0.0 for j in judgements]
    predictor.threshold = best_f1_threshold(p, labels)
    return {"dev_items": len(examples), "scale": predictor.calibration.scale,
            "bias": predictor.calibration.bias, "threshold": predictor.threshold}


class ReleaseFreedMemory(TrainerCallback):
    """``malloc_trim`` after every optimisation step: batches padded to their own length change size every step,
    which fragments glibc's heap on CPU (:mod:`csrm.base.memory`, the clause trainer's measured case)."""

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003 - the TrainerCallback hook
        release_freed_memory()


def _check_dataset(path: str) -> Path:
    """The rules folder, refused (naming ``dataset_path``) when unset or without train.jsonl and dev.jsonl."""
    if not path:
        raise InputError("missing: the rules folder of a rules augmentation (DIR/rules)", field="dataset_path")
    root = Path(path)
    missing = [name for name in ("train.jsonl", "dev.jsonl") if not (root / name).is_file()]
    if missing:
        raise InputError(f"no {' or '.join(missing)} here: expected the rules folder of a rules augmentation "
                         "(csrm augment configs/augment/rules.yaml output_dir=DIR -> DIR/rules)",
                         path=str(root), field="dataset_path")
    return root


def train(args: RuleJudgeArgs, *, raw_config: dict[str, Any] | None = None, from_config: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train, calibrate on dev and save to ``args.output_dir`` (module doc); returns the run's measurements.
    ``raw_config``: the config as given (``csrm train``), saved as ``train_config.yaml``; ``from_config``: fresh
    weights from the backbone's config and no candidate narrowing in calibration (tests)."""
    root = _check_dataset(args.dataset_path)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    excluded = set(args.exclude_families or [])
    train_rows = [ex for ex in read_examples(root / "train.jsonl") if ex.family not in excluded]
    dev_rows = [ex for ex in read_examples(root / "dev.jsonl") if ex.family not in excluded]
    tokenizer, model = load_backbone(args.model_name_or_path, from_config=from_config)
    uncased = is_uncased(tokenizer)
    pairs, counts = sample_pairs(train_rows, args, uncased=uncased)
    trainable = freeze_lower(model, args.freeze_layers)
    encoder = PairEncoder(tokenizer, max_length=args.max_length, rule_max_tokens=args.rule_max_tokens,
                          context_max_tokens=args.context_max_tokens)
    features, owner = encoder.encode([p for p, _ in pairs])
    for feature, n in zip(features, owner, strict=True):
        feature["labels"] = pairs[n][1]
    scratch = tempfile.TemporaryDirectory(prefix="csrm-rule-trainer-")  # save_strategy "no": logs only
    training_args = TrainingArguments(
        output_dir=scratch.name, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, num_train_epochs=args.num_train_epochs, warmup_steps=args.warmup_ratio,
        seed=args.seed, use_cpu=args.use_cpu, save_strategy="no", report_to="none", logging_steps=50,
        remove_unused_columns=False, train_sampling_strategy="group_by_length", dataloader_num_workers=0,
        disable_tqdm=not progress, bf16=False)
    trainer = Trainer(model=model, args=training_args, train_dataset=features, data_collator=encoder.collate,
                      callbacks=[ReleaseFreedMemory()])
    fit_started = time.perf_counter()
    result = trainer.train()
    fit_seconds = time.perf_counter() - fit_started
    scratch.cleanup()
    embed = SentenceEmbedder("minilm") if not from_config else None
    predictor = RulePredictor(model, encoder, args, embed=embed)
    cal_started = time.perf_counter()
    dev_subset = random.Random(args.seed).sample(dev_rows, min(len(dev_rows), args.calibration_items))
    fitted = calibrate(predictor, dev_subset)
    measured = {"train_examples": len(train_rows), **counts, "train_inputs": len(features),
                "trainable_parameters": trainable,
                "train_loss": float(result.training_loss), "fit_seconds": round(fit_seconds, 1),
                "calibrate_seconds": round(time.perf_counter() - cal_started, 1), **fitted,
                "excluded_families": sorted(excluded), "wall_seconds": round(time.perf_counter() - started, 1),
                "peak_rss_gb": round(peak_rss_gb(), 3)}
    with atomic_path(args.output_dir, is_dir=True, command="train") as tmp:
        save(tmp, predictor.model, encoder, args, calibration=predictor.calibration,
             threshold=predictor.threshold, extra={"training": measured})
        summary = {"architecture": "rule", "output_dir": str(Path(args.output_dir).expanduser().resolve()),
                   **measured}
        (tmp / "train_results.json").write_text(json.dumps(summary, indent=2) + "\n")
        if raw_config is not None:
            (tmp / "train_config.yaml").write_text(yaml.safe_dump(raw_config, sort_keys=False))
    return measured
