"""The policy judge's stages of ``csrm run``: when a recipe names ``policy_judge`` (a training YAML with
``architecture: policy``) beside ``rule_judge``, a stage ``compose policy judge`` puts the run's calibrated category
reader (``output_dir/model``) and its rule judge (``output_dir/model_rule``) into one folder,
``output_dir/model_policy``, with a router fitted on the data both were trained on (:mod:`csrm.model.policy`),
and an eval stage ``policy_judge`` scores the recipe's benchmarks with it.

That folder is the run's one model for any policy: ``csrm.load(output_dir/model_policy)`` scores category allow
lists as the category reader does and numbered rule lists as the rule judge does (the same numbers, to the bit,
wherever the router keeps a policy whole; the report says how many were kept whole), and a policy with both parts
by both. Composing retrains nothing: it costs the router's fit (the frozen encoder over ~6,000 units).
"""

from __future__ import annotations

from typing import Any

from csrm.base.errors import InputError

STAGE = "compose policy judge"
LABEL = "policy_judge"
MODEL_DIR = "model_policy"


def check(cfg, resolve) -> None:  # noqa: ANN001 - PipelineConfig, pipeline.resolve
    """Refuse, before any stage: a policy judge without a rule judge to compose, a missing ``policy_judge`` file,
    or one that is not a policy training config."""
    from csrm.training.train import load_train_config

    if not cfg.policy_judge:
        return
    if not cfg.rule_judge:
        raise InputError("the policy judge composes the run's category reader with its rule judge: set rule_judge "
                         "too, or policy_judge: ''", field="policy_judge")
    path = resolve(cfg.policy_judge, cfg)
    if not path.is_file():
        raise InputError("file not found (looked in the recipe's folder and those above it, the current folder "
                         "and the checkout)", field="policy_judge", path=cfg.policy_judge)
    kwargs, _ = load_train_config(path, [], instantiate=False)
    if kwargs.get("architecture") != "policy":
        raise InputError(f"expected a policy training config (architecture: policy), got architecture "
                         f"{kwargs.get('architecture', 'clause')!r}", field="policy_judge", path=str(path))


def compose(pipeline, resolve) -> None:  # noqa: ANN001 - Pipeline, pipeline.resolve
    """The ``compose policy judge`` stage, fingerprinted on its config and on the stages that made both readers."""
    from csrm.app.pipeline_rule import MODEL_DIR as RULE_DIR
    from csrm.app.pipeline_rule import STAGE as RULE_STAGE

    target = pipeline.out / MODEL_DIR
    overrides = [f"category_model={pipeline.model_dir()}", f"rule_model={pipeline.out / RULE_DIR}",
                 f"dataset_path={pipeline.data}", f"rule_data={pipeline.data / 'rules'}", f"output_dir={target}"]
    upstream = {name: pipeline.fingerprints[name] for name in ("augment", "train", "calibrate", RULE_STAGE)
                if name in pipeline.fingerprints}
    pipeline.side_training(STAGE, resolve(pipeline.cfg.policy_judge, pipeline.cfg), overrides, target, upstream)


def evaluate(pipeline) -> None:  # noqa: ANN001 - csrm.app.pipeline.Pipeline
    """The policy judge's eval stage on the recipe's benchmarks, reading its compose stage."""
    pipeline.evaluate(str(pipeline.out / MODEL_DIR), LABEL, upstream={STAGE: pipeline.fingerprints[STAGE]})


def report_lines(out, composed: dict[str, Any]) -> list[str]:  # noqa: ANN001 - a Path
    """The report's policy-judge paragraph from ``model_policy/train_results.json``."""
    if not composed:
        return []
    held = composed.get("held_out", {})
    cat, rules = held.get("category", {}), held.get("rules", {})
    return ["## Policy judge", "",
            f"One folder, `{out / MODEL_DIR}`, for any policy: category allow lists go to the category reader, "
            f"free-text rules to the rule judge, a policy with both to both (router fitted on "
            f"{composed.get('router_units', {}).get('category')} category and "
            f"{composed.get('router_units', {}).get('rules')} rule units in {composed.get('fit_seconds', 0):.0f} s). "
            f"Held out: {cat.get('routed_whole', 0):.1%} of {cat.get('policies')} category configs and "
            f"{rules.get('routed_whole', 0):.1%} of {rules.get('policies')} generated rule policies are read whole by "
            f"their own reader (unit accuracy {rules.get('unit_accuracy')} on {rules.get('units')} unseen rules). "
            f"Its benchmark rows are labelled `{LABEL}`.", ""]
