"""Training dispatch: a training YAML names its model family (``architecture``, default the shipped design,
``clause``); the family's config class and trainer come from :mod:`csrm.model.registry`.

:func:`load_train_config` reads the YAML plus overrides through :mod:`csrm.base.config` into the family's
config (:class:`~csrm.model.clause.args.ClauseTrainConfig`,
:class:`~csrm.model.cross_encoder.args.CrossEncoderTrainConfig` or :class:`~csrm.model.rule.args.RuleJudgeArgs`):
every key, type and bound is checked (a field of another family's config is an unknown key, named) before
anything is loaded, errors name file, line and field. :func:`run_training` hands the config to the family's
trainer. ``csrm train``'s command line is :mod:`csrm.app.train`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from csrm.base import config as config_system
from csrm.base.errors import InputError
from csrm.base.io import check_output_dir
from csrm.model.registry import DEFAULT_FAMILY, Family, family, trainable_families


def family_of(data: dict[str, Any], where: dict[str, Any]) -> Family:
    """The family a training mapping names (``architecture``; default :data:`DEFAULT_FAMILY`)."""
    name = data.get("architecture", DEFAULT_FAMILY)
    if name not in trainable_families():  # a family without a trainer would not be trained here
        raise config_system.fail(f"expected one of {', '.join(trainable_families())}, got {name!r}",
                                 key=("architecture",),
                                 **where)
    return family(name)


def load_train_config(path: str | Path | None, overrides: list[str] | None = None, *, instantiate: bool = True,
                      **values: Any) -> tuple[Any, dict[str, Any]]:
    """(the family's config, the mapping it was built from: the YAML with overrides and ``values`` applied, its
    values as checked) of a training YAML (optional) plus overrides. ``instantiate=False`` checks everything and returns the checked
    keyword arguments instead of the config (no ``TrainingArguments`` set-up: for checking a recipe early)."""
    data, where = config_system.read(path, [*(overrides or []), *(f"{k}={_yaml(v)}" for k, v in values.items())])
    cls = family_of(data, where).load("args")
    kwargs = config_system.build(cls, data, instantiate=False, **where)
    raw = {key: kwargs.get(key, value) for key, value in data.items()}  # as checked: '5e-4' is the float 0.0005
    if not instantiate:
        return kwargs, raw
    try:
        return cls(**kwargs), raw
    except InputError:
        raise
    except ValueError as err:  # TrainingArguments' own cross-field checks
        raise InputError(str(err), path=str(path) if path is not None else None) from None


def _yaml(value: Any) -> str:
    """A keyword value as an override's text: JSON, which YAML reads back as the same value."""
    return json.dumps(value)


def config_class(path: str | Path | None, overrides: list[str] | None = None) -> type:
    """The config class of the family a YAML (optional) plus overrides names, for ``csrm train --help``."""
    data, where = config_system.read(path, overrides or [])
    return family_of(data, where).load("args")


def check_train_output(cfg: Any) -> None:
    """Refuse an ``output_dir`` that is an input (dataset, a local model, the checkpoints), or a non-empty folder
    that is not an earlier ``csrm train`` output, unless ``overwrite`` (:func:`csrm.base.io.check_output_dir`)."""
    local = {name: value for name in ("model_name_or_path", "tokenizer_name_or_path")
             if (value := getattr(cfg, name, None)) and Path(value).expanduser().exists()}
    inputs = {"dataset_path": cfg.dataset_path, "checkpoint_dir": getattr(cfg, "checkpoint_dir", None), **local}
    check_output_dir(cfg.output_dir, "train", overwrite=cfg.overwrite, legacy=("train_results.json",),
                     inputs={k: v for k, v in inputs.items() if v})


def run_training(cfg: Any, *, raw_config: dict[str, Any] | None = None, callbacks: list | None = None
                 ) -> dict[str, Any]:
    """Train, evaluate and save the final model to ``cfg.output_dir`` with the family's trainer; returns its
    summary. ``callbacks`` (``transformers.TrainerCallback``) exist only for the cross-encoder's Trainer."""
    check_train_output(cfg)
    fam = family(cfg.architecture)
    options = {"callbacks": callbacks} if callbacks else {}
    if callbacks and fam.name != "cross_encoder":
        raise InputError(f"Trainer callbacks need architecture cross_encoder, not {fam.name}", field="architecture")
    return fam.load("trainer")(cfg, raw_config=raw_config, **options)
