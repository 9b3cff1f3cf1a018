"""Source adapters for the hub datasets ``pku_saferlhf``, ``beavertails`` and ``wildguardmix``, read through
``datasets.load_dataset`` (never called in tests: pass ``rows=`` to convert in-memory rows of the same schema).
The dispatch table is :data:`augmentation.sources.READERS`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from augmentation.labelled import LabelledRecord, numbered
from augmentation.mapping import SourceMapping
from augmentation.recipe import Recipe, SourceSpec
from csrm.base.errors import InputError
from csrm.base.io import require
from csrm.base.records import as_messages
from csrm.base.taxonomy import RiskTaxonomy

HUB_DEFAULTS = {
    "pku_saferlhf": ("PKU-Alignment/PKU-SafeRLHF", "", "train"),
    "beavertails": ("PKU-Alignment/BeaverTails", "", "30k_train"),
    "wildguardmix": ("allenai/wildguardmix", "wildguardtrain", "train"),
}


def hub_rows(spec: SourceSpec) -> tuple[Iterable[dict[str, Any]], str]:
    """Load a hub dataset split with ``datasets.load_dataset`` (needs the network or a warm cache)."""
    from datasets import load_dataset

    name, config, split = HUB_DEFAULTS[spec.type]
    if spec.type == "wildguardmix" and spec.hub_config == "wildguardtest":
        split = "test"  # wildguardtest has a single "test" split
    name, config, split = spec.hub_name or name, spec.hub_config or config, spec.split or split
    dataset = load_dataset(name, config or None, split=split, revision=spec.revision or None)
    return dataset, f"hf://{name}" + (f"/{config}" if config else "") + f"[{split}]"


def _hub_items(spec: SourceSpec, rows: Iterable[dict[str, Any]] | None) -> tuple[Iterable[tuple[int, dict]], str]:
    if rows is not None:
        return numbered(rows), f"<rows:{spec.type}>"
    dataset, where = hub_rows(spec)
    return numbered(dataset), where


def _flags(value: Any, *, path: str, line: int, field: str) -> list[str]:
    if not isinstance(value, dict):
        raise InputError("expected a mapping of category -> bool", path=path, line=line, field=field)
    return [k for k, v in value.items() if v]


def _read_pku(spec: SourceSpec, mapping: SourceMapping, taxonomy: RiskTaxonomy, recipe: Recipe | None,
              rows: Iterable[dict[str, Any]] | None) -> Iterator[LabelledRecord]:
    """PKU-SafeRLHF: two responses per prompt, each with ``is_response_i_safe``, a 19-flag harm-category dict
    and ``response_i_severity_level`` (0-3). Unsafe responses without any flag go to the mapping's
    ``__unlabelled__`` label."""
    items, where = _hub_items(spec, rows)
    for line, row in items:
        prompt = require(row, "prompt", str, path=where, line=line)
        for i in (0, 1):
            response = require(row, f"response_{i}", str, path=where, line=line)
            safe = bool(row.get(f"is_response_{i}_safe"))
            labels = _flags(row.get(f"response_{i}_harm_category") or {}, path=where, line=line,
                            field=f"response_{i}_harm_category")
            level = row.get(f"response_{i}_severity_level")
            if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3):
                raise InputError(f"must be 0-3, got {level!r}", path=where, line=line,
                                 field=f"response_{i}_severity_level")
            if safe:
                labels = []
            elif not labels:
                labels = ["__unlabelled__"]
            categories, severity = mapping.translate(labels, severity=level or None, path=where, line=line,
                                                     field=f"response_{i}_harm_category")
            yield LabelledRecord(messages=as_messages(prompt), response=response,
                                 categories=tuple(taxonomy.check(categories)), severity=severity,
                                 source=spec.source_name, severity_known=bool(level))


def _read_beavertails(spec: SourceSpec, mapping: SourceMapping, taxonomy: RiskTaxonomy, recipe: Recipe | None,
                      rows: Iterable[dict[str, Any]] | None) -> Iterator[LabelledRecord]:
    """BeaverTails: ``prompt``, ``response``, ``category`` (14 flags), ``is_safe``; no severity grading."""
    items, where = _hub_items(spec, rows)
    for line, row in items:
        prompt = require(row, "prompt", str, path=where, line=line)
        response = require(row, "response", str, path=where, line=line)
        labels = _flags(row.get("category") or {}, path=where, line=line, field="category")
        if row.get("is_safe"):
            labels = []
        elif not labels:
            labels = ["__unlabelled__"]
        categories, severity = mapping.translate(labels, path=where, line=line, field="category")
        yield LabelledRecord(messages=as_messages(prompt), response=response,
                             categories=tuple(taxonomy.check(categories)), severity=severity,
                             source=spec.source_name, severity_known=False)


def _read_wildguard(spec: SourceSpec, mapping: SourceMapping, taxonomy: RiskTaxonomy, recipe: Recipe | None,
                    rows: Iterable[dict[str, Any]] | None) -> Iterator[LabelledRecord]:
    """WildGuardMix: the prompt's ``subcategory`` gives the harm type; ``response_harm_label`` says whether the
    response carries it, ``response_refusal_label`` whether it refuses. Request level: ``prompt_harm_label``."""
    items, where = _hub_items(spec, rows)
    for line, row in items:
        prompt = require(row, "prompt", str, path=where, line=line)
        sub = str(row.get("subcategory") or "benign")
        if spec.use_as in {"request", "both"} and row.get("prompt_harm_label") in {"harmful", "unharmful"}:
            labels = [sub] if row["prompt_harm_label"] == "harmful" else []
            categories, severity = mapping.translate(labels, path=where, line=line, field="subcategory")
            yield LabelledRecord(messages=as_messages(prompt), response=None,
                                 categories=tuple(taxonomy.check(categories)), severity=severity,
                                 source=spec.source_name, severity_known=False)
        response = row.get("response")
        if spec.use_as in {"response", "both"} and isinstance(response, str) and response.strip():
            harm = row.get("response_harm_label")
            if harm not in {"harmful", "unharmful"}:
                continue  # unlabelled response (some test rows): nothing to learn from
            labels = [sub] if harm == "harmful" else []
            if harm == "harmful" and sub == "benign":
                labels = ["__unlabelled__"]
            categories, severity = mapping.translate(labels, path=where, line=line, field="subcategory")
            refusal = row.get("response_refusal_label") == "refusal"
            yield LabelledRecord(messages=as_messages(prompt), response=response,
                                 categories=tuple(taxonomy.check(categories)), severity=severity,
                                 source=spec.source_name, is_refusal=refusal, helpful=not refusal,
                                 severity_known=False)
