"""Programmatic entry points (no ``datasets`` import): records, request-level prompts and their configs.

A CoSAlign-style DPO loop draws its prompts and configs from here::

    from augmentation import load_recipe, prompts_with_configs
    for record, synth in prompts_with_configs("configs/augment/shared.yaml", split="train"):
        system_prompt, allow = synth.config.text, synth.config.allow   # record.prompt, record.categories
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from augmentation.pipeline import group_rng, load_taxonomy, split_rule
from augmentation.recipe import MODES, Recipe, load_recipe
from augmentation.sources import LabelledRecord, load_records
from augmentation.splits import SplitRule
from augmentation.synthesis import SynthesizedConfig, candidate_configs, record_label, select
from augmentation.templates import render_config
from csrm.base.records import SourceRecord, stable_id
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy


def _recipe(recipe: Recipe | str | Path, overrides: Sequence[str] = ()) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe, list(overrides))


def source_records(recipe: Recipe | str | Path, overrides: Sequence[str] = ()) -> list[LabelledRecord]:
    """Every labelled record of a recipe's sources (responses and requests)."""
    recipe = _recipe(recipe, overrides)
    return load_records(recipe, load_taxonomy(recipe))


def request_records(recipe: Recipe | str | Path, *, split: str | None = "train",
                    overrides: Sequence[str] = ()) -> list[LabelledRecord]:
    """Request-level records (``response is None``: prompt + its categories/severity), one per prompt_id,
    restricted to ``split`` by the recipe's split rule (``None`` = all)."""
    recipe = _recipe(recipe, overrides)
    rule = split_rule(recipe)
    out: dict[str, LabelledRecord] = {}
    for record in source_records(recipe):
        if record.is_request and (split is None or rule.prompt_split(record.prompt_id) == split):
            out.setdefault(record.prompt_id, record)
    return list(out.values())


def synthesize_configs(record: SourceRecord, *, taxonomy: RiskTaxonomy | None = None, seed: int = 0,
                       modes: Sequence[str] = MODES, max_configs: int = 4, draws: int = 2,
                       templates: Sequence[str] = (), rule: SplitRule | None = None,
                       split: str | None = None) -> list[SynthesizedConfig]:
    """Rendered configs targeted at ``record`` (label-interleaved), each with the record's label under it.

    With ``rule`` and ``split``, only policies of that split are returned (no leakage into validation).
    Deterministic for (record.prompt_id, seed).
    """
    taxonomy = taxonomy or RiskTaxonomy.default()
    rng = group_rng(seed, record.prompt_id)
    labelled = []
    for cand in candidate_configs(record, taxonomy, rng, modes=modes, draws=draws):
        if rule is not None and split is not None and rule.config_split(cand.policy_key) != split:
            continue
        label = record_label(cand.config, record, taxonomy)
        if label is not None:
            labelled.append((cand, label))
    out = []
    for cand, label in select(labelled, max_configs, rng):
        text, template = render_config(cand.allow_map, taxonomy, rng, list(templates))
        out.append(SynthesizedConfig(SafetyConfig(text=text, allow=cand.allow_map, name=cand.mode), cand.mode,
                                     label, template))
    return out


def prompts_with_configs(recipe: Recipe | str | Path, *, split: str = "train", configs_per_prompt: int = 2,
                         overrides: Sequence[str] = ()) -> list[tuple[LabelledRecord, SynthesizedConfig]]:
    """(request-level record, synthesized config) combinations of one split, honouring the split rule."""
    recipe = _recipe(recipe, overrides)
    taxonomy = load_taxonomy(recipe)
    rule = split_rule(recipe)
    out = []
    draws = recipe.candidate_draws if split == "train" else recipe.validation_candidate_draws
    for record in request_records(recipe, split=split):
        for synth in synthesize_configs(record, taxonomy=taxonomy, seed=recipe.seed, modes=recipe.modes,
                                        max_configs=configs_per_prompt, draws=draws, templates=recipe.templates,
                                        rule=rule, split=split):
            out.append((record, synth))
    return out


def render(allow: dict[str, int], *, taxonomy: RiskTaxonomy | None = None, seed: int | str = 0,
           templates: Sequence[str] = ()) -> str:
    """One natural-language rendering of a structured policy (deterministic for ``seed``)."""
    rng = random.Random(int(stable_id("render", seed, sorted(allow.items())), 16))
    return render_config(allow, taxonomy or RiskTaxonomy.default(), rng, list(templates))[0]
