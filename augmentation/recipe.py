"""The augmentation recipe: a dataclass config read by :mod:`csrm.base.config` (YAML plus overrides).

Every field carries its help text (``setting(default, help)``, :mod:`csrm.base.config`); ``csrm augment --help`` prints them.
Unknown keys are rejected naming the key (file, line, field). Relative paths in a recipe are resolved
against the recipe's folder and the folders above it, then the current folder, then the checkout csrm runs from
(:func:`csrm.base.paths.recipe_path`), so a recipe works from any current folder and from a wheel install;
``{data_dir}`` expands to :func:`csrm.base.paths.data_dir` (``$CSRM_DATA_DIR`` or ``../shared/data``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augmentation.rules.spec import RulesSpec
from csrm.base.config import KeyPath, apply_overrides, build, fail, read, setting
from csrm.base.errors import InputError
from csrm.base.paths import PROJECT_ROOT, data_dir, recipe_path

SOURCE_TYPES = ("seed", "jsonl", "csv", "openai_moderation", "cosalign_test", "pku_saferlhf", "beavertails",
                "wildguardmix")
MODES = ("exact", "superset", "none", "drop_one", "severity_threshold")


@dataclass
class SourceSpec:
    """One input source of labelled records."""

    type: str = setting(help=f"source adapter: one of {', '.join(SOURCE_TYPES)}")
    path: str = setting("", "local file (.jsonl, .jsonl.gz, .csv); '{data_dir}' expands to the shared data folder")
    mapping: str = setting("", "label mapping YAML (default: configs/mappings/<type>.yaml; identity for jsonl/csv)")
    name: str = setting("", "source name written into records (default: the type)")
    limit: int = setting(0, "read at most this many rows (0 = all)")
    use_as: str = setting("response", "openai_moderation/wildguardmix: judge texts as the 'response', as the 'request' "
                        "(screening), or 'both'")
    hub_name: str = setting("", "hub dataset id for pku_saferlhf/beavertails/wildguardmix (default: the official one)")
    hub_config: str = setting("", "hub dataset config (wildguardmix: wildguardtrain or wildguardtest)")
    split: str = setting("", "hub split (default per source: train, 30k_train, ...)")
    revision: str = setting("", "hub revision (commit) to pin")

    @property
    def source_name(self) -> str:
        return self.name or self.type


@dataclass
class Recipe:
    """How to turn labelled sources into config-targeted examples and preference pairs."""

    sources: list[SourceSpec] = setting(help="input sources (list of SourceSpec mappings)", default_factory=list)
    output_dir: str = setting("runs/augment/out", "output folder (replaced atomically)")
    overwrite: bool = setting(False, "write into a non-empty output_dir that is not an earlier csrm augment output "
                              "(only the files augment writes are replaced; everything else in it is kept)")
    seed: int = setting(0, "random seed: same recipe + seed gives byte-identical JSONL")
    taxonomy: str = setting("", "risk taxonomy YAML (default: configs/taxonomy/cosa8.yaml)")
    modes: list[str] = setting(help=f"config synthesis modes: {', '.join(MODES)}", default_factory=lambda: list(MODES))
    max_configs_per_record: int = setting(3, "synthesized configs kept per labelled record (label-interleaved)")
    benign_configs_per_record: int = setting(1, "configs kept per record with no harm category (always compliant)")
    candidate_draws: int = setting(2, "random draws per mode when synthesizing candidates (more = more variety)")
    validation_candidate_draws: int = setting(8, "draws per mode for validation prompts (they may only use held-out "
                                            "policies, so they need more candidates)")
    source_configs: bool = setting(True, "also emit examples under configs that come with the source rows (mode "
                                 "'source')")
    templates: list[str] = setting(help="config-text templates to use (empty = all)", default_factory=list)
    split_seed: int = setting(0, "seed of the train/validation split (kept apart from 'seed')")
    validation_prompt_fraction: float = setting(0.15, "share of prompts (prompt_id) held out for validation")
    validation_config_fraction: float = setting(0.2, "share of config policies (policy_key) held out for validation")
    strict_policy_in_train: bool = setting(True, "the nothing-allowed policy always belongs to train")
    refusal_example_rate: float = setting(0.1, "chance per prompt of one synthesized-refusal example (label 1)")
    pairs: bool = setting(True, "build preference pairs")
    trl_pairs: bool = setting(True, "also write the pairs in TRL's conversational preference format, "
                              "pairs_trl.<split>.jsonl (prompt = the config as system message + the conversation; "
                              "chosen / rejected = one assistant message): trl.RewardTrainer and DPOTrainer read it "
                              "as is; pairs with a request-level 'full answer' side have no text and are left out")
    add_refusals: bool = setting(True, "add a synthesized refusal to each response pool that lacks one")
    max_pair_configs_per_prompt: int = setting(2, "configs per prompt under which pairs are built (0 = all)")
    max_pairs_per_config: int = setting(4, "pairs kept per (prompt, config) (0 = all)")
    min_compliant: float = setting(0.4, "lower bound on the compliant share per split (majority downsampled)")
    max_compliant: float = setting(0.6, "upper bound on the compliant share per split")
    max_train_examples: int = setting(0, "cap on train examples after balancing (0 = none; label-stratified)")
    max_train_pairs: int = setting(0, "cap on train pairs (0 = none)")
    progress: bool = setting(True, "show a progress bar")
    rules: RulesSpec = setting(help="rule-violation data (numbered rule policies, User/Agent transcripts, PASS/FAIL "
                               "by code): augmentation.rules", default_factory=RulesSpec)

    def validate(self, *, path: str | None = None, lines: dict[KeyPath, int] | None = None,
                 overridden: frozenset[KeyPath] = frozenset()) -> Recipe:
        where = {"path": path, "lines": lines or {}, "overridden": overridden}
        if not self.sources and not self.rules.enabled:
            raise fail("a recipe needs at least one source (or rules.enabled)", key=("sources",), **where)
        for name, message in self.rules.problems():
            raise fail(message, key=("rules", name), **where)
        for i, source in enumerate(self.sources):
            if source.type not in SOURCE_TYPES:
                raise fail(f"unknown source type {source.type!r}; expected one of {', '.join(SOURCE_TYPES)}",
                           key=("sources", i, "type"), **where)
            if source.type in {"jsonl", "csv", "openai_moderation", "cosalign_test"} and not source.path:
                raise fail(f"source type {source.type!r} needs a path", key=("sources", i, "path"), **where)
            if source.use_as not in {"response", "request", "both"}:
                raise fail("must be response, request or both", key=("sources", i, "use_as"), **where)
            if source.limit < 0:
                raise fail("must be >= 0", key=("sources", i, "limit"), **where)
        for mode in self.modes:
            if mode not in MODES:
                raise fail(f"unknown mode {mode!r}; expected {', '.join(MODES)}", key=("modes",), **where)
        from augmentation.templates import TEMPLATES

        for name in self.templates:
            if name not in TEMPLATES:
                raise fail(f"unknown template {name!r}; expected {', '.join(TEMPLATES)}", key=("templates",),
                           **where)
        for name in ("validation_prompt_fraction", "validation_config_fraction", "refusal_example_rate",
                     "min_compliant", "max_compliant"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise fail("must lie in [0, 1]", key=(name,), **where)
        if self.min_compliant > self.max_compliant:
            raise fail("must not exceed max_compliant", key=("min_compliant",), **where)
        for name in ("max_configs_per_record", "benign_configs_per_record", "candidate_draws",
                     "validation_candidate_draws",
                     "max_pair_configs_per_prompt", "max_pairs_per_config", "max_train_examples", "max_train_pairs"):
            if getattr(self, name) < 0:
                raise fail("must be >= 0", key=(name,), **where)
        for name in ("candidate_draws", "validation_candidate_draws"):
            if getattr(self, name) < 1:
                raise fail("must be >= 1", key=(name,), **where)
        return self


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load and validate a recipe YAML, applying ``key=value`` overrides (dotted keys reach into sources)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("recipe file not found", path=str(path))
    data, where = read(path, overrides)
    if not data:
        raise InputError("empty recipe: it needs at least 'sources' or 'rules'", path=str(path), line=1, field="sources")
    recipe = build(Recipe, data, **where).validate(**where)
    recipe._base_dir = path.parent  # type: ignore[attr-defined]
    return recipe


def recipe_from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Build a recipe from a mapping (programmatic use; same checks as :func:`load_recipe`)."""
    data = copy.deepcopy(dict(data))
    overridden = apply_overrides(data, overrides)
    return build(Recipe, data, overridden=overridden).validate(overridden=overridden)


def resolve_path(value: str, recipe: Recipe | None = None) -> Path:
    """Expand ``{data_dir}`` and resolve a recipe-relative path (module doc: the recipe's folder and those above
    it, the current folder, the checkout csrm runs from)."""
    base = getattr(recipe, "_base_dir", None)
    expanded = value.replace("{data_dir}", str(data_dir(base))).replace("{project}", str(PROJECT_ROOT))
    found = recipe_path(expanded, base)
    return found if found.exists() or base is not None else Path.cwd() / expanded


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)
