"""The augmentation pipeline: sources -> config-targeted examples and preference pairs -> files.

Records are grouped by ``prompt_id``; each group draws from its own RNG (seeded by recipe seed + prompt_id),
so results are deterministic and independent of the other groups. Per group:

1. every record gets candidate configs (:mod:`augmentation.synthesis`), filtered to the prompt's split
   (:mod:`augmentation.splits`) and to determinate labels, then up to ``max_configs_per_record`` are kept,
   alternating compliant/violating; configs that came with the row are added as mode ``source``;
2. each kept policy is rendered to text once per group (:mod:`augmentation.templates`), so all records and
   pairs of the prompt see the same wording for the same policy;
3. pairs (:mod:`augmentation.pairs`) are built per response pool (the prompt's responses, plus a
   synthesized refusal when none is there; each request-level record with a refusal) under up to
   ``max_pair_configs_per_prompt`` of the group's configs.

Then each split is label-balanced (majority class downsampled into [min_compliant, max_compliant]) and
capped, and everything is written to a temporary folder that is renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import gc
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from augmentation.pairs import TRL_FILE, make_pairs, record_error, trl_rows
from augmentation.recipe import Recipe, recipe_to_dict, resolve_path
from augmentation.refusals import synthesize_refusal
from augmentation.sources import LabelledRecord, load_records
from augmentation.splits import SPLITS, TRAIN, SplitRule
from augmentation.synthesis import Candidate, candidate_configs, record_label, select
from augmentation.templates import render_config
from csrm.base.errors import InputError
from csrm.base.io import atomic_path, check_output_dir, remove_stale_temps
from csrm.base.records import Example, PreferencePair, stable_id
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy


@dataclass
class AugmentResult:
    examples: dict[str, list[Example]]
    pairs: dict[str, list[PreferencePair]]
    stats: dict[str, Any] = field(default_factory=dict)
    policy_of: dict[str, str] = field(default_factory=dict)  # config_id -> policy_key (pairs carry no policy)


def load_taxonomy(recipe: Recipe) -> RiskTaxonomy:
    if not recipe.taxonomy:
        return RiskTaxonomy.default()
    path = resolve_path(recipe.taxonomy, recipe)
    if not path.is_file():
        raise InputError("taxonomy file not found", path=str(path), field="taxonomy")
    return RiskTaxonomy.from_yaml(path)


def split_rule(recipe: Recipe) -> SplitRule:
    return SplitRule(recipe.split_seed, recipe.validation_prompt_fraction, recipe.validation_config_fraction,
                     recipe.strict_policy_in_train)


def group_rng(seed: int, prompt_id: str) -> random.Random:
    return random.Random(int(stable_id(seed, prompt_id), 16))


def group_records(records: list[LabelledRecord]) -> dict[str, list[LabelledRecord]]:
    groups: dict[str, list[LabelledRecord]] = {}
    for record in records:
        groups.setdefault(record.prompt_id, []).append(record)
    return groups


class _GroupConfigs:
    """The configs of one prompt group, each rendered once."""

    def __init__(self, taxonomy: RiskTaxonomy, rng: random.Random, templates: list[str]):
        self.taxonomy, self.rng, self.templates = taxonomy, rng, templates
        self.by_key: dict[str, tuple[SafetyConfig, str, str]] = {}  # key -> (config, mode, template)

    def get(self, allow: dict[str, int], mode: str, text: str = "") -> tuple[SafetyConfig, str, str]:
        key = SafetyConfig(allow=allow).policy_key
        if key not in self.by_key:
            template = "source"
            if not text:
                text, template = render_config(allow, self.taxonomy, self.rng, self.templates)
            self.by_key[key] = (SafetyConfig(text=text, allow=dict(allow), name=mode), mode, template)
        return self.by_key[key]


def _example(config: SafetyConfig, mode: str, template: str, record: LabelledRecord, label: int,
             synthetic: bool = False) -> Example:
    meta: dict[str, Any] = {"record_id": record.record_id, "template": template, "helpful": record.helpful,
                            "policy_key": config.policy_key, "severity_known": record.severity_known}
    if record.uncertain:
        meta["uncertain"] = dict(record.uncertain)
    if synthetic:
        meta["synthetic_refusal"] = True
    return Example(config_id=config.id, config_text=config.text,
                   config_policy=json.dumps(config.allow, sort_keys=True), mode=mode, messages=record.messages,
                   response=record.response, categories=list(record.categories), severity=record.severity,
                   label=label, error=record_error(config, record), source=record.source,
                   is_refusal=record.is_refusal, prompt_id=record.prompt_id, meta=meta)


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector (restored after): building and writing make millions of small acyclic
    objects, and the collector's passes over that growing heap cost ~17% of a 100k-record run
    (``bench/bench_augmentation.py``). Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@gc_paused()
def build(recipe: Recipe, records: list[LabelledRecord], taxonomy: RiskTaxonomy) -> AugmentResult:
    """Synthesize examples and pairs for ``records`` (no I/O)."""
    rule = split_rule(recipe)
    examples: dict[str, list[Example]] = {s: [] for s in SPLITS}
    pairs: dict[str, list[PreferencePair]] = {s: [] for s in SPLITS}
    stats: Counter[str] = Counter()
    seen_examples: set[str] = set()
    policy_of: dict[str, str] = {}
    groups = group_records(records)
    for prompt_id, group in tqdm(groups.items(), desc="augment", unit="prompt", disable=not recipe.progress,
                                 leave=False):
        split = rule.prompt_split(prompt_id)
        rng = group_rng(recipe.seed, prompt_id)
        configs = _GroupConfigs(taxonomy, rng, recipe.templates)
        out = examples[split]

        def emit(example: Example, out: list[Example] = out) -> None:
            if example.example_id not in seen_examples:
                seen_examples.add(example.example_id)
                out.append(example)

        for record in group:
            taken: set[str] = set()  # policies this record already has an example under
            if recipe.source_configs:  # configs that came with the row go first: they keep mode "source"
                for source_config in record.configs:
                    if source_config.allow is None:
                        stats["source_configs_skipped_free_text"] += 1
                        continue
                    if rule.config_split(source_config.policy_key) != split:
                        stats["source_configs_dropped_cross_split"] += 1
                        continue
                    label = record_label(source_config, record, taxonomy)
                    if label is None:
                        stats["source_configs_dropped_uncertain"] += 1
                        continue
                    config, _, template = configs.get(source_config.allow, "source", source_config.text)
                    taken.add(source_config.policy_key)
                    emit(_example(config, "source", template, record, label))
            labelled: list[tuple[Candidate, int]] = []
            draws = recipe.candidate_draws if split == TRAIN else recipe.validation_candidate_draws
            for cand in candidate_configs(record, taxonomy, rng, modes=recipe.modes, draws=draws):
                if cand.policy_key in taken:
                    continue
                if rule.config_split(cand.policy_key) != split:
                    stats["candidates_dropped_cross_split"] += 1
                    continue
                label = record_label(cand.config, record, taxonomy)
                if label is None:
                    stats["candidates_dropped_uncertain"] += 1
                    continue
                labelled.append((cand, label))
            # no known category: every determinate label is "complies", so fewer configs keep the balance
            n = recipe.benign_configs_per_record if not record.categories else recipe.max_configs_per_record
            for cand, label in select(labelled, n, rng):
                config, _, template = configs.get(cand.allow_map, cand.mode)
                emit(_example(config, cand.mode, template, record, label))
        if not configs.by_key:
            stats["prompts_without_configs"] += 1
            continue
        keys = list(configs.by_key)
        if recipe.refusal_example_rate and rng.random() < recipe.refusal_example_rate:
            config, _, template = configs.by_key[rng.choice(keys)]
            refusal = synthesize_refusal(group[0], rng)
            emit(_example(config, "refusal", template, refusal, 1, synthetic=True))
        if recipe.pairs:
            pairs[split].extend(_group_pairs(recipe, group, configs, keys, rng, taxonomy))
        policy_of.update({config.id: key for key, (config, _, _) in configs.by_key.items()})
    result = AugmentResult(examples, pairs, {"build": dict(sorted(stats.items()))}, policy_of)
    _balance_and_cap(recipe, result)
    return result


def _pools(group: list[LabelledRecord], recipe: Recipe, rng: random.Random) -> list[list[LabelledRecord]]:
    """Response pools of one prompt: same-conversation responses together; each request record alone."""
    pools: dict[str, list[LabelledRecord]] = {}
    for record in group:
        key = stable_id(record.messages) if not record.is_request else "request:" + record.record_id
        pools.setdefault(key, []).append(record)
    out = []
    for pool in pools.values():
        if recipe.add_refusals and not any(r.is_refusal for r in pool):
            pool = [*pool, synthesize_refusal(pool[0], rng)]
        if len(pool) >= 2:
            out.append(pool)
    return out


def _group_pairs(recipe: Recipe, group: list[LabelledRecord], configs: _GroupConfigs, keys: list[str],
                 rng: random.Random, taxonomy: RiskTaxonomy) -> list[PreferencePair]:
    if recipe.max_pair_configs_per_prompt and len(keys) > recipe.max_pair_configs_per_prompt:
        keys = rng.sample(keys, recipe.max_pair_configs_per_prompt)
    pools = _pools(group, recipe, rng)
    out: list[PreferencePair] = []
    seen: set[str] = set()
    for key in keys:
        config = configs.by_key[key][0]
        for pool in pools:
            for pair in make_pairs(config, pool, taxonomy=taxonomy, rng=rng, max_pairs=recipe.max_pairs_per_config):
                if pair.pair_id not in seen:
                    seen.add(pair.pair_id)
                    out.append(pair)
    return out


def _subsample(items: list[Any], n: int, rng: random.Random) -> list[Any]:
    """``n`` items in their original order (all when ``n`` >= len)."""
    if n >= len(items):
        return list(items)
    keep = set(rng.sample(range(len(items)), n))
    return [item for i, item in enumerate(items) if i in keep]


def balance(examples: list[Example], low: float, high: float, rng: random.Random) -> list[Example]:
    """Downsample the majority label so the compliant share lies in [low, high] (order preserved)."""
    pos = [e for e in examples if e.label == 1]
    neg = [e for e in examples if e.label == 0]
    if not pos or not neg:
        return list(examples)
    share = len(pos) / len(examples)
    if share > high and high < 1:
        pos = _subsample(pos, int(high * len(neg) / (1 - high)), rng)
    elif share < low and low > 0:
        neg = _subsample(neg, int(len(pos) * (1 - low) / low), rng)
    else:
        return list(examples)
    keep = {id(e) for e in pos + neg}
    return [e for e in examples if id(e) in keep]


def _balance_and_cap(recipe: Recipe, result: AugmentResult) -> None:
    rng = random.Random(int(stable_id(recipe.seed, "balance"), 16))
    info: dict[str, Any] = {}
    for split in SPLITS:
        before = result.examples[split]
        after = balance(before, recipe.min_compliant, recipe.max_compliant, rng)
        info[split] = {"before": len(before), "compliant_before": _share(before), "dropped": len(before) - len(after)}
        if split == "train" and recipe.max_train_examples and len(after) > recipe.max_train_examples:
            pos = [e for e in after if e.label == 1]
            n_pos = round(recipe.max_train_examples * len(pos) / len(after))
            keep_pos = _subsample(pos, n_pos, rng)
            keep_neg = _subsample([e for e in after if e.label == 0], recipe.max_train_examples - n_pos, rng)
            keep = {id(e) for e in keep_pos + keep_neg}
            info[split]["capped"] = len(after) - len(keep)
            after = [e for e in after if id(e) in keep]
        result.examples[split] = after
    if recipe.max_train_pairs and len(result.pairs["train"]) > recipe.max_train_pairs:
        info["pairs_capped"] = len(result.pairs["train"]) - recipe.max_train_pairs
        result.pairs["train"] = _subsample(result.pairs["train"], recipe.max_train_pairs, rng)
    result.stats["balance"] = info


def _share(examples: list[Example]) -> float:
    return round(sum(e.label for e in examples) / len(examples), 4) if examples else 0.0


# -- reporting -----------------------------------------------------------------------------------------
def summarize(result: AugmentResult, records: list[LabelledRecord], recipe: Recipe,
              taxonomy: RiskTaxonomy) -> dict[str, Any]:
    """The manifest: counts per split, mode, source and severity; label balance; pair statistics."""
    manifest: dict[str, Any] = {
        "recipe": recipe_to_dict(recipe),
        "taxonomy": taxonomy.name,
        "records": {
            "total": len(records),
            "by_source": dict(sorted(Counter(r.source for r in records).items())),
            "request_level": sum(r.is_request for r in records),
            "refusals": sum(r.is_refusal for r in records),
            "benign": sum(not r.categories for r in records),
            "with_uncertain_labels": sum(bool(r.uncertain) for r in records),
            "severity_histogram": _hist(r.severity for r in records),
            "prompts": len({r.prompt_id for r in records}),
        },
        "examples": {},
        "pairs": {},
        "split_rule": {"prompt_fraction": recipe.validation_prompt_fraction,
                       "config_fraction": recipe.validation_config_fraction,
                       "strict_policy_in_train": recipe.strict_policy_in_train, "split_seed": recipe.split_seed},
        **result.stats,
    }
    for split in SPLITS:
        rows = result.examples[split]
        modes: dict[str, dict[str, int]] = {}
        for e in rows:
            entry = modes.setdefault(e.mode, {"count": 0, "compliant": 0})
            entry["count"] += 1
            entry["compliant"] += e.label
        manifest["examples"][split] = {
            "count": len(rows),
            "compliant": sum(e.label for e in rows),
            "violating": sum(1 - e.label for e in rows),
            "compliant_fraction": _share(rows),
            "by_mode": dict(sorted(modes.items())),
            "by_source": dict(sorted(Counter(e.source for e in rows).items())),
            "by_template": dict(sorted(Counter(e.meta.get("template", "") for e in rows).items())),
            "severity_histogram": _hist(e.severity for e in rows),
            "refusals": sum(e.is_refusal for e in rows),
            "request_level": sum(e.response is None for e in rows),
            "prompts": len({e.prompt_id for e in rows}),
            "policies": len({e.config_policy for e in rows}),
        }
        prs = result.pairs[split]
        manifest["pairs"][split] = {
            "count": len(prs),
            "by_source": dict(sorted(Counter(p.source for p in prs).items())),
            "chosen_full_answer_to_request": sum(p.chosen is None for p in prs),
            "rejected_full_answer_to_request": sum(p.rejected is None for p in prs),
            "mean_margin": round(sum(p.margin for p in prs) / len(prs), 4) if prs else 0.0,
            "max_chosen_error": max((p.chosen_error for p in prs), default=0.0),
            "prompts": len({p.prompt_id for p in prs}),
        }
    return manifest


def _hist(values: Any) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items())}


# -- writing -------------------------------------------------------------------------------------------
def _features(kind: str) -> Any:
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    if kind == "examples":
        return Features({
            "config_id": Value("string"), "config_text": Value("string"), "config_policy": Value("string"),
            "mode": Value("string"), "messages": messages, "response": Value("string"),
            "categories": List(Value("string")), "severity": Value("int64"), "label": Value("int64"),
            "error": Value("float64"), "source": Value("string"), "is_refusal": Value("bool"),
            "prompt_id": Value("string"), "example_id": Value("string"), "meta": Value("string")})
    return Features({
        "config_id": Value("string"), "config_text": Value("string"), "messages": messages,
        "chosen": Value("string"), "rejected": Value("string"), "chosen_error": Value("float64"),
        "rejected_error": Value("float64"), "margin": Value("float64"), "source": Value("string"),
        "prompt_id": Value("string"), "pair_id": Value("string")})


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


@gc_paused()
def write_outputs(result: AugmentResult, manifest: dict[str, Any], output_dir: str | Path, *,
                  trl_pairs: bool = False) -> Path:
    """Write DatasetDicts, JSONL files and manifest.json into ``output_dir`` atomically (``trl_pairs``: also
    the pairs in TRL's format, :func:`augmentation.pairs.trl_rows`, with their counts in the manifest)."""
    from datasets import Dataset, DatasetDict
    from datasets.utils import logging as ds_logging

    output_dir = Path(output_dir)
    remove_stale_temps(output_dir)  # left by a run killed while writing (one writer owns output_dir)
    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()  # our own bar covers the long part; saving is quick
    with contextlib.ExitStack() as stack:
        if bars:
            stack.callback(ds_logging.enable_progress_bar)
        _write_all(result, manifest, output_dir, Dataset, DatasetDict, trl_pairs)
    return output_dir


def _write_all(result: AugmentResult, manifest: dict[str, Any], output_dir: Path, Dataset: Any, DatasetDict: Any,
               trl: bool = False) -> None:
    with atomic_path(output_dir, is_dir=True, command="augment") as tmp:
        files = []
        for kind, data in (("examples", result.examples), ("pairs", result.pairs)):
            features = _features(kind)
            splits = {}
            for split in SPLITS:
                rows = [item.to_row() for item in data[split]]
                _write_jsonl(tmp / f"{kind}.{split}.jsonl", rows)
                files.append(f"{kind}.{split}.jsonl")
                if rows:  # datasets 5.2 cannot reload an empty split: leave it out (the manifest says 0)
                    splits[split] = Dataset.from_list(rows, features=features)
            if splits:
                DatasetDict(splits).save_to_disk(str(tmp / kind))
                files.append(f"{kind}/")
        if trl:  # TRL's conversational preference rows (augmentation.pairs.trl_rows)
            for split in SPLITS:
                rows, skipped = trl_rows(result.pairs[split])
                _write_jsonl(tmp / TRL_FILE.format(split=split), rows)
                files.append(TRL_FILE.format(split=split))
                manifest["pairs"][split].update(trl=len(rows), trl_left_out_full_answer=skipped)
        manifest = {**manifest, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")


def check_augment_output(recipe: Recipe, output_dir: str | Path) -> None:
    """Refuse an ``output_dir`` that is (or is inside, or holds) a source or the shared data folder, or a
    non-empty folder that is not an earlier augmentation output, unless ``overwrite``
    (:func:`csrm.base.io.check_output_dir`)."""
    from augmentation.recipe import resolve_path
    from csrm.base.paths import data_dir

    inputs: dict[str, str | Path | None] = {f"sources.{i}.path": resolve_path(spec.path, recipe)
                                            for i, spec in enumerate(recipe.sources) if spec.path}
    if any("{data_dir}" in spec.path for spec in recipe.sources):
        inputs["data_dir"] = data_dir()
    check_output_dir(output_dir, "augment", overwrite=recipe.overwrite, inputs=inputs, legacy=("manifest.json",))


def run(recipe: Recipe, *, output_dir: str | Path | None = None,
        records: list[LabelledRecord] | None = None) -> dict[str, Any]:
    """Load sources, synthesize, write everything; returns the manifest. Input errors raise before writing."""
    check_augment_output(recipe, output_dir or recipe.output_dir)
    taxonomy = load_taxonomy(recipe)
    records = load_records(recipe, taxonomy) if records is None else records
    if not records:
        raise InputError("the sources yielded no records", field="sources")
    result = build(recipe, records, taxonomy)
    manifest = summarize(result, records, recipe, taxonomy)
    write_outputs(result, manifest, output_dir or recipe.output_dir, trl_pairs=recipe.trl_pairs)
    return manifest
