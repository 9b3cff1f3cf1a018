"""The rule judge's stages of ``csrm run`` (issue #28): when a recipe names ``rule_judge`` (a training YAML with
``architecture: rule``), the one augment stage also writes ``output_dir/data/rules`` (the augmentation recipe's
``rules:`` section), a stage ``train rule judge`` trains :mod:`csrm.model.rule` on it into
``output_dir/model_rule``, and an eval stage ``rule_judge`` scores the recipe's benchmarks, so every report
carries the rule judge's row and its rule-reading block beside the clause model, the
config-blind model and the probes.

**Which benchmarks.** All of the recipe's ``bench``, like every other model of the run, so each benchmark table
has the rule judge's row. DynaBench is the one it is built for (numbered free-text rule lists; the eval harness
adds the rule-reading block there: swap, removal, within-transcript pairs, named rule, length). CoSAlign-Test and
the held-out augmented split are category allow lists rendered as text: the clause family's task, on which the
rule judge's rows show what a rule reader does with such policies. They are cheap for it: short policies give
few (rule, window) pairs. Measured with a MiniLM rule judge at ``configs/train/rule_minilm.yaml``'s scoring
settings, one torch thread, on the shared 2-core box under a concurrent training run (2026-12-06): 150
CoSAlign-Test items in 3.4 s (0.023 s an item, ~72 s for all 3,200), against DynaBench's 254 items in 123 s
plus 22 s for the rule-reading block. Restricting it to DynaBench would save about a minute of a shared run
for CoSAlign-Test (the augmented split's policies are of the same kind; not measured) and lose the comparison.

**No calibrate stage.** The rule judge fits its calibration and threshold on the dev split of the rule data
while it trains (:mod:`csrm.model.rule.trainer`), never on a benchmark, so its eval reads the training stage
only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from csrm.base.errors import InputError

STAGE = "train rule judge"
LABEL = "rule_judge"
MODEL_DIR = "model_rule"


def rule_inputs(recipe) -> list[Path]:  # noqa: ANN001 - an augmentation.recipe.Recipe
    """Files the recipe's ``rules:`` section reads (IFEval rule lists, moderation texts), for the fingerprint."""
    from augmentation.recipe import resolve_path

    if not recipe.rules.enabled:
        return []
    return [resolve_path(p, recipe) for p in (recipe.rules.ifeval_rules, recipe.rules.moderation) if p]


def check(cfg, recipe, resolve) -> None:  # noqa: ANN001 - PipelineConfig, Recipe, pipeline.resolve
    """Refuse, before any stage: a rule judge without rule data (``rules.enabled`` false in the augmentation
    recipe), a missing ``rule_judge`` file, or one that is not a rule training config (its keys checked)."""
    from csrm.base import config as config_system
    from csrm.training.train import load_train_config

    if not cfg.rule_judge:
        return
    path = resolve(cfg.rule_judge, cfg)
    if not path.is_file():
        raise InputError("file not found (looked in the recipe's folder and those above it, the current folder "
                         "and the checkout)", field="rule_judge", path=cfg.rule_judge)
    if not recipe.rules.enabled:
        raise InputError("the recipe trains a rule judge (rule_judge) but its augmentation recipe writes no rule "
                         "data: set rules.enabled: true there (see configs/augment/rules.yaml) or "
                         "rule_judge: ''", field="rules.enabled", path=str(resolve(cfg.augment, cfg)))
    try:
        kwargs, _ = load_train_config(path, list(cfg.rule_judge_overrides), instantiate=False)
    except InputError as err:  # an override of the recipe's rule_judge_overrides: say so, not "command line"
        if err.path != config_system.COMMAND_LINE:
            raise
        raise InputError(err.reason, path="recipe rule_judge_overrides", field=err.field) from None
    if kwargs.get("architecture") != "rule":
        raise InputError(f"expected a rule training config (architecture: rule), got architecture "
                         f"{kwargs.get('architecture', 'clause')!r}", field="rule_judge", path=str(path))


def train(pipeline, resolve) -> None:  # noqa: ANN001 - Pipeline, pipeline.resolve
    """The ``train rule judge`` stage: ``output_dir/data/rules`` -> ``output_dir/model_rule``, fingerprinted on
    the training config (minus where it writes) and the augment stage."""
    cfg = pipeline.cfg
    target = pipeline.out / MODEL_DIR
    overrides = [*cfg.rule_judge_overrides, f"dataset_path={pipeline.data / 'rules'}", f"output_dir={target}"]
    pipeline.side_training(STAGE, resolve(cfg.rule_judge, cfg), overrides, target,
                           upstream={"augment": pipeline.fingerprints["augment"]})


def evaluate(pipeline) -> None:  # noqa: ANN001 - csrm.app.pipeline.Pipeline
    """The rule judge's eval stage on the recipe's benchmarks (module doc), reading its training stage."""
    pipeline.evaluate(str(pipeline.out / MODEL_DIR), LABEL, upstream={STAGE: pipeline.fingerprints[STAGE]})


def report_lines(out: Path, training: dict[str, Any]) -> list[str]:
    """The report's rule-judge training paragraph from ``model_rule/train_results.json``."""
    if not training:
        return []
    pairs = sum(training.get(k, 0) for k in ("positives", "hard_negatives", "random_negatives"))
    return ["## Rule judge", "",
            f"Trained on `{out / 'data' / 'rules'}` ({training.get('train_examples')} rows): {pairs} (rule, Agent "
            f"window) pairs ({training.get('positives')} positive, {training.get('hard_negatives')} hard and "
            f"{training.get('random_negatives')} random negatives), fit {training.get('fit_seconds', 0):.0f} s, "
            f"calibration on {training.get('dev_items')} dev rows {training.get('calibrate_seconds', 0):.0f} s "
            f"(threshold {training.get('threshold', 0):.3f}), peak RSS {training.get('peak_rss_gb')} GB. "
            f"Model: `{out / MODEL_DIR}`; its benchmark rows are labelled `{LABEL}`.", ""]
