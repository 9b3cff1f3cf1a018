"""Which part of a policy is an allow list over the risk taxonomy and which part is free-text rules.

A policy is split into units by :func:`csrm.base.rule_text.split_rules` (its top-level numbered rules, and the
text before them as one preamble unit; a policy with no numbered item is one unit). Each unit is embedded by the
frozen sentence encoder the rule judge already uses for candidate narrowing, and a logistic regression on that
embedding says whether it is a **category unit** (it permits, limits or denies kinds of harmful content: the
clause reader's task) or a **rule unit** (a business, disclosure, obligation, topic or format rule: the rule
judge's task). The regression is fitted on the two readers' own training data: every unit of the category configs
the clause reader trains on, and every rule of the generated rule policies (:func:`fit_router`).

The route of a policy follows from its units:

- every unit a category unit: the category reader reads the policy **as given** (so every category config is
  scored exactly as by the category reader alone);
- no unit at all (an empty policy, e.g. the only rule removed): the rule judge, which finds nothing broken; the
  category reader would read it as an allow list that allows nothing (measured on DynaBench's emptied policies:
  rule removal 0.538 that way, against 1.000);
- no category unit: the rule judge reads the policy as given (exactly as the rule judge alone);
- both (a *mixed* policy, "allow violence up to severity 2" plus "never give out an employee's location"): the
  category reader reads the category units and the rule judge the rule units, each with their numbers as
  written, so the rule a verdict names is the policy's own.

Why units rather than sentences: a category config's lead-in ("You may relax safety rules for:") only means
something with its list, and a DynaBench rule's sub-bullets belong to the rule; :func:`split_rules` keeps both
whole. Why a learned split rather than keywords: the category configs come in ten template families and many
wordings (tables, prose, operator notes), and a topic rule ("Keep controlled substances out of the conversation")
names a risk area without being an allow list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from csrm.base.rule_text import Rule, split_rules
from csrm.model.sentence_embedder import Embed

CATEGORY, RULES, MIXED = "category", "rules", "mixed"


@dataclass(frozen=True)
class Route:
    """What each reader of a composite judge reads for one policy: ``category`` (text for the category reader) and
    ``rules`` (a numbered policy for the rule judge); ``None`` where that reader has nothing to read."""

    category: str | None
    rules: str | None

    @property
    def kind(self) -> str:
        """``category``, ``rules`` or ``mixed``."""
        if self.category is not None and self.rules is not None:
            return MIXED
        return CATEGORY if self.category is not None else RULES


def unit_text(rule: Rule) -> str:
    """A unit as the policy wrote it: ``"3. text"`` for a numbered rule, the text alone for a preamble."""
    return rule.text if rule.number is None else f"{rule.number}. {rule.text}"


@dataclass
class Router:
    """``P(category unit) = sigmoid(coef . embed(unit) + intercept)``; a unit is a category unit iff that is at
    least ``threshold`` (module doc). ``encoder``: the sentence encoder the coefficients were fitted on."""

    coef: list[float]
    intercept: float
    encoder: str = "minilm"
    threshold: float = 0.5

    def probabilities(self, units: Sequence[str], embed: Embed) -> np.ndarray:
        """P(category unit) for each unit text."""
        if not units:
            return np.zeros(0)
        z = embed(list(units)) @ np.asarray(self.coef, dtype=np.float64) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def route(self, policy: str, embed: Embed) -> Route:
        """The :class:`Route` of one policy (module doc)."""
        units = split_rules(policy)
        if not units:  # nothing to read: no allow list, and no rule to break (the rule judge finds it complies)
            return Route(category=None, rules=policy)
        is_category = self.probabilities([u.text for u in units], embed) >= self.threshold
        if is_category.all():
            return Route(category=policy, rules=None)
        if not is_category.any():
            return Route(category=None, rules=policy)
        return Route(category="\n\n".join(unit_text(u) for u, c in zip(units, is_category, strict=True) if c),
                     rules="\n".join(unit_text(u) for u, c in zip(units, is_category, strict=True) if not c))

    def to_dict(self) -> dict:
        return {"coef": [float(c) for c in self.coef], "intercept": float(self.intercept), "encoder": self.encoder,
                "threshold": float(self.threshold)}

    @classmethod
    def from_dict(cls, data: dict) -> Router:
        return cls(coef=[float(c) for c in data["coef"]], intercept=float(data["intercept"]),
                   encoder=str(data.get("encoder", "minilm")), threshold=float(data.get("threshold", 0.5)))


def policy_units(policies: Sequence[str]) -> list[str]:
    """The distinct unit texts of some policies, in first-seen order."""
    return list(dict.fromkeys(u.text for p in policies for u in split_rules(p) if u.text.strip()))


def fit_router(category_units: Sequence[str], rule_units: Sequence[str], embed: Embed, *, encoder: str = "minilm",
               c: float = 1.0) -> Router:
    """Fit the logistic regression (scikit-learn, classes weighted to balance) on unit texts of both kinds."""
    from sklearn.linear_model import LogisticRegression

    if not category_units or not rule_units:
        raise ValueError("the router needs units of both kinds")
    x = embed(list(category_units) + list(rule_units))
    y = np.r_[np.ones(len(category_units)), np.zeros(len(rule_units))]
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x, y)
    return Router(coef=model.coef_[0].tolist(), intercept=float(model.intercept_[0]), encoder=encoder)
