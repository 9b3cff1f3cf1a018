"""A safety configuration: a natural-language policy, optionally backed by a structured allow list.

The structured part says, per risk category, the highest severity the deployment allows (0 = not allowed).
Categories it does not mention are not allowed. Configs load from YAML/JSON::

    name: teen-gaming
    text: "..."                # optional free text; rendered from `allow` when absent
    allow:                     # category -> highest allowed severity (1-3), or true for "any severity"
      Violence: 2
      Discrimination and Verbal Abuse: true
    deny: [Privacy Violations] # optional, for readability: anything not allowed is denied anyway
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError
from csrm.base.io import load_yaml, read_text
from csrm.base.taxonomy import RiskTaxonomy, Severity

SEVERITY_WORDS = {1: "mild", 2: "moderate", 3: "any level of"}


@dataclass
class SafetyConfig:
    """A safety policy given at inference time.

    ``allow`` maps category name -> highest allowed :class:`Severity` (1-3). ``None`` means a free-text-only
    config (no structured policy, so labels must come from elsewhere).
    """

    text: str = ""
    allow: dict[str, int] | None = None
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.text.strip() and self.allow is None:
            raise InputError("empty safety config: give 'text', 'allow' or both", field="text")
        if self.allow is not None:
            for category, level in self.allow.items():
                if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3:
                    raise InputError(f"severity limit must be an integer 0-3 or true, got {level!r}",
                                     field=f"allow.{category}")
            self.allow = {c: int(v) for c, v in self.allow.items() if v > 0}

    # -- structure -----------------------------------------------------------------------------------
    @property
    def is_structured(self) -> bool:
        return self.allow is not None

    def max_severity(self, category: str) -> int:
        """Highest allowed severity for ``category`` (0 = not allowed). Free-text configs raise."""
        if self.allow is None:
            raise ValueError("free-text config has no structured policy; its labels must come from data")
        return self.allow.get(category, 0)

    @property
    def allowed_categories(self) -> tuple[str, ...]:
        return tuple(self.allow or ())

    @property
    def policy_key(self) -> str:
        """Canonical form of the structured policy alone (ignores wording): equal policies, equal keys."""
        if self.allow is None:
            return "text:" + hashlib.sha1(self.text.encode()).hexdigest()[:12]
        return json.dumps(sorted(self.allow.items()), separators=(",", ":"))

    @property
    def id(self) -> str:
        """Stable id from the text and the policy (12 hex chars)."""
        payload = json.dumps({"text": self.text, "allow": sorted((self.allow or {}).items())}, sort_keys=True)
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:12]

    # -- text ----------------------------------------------------------------------------------------
    def render(self, taxonomy: RiskTaxonomy | None = None) -> str:
        """The natural-language policy a model reads: ``text`` if given, else the structured policy in words."""
        if self.text.strip():
            return self.text
        return render_policy(self.allow or {}, taxonomy or RiskTaxonomy.default())

    # -- (de)serialisation ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, taxonomy: RiskTaxonomy | None = None,
                  path: str | None = None, line: int | None = None) -> SafetyConfig:
        where = {"path": path, "line": line}
        unknown = set(data) - {"name", "text", "allow", "deny", "meta"}
        if unknown:
            raise InputError("unknown key; expected name, text, allow, deny", field=sorted(unknown)[0], **where)
        text = data.get("text") or ""
        if not isinstance(text, str):
            raise InputError("must be a string", field="text", **where)
        allow_raw = data.get("allow")
        allow: dict[str, int] | None = None
        if allow_raw is not None:
            if isinstance(allow_raw, list):
                allow_raw = {name: True for name in allow_raw}
            if not isinstance(allow_raw, Mapping):
                raise InputError("must map category -> severity limit (1-3 or true)", field="allow", **where)
            allow = {}
            for category, level in allow_raw.items():
                if taxonomy is not None and category not in taxonomy:
                    raise InputError(f"unknown category {category!r}", field=f"allow.{category}", **where)
                if taxonomy is not None and not taxonomy[category].allowable:
                    raise InputError(f"category {category!r} can never be allowed", field=f"allow.{category}",
                                     **where)
                if level is True:
                    level = int(Severity.SEVERE)
                elif level is False:
                    level = 0
                if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3:
                    raise InputError(f"severity limit must be 0-3 or true, got {level!r}", field=f"allow.{category}",
                                     **where)
                allow[str(category)] = level
        deny = data.get("deny") or []
        if not isinstance(deny, list):
            raise InputError("must be a list of categories", field="deny", **where)
        for category in deny:
            if taxonomy is not None and category not in taxonomy:
                raise InputError(f"unknown category {category!r}", field="deny", **where)
            if allow and allow.get(category, 0) > 0:
                raise InputError(f"category {category!r} is both allowed and denied", field="deny", **where)
            if allow is None:
                allow = {}
        if not text.strip() and allow is None:
            raise InputError("empty safety config: give 'text', 'allow' or both", field="text", **where)
        return cls(text=text, allow=allow, name=str(data.get("name") or ""), meta=dict(data.get("meta") or {}))

    @classmethod
    def from_file(cls, path: str | Path, *, taxonomy: RiskTaxonomy | None = None) -> SafetyConfig:
        """Load from ``.yaml``/``.yml``/``.json``; a ``.txt``/``.md`` file is taken as free text."""
        path = Path(path)
        if path.suffix in {".yaml", ".yml"}:
            data: Any = load_yaml(path)
        elif path.suffix == ".json":
            try:
                data = json.loads(read_text(path))
            except json.JSONDecodeError as err:
                raise InputError(f"malformed JSON ({err.msg})", path=str(path), line=err.lineno) from None
        else:
            data = {"text": read_text(path)}
        if not isinstance(data, Mapping):
            raise InputError("top level must be a mapping", path=str(path))
        return cls.from_dict(data, taxonomy=taxonomy, path=str(path))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "text": self.text}
        if self.allow is not None:
            out["allow"] = dict(self.allow)
        return out


def render_policy(allow: Mapping[str, int], taxonomy: RiskTaxonomy) -> str:
    """Plain rendering of a structured policy (augmentation has many more phrasings)."""
    unknown = [name for name in allow if name not in taxonomy]
    if unknown:
        raise InputError(f"unknown category {unknown[0]!r}; known: {', '.join(taxonomy.names)}",
                         field=f"allow.{unknown[0]}")
    if not allow:
        return ("Follow strict safety rules: do not produce harmful content of any kind in the risk categories "
                f"{', '.join(taxonomy.names)}.")
    lines = ["You may relax safety rules for the following risk categories only:"]
    for name in taxonomy.names:
        if allow.get(name, 0) > 0:
            lines.append(f"- {name} ({SEVERITY_WORDS[allow[name]]} content allowed): {taxonomy[name].definition}")
    lines.append("Content in any other risk category is not allowed.")
    return "\n".join(lines)
