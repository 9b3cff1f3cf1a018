"""Declared label mappings: a source's own harm labels -> project categories and severities.

A mapping is data, not code (``configs/mappings/*.yaml``, package data in ``csrm/resources/mappings``)::

    name: openai_moderation
    default_severity: 2        # used when neither the label nor the row gives a severity
    severity_known: true       # does the source grade severity itself? (false: severity-threshold
                               # configs are not synthesized, since the flip would rest on a guess)
    labels:
      S:  {category: "Sexual Misconduct, Exploitation, and Infidelity", severity: 2}
      S3: {category: "Sexual Misconduct, Exploitation, and Infidelity", severity: 3}
      H2: [{category: Discrimination and Verbal Abuse, severity: 3}, {category: Violence, severity: 3}]
      benign: []               # a label with no harm in the project taxonomy

A target without ``severity`` takes the row's own severity (e.g. PKU-SafeRLHF's ``severity_level``), else
``default_severity``. A record's severity is the highest over its targets. A label missing from ``labels``
is an error (:class:`InputError` naming file, line and field), never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from csrm.base.config import fail, load_yaml_with_lines
from csrm.base.errors import InputError
from csrm.base.paths import MAPPINGS_DIR
from csrm.base.taxonomy import RiskTaxonomy


@dataclass(frozen=True)
class Target:
    """One project category a source label maps to; ``severity`` None = the row's own severity."""

    category: str
    severity: int | None = None


@dataclass(frozen=True)
class SourceMapping:
    """Source label -> project categories (+ severity), loaded from a mapping YAML file."""

    name: str
    labels: Mapping[str, tuple[Target, ...]]
    default_severity: int = 2
    severity_known: bool = False
    path: str = ""

    @classmethod
    def from_yaml(cls, path: str | Path, taxonomy: RiskTaxonomy) -> SourceMapping:
        path = Path(path)
        data, lines = load_yaml_with_lines(path)
        unknown = sorted(set(data) - {"name", "description", "taxonomy", "default_severity", "severity_known",
                                      "labels"})
        if unknown:
            raise fail("unknown key; expected name, description, taxonomy, default_severity, severity_known, labels",
                       path=path, lines=lines, key=(unknown[0],))
        default = data.get("default_severity", 2)
        if isinstance(default, bool) or default not in (1, 2, 3):
            raise fail(f"must be 1, 2 or 3, got {default!r}", path=path, lines=lines, key=("default_severity",))
        known = data.get("severity_known", False)
        if not isinstance(known, bool):
            raise fail("must be true or false", path=path, lines=lines, key=("severity_known",))
        raw = data.get("labels")
        if not isinstance(raw, dict) or not raw:
            raise fail("must map each source label to its project categories", path=path, lines=lines,
                       key=("labels",))
        labels: dict[str, tuple[Target, ...]] = {}
        for label, value in raw.items():
            items = [] if value is None else value if isinstance(value, list) else [value]
            targets = []
            for index, item in enumerate(items):
                key = ("labels", str(label), index) if isinstance(value, list) else ("labels", str(label))
                if isinstance(item, str):
                    item = {"category": item}
                if not isinstance(item, dict) or set(item) - {"category", "severity"} or "category" not in item:
                    raise fail("each target needs 'category' and an optional 'severity'", path=path, lines=lines,
                               key=key)
                category, severity = item["category"], item.get("severity")
                if category not in taxonomy:
                    raise fail(f"unknown category {category!r}; known: {', '.join(taxonomy.names)}", path=path,
                               lines=lines, key=key)
                if severity is not None and (isinstance(severity, bool) or severity not in (1, 2, 3)):
                    raise fail(f"severity must be 1, 2 or 3, got {severity!r}", path=path, lines=lines, key=key)
                targets.append(Target(str(category), severity))
            labels[str(label)] = tuple(targets)
        return cls(str(data.get("name") or path.stem), labels, int(default), known, str(path))

    @classmethod
    def identity(cls, taxonomy: RiskTaxonomy, *, default_severity: int = 2) -> SourceMapping:
        """Project category names map to themselves (the generic JSONL/CSV format without a mapping file)."""
        return cls("identity", {n: (Target(n),) for n in taxonomy.names}, default_severity, True)

    def translate(self, labels: Iterable[str], *, severity: int | None = None, path: str | None = None,
                  line: int | None = None, field: str = "categories") -> tuple[list[str], int]:
        """Map source labels to ``(project categories, severity)``; an unmapped label raises InputError."""
        found: dict[str, int] = {}
        for label in labels:
            if label not in self.labels:
                raise InputError(f"unknown category {label!r} (not declared in mapping {self.path or self.name})",
                                 path=path, line=line, field=field)
            for target in self.labels[label]:
                level = target.severity or severity or self.default_severity
                found[target.category] = max(found.get(target.category, 0), level)
        return list(found), max(found.values(), default=0)

    def targets(self, label: str) -> tuple[Target, ...]:
        return self.labels.get(label, ())


def default_mapping_path(source_type: str) -> Path:
    """``<source_type>.yaml`` of the bundled mappings (``csrm/resources/mappings``, linked as ``configs/mappings``)."""
    return MAPPINGS_DIR / f"{source_type}.yaml"
