"""The rule judge as a saved CSRM: ``config.json`` says ``model_type: csrm_rule`` so that ``csrm.load`` finds the
family (:mod:`csrm.model.registry`), like the clause family's ``csrm_clause``.

The trained pair model is a plain ``AutoModelForSequenceClassification`` (one logit per rule x window pair); on
disk it sits inside :class:`RuleJudgeModel` as ``judge`` (weights ``judge.*``), with its own config as the
sub-config ``judge``. Everything the predictor needs besides the weights travels in the same config: the scoring
settings (``rule_judge``: args, calibration, candidate model, what training measured), the dev-tuned
``threshold`` on P(violation) that :class:`csrm.scoring.scorer.Scorer` reads, and ``config_thresholds`` /
``taxonomy`` (the fields every family's config has; the rule judge reads free-text rules, so no taxonomy).
A wrapper rather than a new architecture: the pair model stays any transformers classifier (MiniLM today).
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec

MODEL_TYPE = "csrm_rule"


class RuleJudgeConfig(PretrainedConfig):
    """A saved rule judge's configuration: the pair model's config plus the scoring metadata (module doc)."""

    model_type = MODEL_TYPE
    sub_configs_defaults = {"judge": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    judge: PretrainedConfig | dict | None = None
    rule_judge: dict | None = None
    threshold: float = 0.5
    config_thresholds: dict | None = None
    taxonomy: dict | None = None


class RuleJudgeModel(PreTrainedModel):
    """The pair classifier under ``judge`` (module doc); ``forward`` is the classifier's."""

    config_class = RuleJudgeConfig
    base_model_prefix = "judge"
    _no_split_modules: list[str] = []

    def __init__(self, config: RuleJudgeConfig, judge: PreTrainedModel | None = None):
        super().__init__(config)
        self.judge = judge if judge is not None else AutoModelForSequenceClassification.from_config(config.judge)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing: the weights are the trained judge's (given, or loaded from the folder)."""

    def forward(self, **inputs):
        return self.judge(**inputs)

    @classmethod
    def wrap(cls, judge: PreTrainedModel, *, meta: dict, threshold: float) -> RuleJudgeModel:
        """A trained pair classifier with its scoring metadata, ready for ``save_pretrained``."""
        config = RuleJudgeConfig(judge=judge.config.to_dict(), rule_judge=meta, threshold=float(threshold))
        config.judge = judge.config
        return cls(config, judge=judge)
