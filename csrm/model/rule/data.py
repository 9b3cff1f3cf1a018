"""Rule-data rows (the DynaBench hub schema) as judged units: rules, turns, and which (rule, turn) violate.

A row is ``{"policy", "transcript", "label": "PASS"|"FAIL", "base_id", "metadata": "<JSON>"}`` with
``metadata.violations = [[rule_number, turn_index], ...]`` (turn_index into ``split_turns(transcript)``), as
written by the rules augmentation (:func:`augmentation.rules.policy.make_row`). DynaBench's own rows have no
``violations`` but ``rules_violated`` (rule numbers only): the pair labels are then unknown and only the item
label is used (evaluation). ``metadata.case_dependent`` and ``metadata.history_dependent`` (optional) list the
rules whose verdict on the row depends on letter case and the (rule, turn) pairs whose verdict needs more of the
conversation than the pair shows (:mod:`augmentation.rules.policy`). Every policy and transcript is read
through :mod:`csrm.base.rule_text`, the one parser the generator also reads back with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError
from csrm.base.io import iter_jsonl, require
from csrm.base.rule_text import Rule, Turn, agent_turns, split_rules, split_turns

LABELS = {"PASS": 0, "FAIL": 1}


@dataclass
class RuleExample:
    """One row: its rules and turns, the item label (1 = FAIL), and the violating (rule number, turn index)
    pairs (``None`` when the row does not say, as in DynaBench); ``case_dependent``: numbers of the rules whose
    verdict here depends on letter case; ``history_dependent``: (rule number, turn index) pairs whose verdict needs
    more than that turn and the User turn before it."""

    rules: list[Rule]
    turns: list[Turn]
    label: int
    violations: set[tuple[int | None, int]] | None
    base_id: str = ""
    conversation: str = ""  # the scaffold a violating transcript and its compliant twin share (else base_id)
    family: str = ""
    contrast: str = ""
    rules_violated: list[int] = field(default_factory=list)
    where: str = ""
    case_dependent: set[int] = field(default_factory=set)
    history_dependent: set[tuple[int, int]] = field(default_factory=set)

    @property
    def agent_indices(self) -> list[int]:
        return agent_turns(self.turns)


def parse_row(row: dict[str, Any], *, path: str = "", line: int | None = None) -> RuleExample:
    """A :class:`RuleExample` from one hub-schema row; bad fields are InputErrors naming file, line, field."""
    where = {"path": path or None, "line": line}
    policy = require(row, "policy", str, **where)
    transcript = require(row, "transcript", str, **where)
    raw = require(row, "label", str, **where).strip().upper()
    if raw not in LABELS:
        raise InputError(f"unknown label {raw!r}; expected PASS or FAIL", field="label", **where)
    meta = row.get("metadata") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except json.JSONDecodeError as err:
            raise InputError(f"metadata is not JSON ({err.msg})", field="metadata", **where) from None
    if not isinstance(meta, dict):
        raise InputError("metadata must be a JSON object", field="metadata", **where)
    turns = split_turns(transcript)
    violations = None
    if meta.get("violations") is not None:
        violations = set()
        for pair in meta["violations"]:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], int)):
                raise InputError(f"expected [rule_number, turn_index], got {pair!r}", field="metadata.violations",
                                 **where)
            if not 0 <= pair[1] < len(turns) or turns[pair[1]].role != "assistant":
                raise InputError(f"turn {pair[1]} is not an Agent turn of the transcript",
                                 field="metadata.violations", **where)
            violations.add((pair[0], pair[1]))
        if bool(violations) != (raw == "FAIL"):
            raise InputError(f"label {raw} disagrees with {len(violations)} violation(s)",
                             field="metadata.violations", **where)
    rules_violated = meta.get("rules_violated") or sorted({r for r, _ in violations or ()} - {None})
    case_dependent = meta.get("case_dependent") or []
    if not (isinstance(case_dependent, list) and all(isinstance(n, int) for n in case_dependent)):
        raise InputError(f"expected a list of rule numbers, got {case_dependent!r}", field="metadata.case_dependent",
                         **where)
    history = meta.get("history_dependent") or []
    if not (isinstance(history, list) and all(isinstance(p, list) and len(p) == 2 for p in history)):
        raise InputError(f"expected [rule_number, turn_index] pairs, got {history!r}",
                         field="metadata.history_dependent", **where)
    return RuleExample(rules=split_rules(policy), turns=turns, label=LABELS[raw], violations=violations,
                       base_id=str(row.get("base_id") or ""),
                       conversation=str(meta.get("conversation") or row.get("base_id") or ""),
                       family=str(meta.get("family") or ""),
                       contrast=str(meta.get("contrast") or ""), rules_violated=list(rules_violated),
                       where=f"{path}:{line}" if path else "", case_dependent=set(case_dependent),
                       history_dependent={(int(r), int(t)) for r, t in history})


def read_examples(path: str | Path) -> list[RuleExample]:
    """Every row of a JSONL file as a :class:`RuleExample`."""
    if not Path(path).is_file():
        raise InputError("no such file", path=str(path))
    return [parse_row(row, path=str(path), line=line) for line, row in iter_jsonl(path)]


def preceding_user(turns: list[Turn], index: int) -> str:
    """The User turn just before ``turns[index]`` (the judged Agent turn's context), or ``""``."""
    return turns[index - 1].text if index > 0 and turns[index - 1].role == "user" else ""
