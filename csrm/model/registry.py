"""The model families: family name -> where its model, training config, trainer and predictor live.

Each family is one folder under ``csrm/model/`` (``clause/``, ``cross_encoder/``, ``rule/``): ``modeling.py`` (the
``PreTrainedModel``), ``args.py`` (the training config: only the fields its trainer reads), ``trainer.py``
(``train(args, raw_config=...) -> summary``) and ``predictor.py`` (the forward pass that
:class:`csrm.scoring.scorer.Scorer` wraps). The entries are import strings, resolved on use, so importing this
registry (``csrm train --help``, ``csrm.load``'s dispatch) pulls in neither torch nor transformers.

A saved model folder names its family by ``config.json``'s ``model_type`` (:attr:`Family.model_type`), which
is what ``transformers``' Auto classes read too. A new family is one more entry here and one more folder; nothing
in scoring or training changes (the rule judge came in that way).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError

DEFAULT_FAMILY = "clause"  # the design both shipped recipes train (``architecture`` when a config names none)


@dataclass(frozen=True)
class Family:
    """One model family: its name (the training config's ``architecture``), its saved ``model_type`` and the
    ``module:attribute`` import strings of its parts. ``trainer`` ``None``: a family ``csrm.load`` scores but
    ``csrm train`` does not train (none today; :func:`trainable_families` leaves such a family out)."""

    name: str
    model_type: str
    model: str
    args: str
    trainer: str | None
    predictor: str
    summary: str

    def load(self, part: str) -> Any:
        """The object behind one part (``model``, ``args``, ``trainer`` or ``predictor``), imported now."""
        module, _, attribute = getattr(self, part).partition(":")
        return getattr(importlib.import_module(module), attribute)


FAMILIES: dict[str, Family] = {
    "clause": Family(
        name="clause", model_type="csrm_clause",
        model="csrm.model.clause.modeling:ClauseCSRMModel",
        args="csrm.model.clause.args:ClauseTrainConfig",
        trainer="csrm.model.clause.trainer:train",
        predictor="csrm.model.clause.predictor:ClausePredictor",
        summary="the clause-reading CSRM: frozen encoder, config split into clauses and content into windows, "
                "small heads trained on cached features (csrm/model/clause/)"),
    "cross_encoder": Family(
        name="cross_encoder", model_type="csrm",
        model="csrm.model.cross_encoder.modeling:CSRMModel",
        args="csrm.model.cross_encoder.args:CrossEncoderTrainConfig",
        trainer="csrm.model.cross_encoder.train:train",
        predictor="csrm.model.cross_encoder.predictor:CrossEncoderPredictor",
        summary="one (config, conversation, response) sequence through a fine-tuned backbone "
                "(csrm/model/cross_encoder/)"),
    "rule": Family(
        name="rule", model_type="csrm_rule",
        model="csrm.model.rule.saved:RuleJudgeModel",
        args="csrm.model.rule.args:RuleJudgeArgs",
        trainer="csrm.model.rule.trainer:train",
        predictor="csrm.model.rule.predictor:RuleFamilyPredictor",
        summary="the rule judge: a cross-encoder over (numbered rule, Agent turn window) pairs, OR over the pairs, "
                "the driving rule and turn as evidence; trained on rule data from a rules augmentation "
                "(csrm/model/rule/)"),
    "policy": Family(
        name="policy", model_type="csrm_policy",
        model="csrm.model.policy.saved:PolicyJudgeModel",
        args="csrm.model.policy.args:PolicyJudgeArgs",
        trainer="csrm.model.policy.trainer:train",
        predictor="csrm.model.policy.predictor:PolicyPredictor",
        summary="the policy judge: one folder holding a category reader and a rule judge, and a router that sends "
                "each part of a policy (allow lists over the taxonomy, free-text rules) to the reader made for it "
                "(csrm/model/policy/)"),
}


def trainable_families() -> list[str]:
    """The families ``csrm train`` trains (those with a trainer), in registry order."""
    return [name for name, fam in FAMILIES.items() if fam.trainer is not None]


def family(name: str) -> Family:
    """The family called ``name``; an unknown name is an :class:`InputError` naming ``architecture``."""
    if name not in FAMILIES:
        raise InputError(f"unknown model family {name!r}; expected one of {', '.join(FAMILIES)}",
                         field="architecture")
    return FAMILIES[name]


def family_of_model_type(model_type: str, *, where: str | None = None) -> Family:
    """The family whose saved models say ``model_type`` in ``config.json``."""
    for fam in FAMILIES.values():
        if fam.model_type == model_type:
            return fam
    known = ", ".join(f.model_type for f in FAMILIES.values())
    raise InputError(f"not a CSRM: model_type {model_type!r} (a CSRM's is one of {known})", path=where,
                     field="model_type")


def saved_family(path: str | Path, *, trust_remote_code: bool = False) -> Family:
    """The family of a saved model: a local folder's ``config.json``, else a hub id's (through
    ``transformers.PretrainedConfig.get_config_dict``, which needs no registered model type)."""
    config = Path(path) / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "")
        except ValueError as err:
            raise InputError(f"unreadable config.json: {err}", path=str(config)) from None
        return family_of_model_type(model_type, where=str(config))
    from transformers import PretrainedConfig

    try:
        data, _ = PretrainedConfig.get_config_dict(str(path), trust_remote_code=trust_remote_code)
    except OSError as err:  # not a local folder and not on the hub (or offline): a located error
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load a CSRM from here: {first}", path=str(path)) from None
    return family_of_model_type(data.get("model_type", ""), where=str(path))


def refuse_unsupported(family_name: str, options: dict[str, Any]) -> None:
    """An option a family does not support, set to anything but ``None`` (unset) or ``False`` (off, which is
    what the family does anyway), is an :class:`InputError` naming it, never silently dropped."""
    for name, value in options.items():
        if value is not None and value is not False:
            raise InputError(f"the {family_name} family does not support {name}={value!r}", field=name)
