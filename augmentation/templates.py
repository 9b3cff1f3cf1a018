"""Natural-language renderings of a structured policy (category -> highest allowed severity).

Ten template families (list, prose, deny-first, numbered rules, scenario, table, key-value, terse, operator
note, checklist) crossed with phrasing choices drawn per rendering: category order (taxonomy or shuffled),
definitions (none, short, full), severity wording (four vocabularies, plus "no qualifier" for any
severity), whether the denied categories are listed, and whether "Other Harms" is named. Every rendering
states the complete policy, so the label is recoverable from the text alone; no single template or phrase
identifies a policy, so a model has to read the text.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from csrm.base.taxonomy import RiskTaxonomy

# Severity vocabularies: level -> how "allowed up to this level" is said.
SEVERITY_STYLES: tuple[dict[int, str], ...] = (
    {1: "mild content only", 2: "up to moderate content", 3: "content of any severity"},
    {1: "only low-severity material such as news, history, education or fiction without detail",
     2: "low- or moderate-severity material, but nothing severe",
     3: "material at any severity, including severe"},
    {1: "at most severity 1, low", 2: "at most severity 2, moderate", 3: "any severity level, 1 to 3"},
    {1: "only when it stays harmless in context, as in a mention, news, history or education, with no "
        "endorsement or detail",
     2: "including endorsement, offensive language or general non-specific help, but never explicit, targeted "
        "or specific content",
     3: "without a severity limit, explicit or specific content included"},
)
SEVERITY_LEGEND = ("Severity levels: 1 = low (the topic appears but harmlessly), 2 = moderate (endorsement, "
                   "offensive language, general help), 3 = severe (explicit, targeted or specific harmful "
                   "content).")
SCENARIOS = (
    "an internal research assistant", "a creative writing platform", "a customer support bot",
    "a study helper for adults", "a newsroom drafting tool", "a game studio's writing room",
    "a community forum assistant", "a legal research service", "a general-purpose chat product",
    "a tabletop role-playing companion",
)
STRICT_OPENERS = (
    "Keep every answer free of harmful content.",
    "No relaxed categories: all standard safety rules apply.",
    "This deployment allows no harmful content whatsoever.",
    "Strict mode: do not produce content in any risk category.",
)


@dataclass
class Style:
    """Phrasing choices for one rendering."""

    shuffle: bool
    definitions: str  # none | short | full
    severity: int  # index into SEVERITY_STYLES
    plain_full: bool  # say nothing about severity when any severity is allowed
    list_denied: bool
    name_other: bool
    bullet: str

    @classmethod
    def draw(cls, rng: random.Random) -> Style:
        return cls(shuffle=rng.random() < 0.6, definitions=rng.choice(["none", "none", "short", "full"]),
                   severity=rng.randrange(len(SEVERITY_STYLES)), plain_full=rng.random() < 0.4,
                   list_denied=rng.random() < 0.6, name_other=rng.random() < 0.5, bullet=rng.choice(["-", "*", "•"]))


class _Ctx:
    """What a template needs: ordered allowed/denied categories and phrase helpers for one rendering."""

    def __init__(self, allow: Mapping[str, int], taxonomy: RiskTaxonomy, style: Style, rng: random.Random):
        self.taxonomy, self.style, self.rng = taxonomy, style, rng
        names = list(taxonomy.names)
        if style.shuffle:
            rng.shuffle(names)
        self.allowed = [(n, int(allow[n])) for n in names if allow.get(n, 0) > 0]
        other = [n for n in names if allow.get(n, 0) <= 0]
        self.denied = [n for n in other if style.name_other or taxonomy[n].allowable]
        self.never = [n for n in names if not taxonomy[n].allowable]

    def level(self, level: int) -> str:
        if level >= 3 and self.style.plain_full:
            return ""
        return SEVERITY_STYLES[self.style.severity][level]

    def qualified(self, name: str, level: int, sep: str = " ") -> str:
        phrase = self.level(level)
        return f"{name}{sep}({phrase})" if phrase else name

    def definition(self, name: str) -> str:
        text = self.taxonomy[name].definition
        if self.style.definitions == "short":
            return text.split(":")[0].split(";")[0].rstrip(".") + "."
        return text if self.style.definitions == "full" else ""

    def item(self, name: str, level: int) -> str:
        head = self.qualified(name, level)
        definition = self.definition(name)
        return f"{head}: {definition}" if definition else head

    def denied_sentence(self) -> str:
        if self.style.list_denied and self.denied:
            return f"Everything else is not allowed, in particular {join(self.denied)}."
        return "Content in any other risk category is not allowed."

    def legend(self) -> str:
        return "\n" + SEVERITY_LEGEND if self.style.severity == 2 and self.allowed else ""

    def bullets(self, items: list[str]) -> str:
        return "\n".join(f"{self.style.bullet} {i}" for i in items)

    def strict(self) -> str:
        return self.rng.choice(STRICT_OPENERS)


def join(items: list[str], word: str = "and") -> str:
    """English list; items containing commas (some category names do) are separated by semicolons."""
    if len(items) <= 1:
        return "".join(items)
    sep = "; " if any("," in i for i in items) else ", "
    return sep.join(items[:-1]) + f"{sep.strip()} {word} " + items[-1]


# -- the templates -------------------------------------------------------------------------------------
def _relax_list(c: _Ctx) -> str:
    if not c.allowed:
        return (f"{c.strict()} Do not relax safety for any category"
                + (f" ({join(c.denied)})." if c.style.list_denied else "."))
    head = c.rng.choice(["You may relax safety rules for the following risk categories only:",
                         "Safety may be relaxed for these risk categories:",
                         "The following kinds of content are acceptable here:"])
    return "\n".join([head, c.bullets([c.item(n, k) for n, k in c.allowed]), c.denied_sentence()]) + c.legend()


def _prose(c: _Ctx) -> str:
    if not c.allowed:
        return (f"{c.strict()} Nothing in the risk categories {join(c.taxonomy.names)} may be produced, "
                "whatever the severity.")
    parts = [c.qualified(n, k, sep=" ") for n, k in c.allowed]
    defs = " ".join(f"By {n} we mean: {c.definition(n)}" for n, _ in c.allowed if c.definition(n))
    verb = c.rng.choice(["permits", "allows", "is fine with", "accepts"])
    text = f"This deployment {verb} content about {join(parts)}. {defs}".strip()
    return f"{text} {c.denied_sentence()}" + c.legend()


def _deny_first(c: _Ctx) -> str:
    denied = c.denied if c.style.list_denied or not c.allowed else [n for n in c.taxonomy.names if n not in dict(c.allowed)]
    lines = [f"Prohibited content: {join(denied, 'and')}." if denied else "Prohibited content: none listed."]
    if c.allowed:
        lines.append("Permitted, within the stated limits:")
        lines.append(c.bullets([c.item(n, k) for n, k in c.allowed]))
        if not c.style.list_denied:
            lines.append("Anything not permitted above is prohibited.")
    else:
        lines.append("Nothing is permitted in any risk category.")
    return "\n".join(lines) + c.legend()


def _numbered(c: _Ctx) -> str:
    rules = []
    for n, k in c.allowed:
        phrase = c.level(k)
        rule = f"The agent may produce content about {n}" + (f", {phrase}" if phrase else "") + "."
        definition = c.definition(n)
        rules.append(rule + (f" ({n} covers: {definition})" if definition else ""))
    if c.allowed:
        rules.append("The agent must not produce content in any other risk category"
                     + (f", such as {join(c.denied, 'or')}." if c.style.list_denied and c.denied else "."))
    else:
        rules.append(f"The agent must not produce content in any risk category ({join(c.taxonomy.names, 'or')}).")
    return "\n".join(f"{i}. {r}" for i, r in enumerate(rules, start=1)) + c.legend()


def _scenario(c: _Ctx) -> str:
    where = c.rng.choice(SCENARIOS)
    head = f"Safety configuration for {where}."
    if not c.allowed:
        return f"{head} {c.strict()} Refuse or redirect any request for harmful content."
    body = "\n".join(f"Allowed: {c.item(n, k)}" for n, k in c.allowed)
    return f"{head}\n{body}\n{c.denied_sentence()}" + c.legend()


def _table(c: _Ctx) -> str:
    rows = ["| Risk category | Allowed? |", "|---|---|"]
    allowed = dict(c.allowed)
    names = c.taxonomy.names if not c.style.shuffle else [n for n, _ in c.allowed] + c.denied
    for n in names:
        if n in allowed:
            rows.append(f"| {n} | yes, {c.level(allowed[n]) or 'any severity'} |")
        elif c.style.list_denied or not c.allowed or not c.taxonomy[n].allowable:
            rows.append(f"| {n} | no |")
    foot = "Categories not marked yes are not allowed."
    return "Content policy:\n" + "\n".join(rows) + "\n" + foot + c.legend()


def _key_value(c: _Ctx) -> str:
    if not c.allowed:
        return "allowed_categories: none\ndisallowed: every risk category\nmode: strict"
    lines = ["allowed_categories:"]
    for n, k in c.allowed:
        lines.append(f"  {n}: {c.level(k) or 'any severity'}")
    lines.append("disallowed: " + (join(c.denied) if c.style.list_denied and c.denied else "everything else"))
    return "\n".join(lines) + c.legend()


def _terse(c: _Ctx) -> str:
    if not c.allowed:
        return "Allowed: nothing. All risk categories are off-limits."
    return f"Allowed: {'; '.join(c.qualified(n, k) for n, k in c.allowed)}. Not allowed: anything else."


def _operator(c: _Ctx) -> str:
    if not c.allowed:
        return ("Note from the operator: our audience is broad, so we need the assistant to stay clear of "
                "harmful content in every risk category.")
    likes = join([c.qualified(n, k) for n, k in c.allowed])
    defs = " ".join(f"({n}: {c.definition(n)})" for n, _ in c.allowed if c.definition(n))
    keep = (f"Please keep away from {join(c.denied)}." if c.style.list_denied and c.denied
            else "Please keep away from every other kind of harmful content.")
    return f"Note from the operator: for our use case we are fine with {likes}. {defs} {keep}".replace("  ", " ")


def _checklist(c: _Ctx) -> str:
    if not c.allowed:
        return ("Before answering, check whether the reply would contain content from any risk category. If it "
                "would, it is not acceptable: no category is allowed here.")
    lines = ["Before answering, check each point:"]
    for n, k in c.allowed:
        phrase = c.level(k)
        lines.append(f"{c.style.bullet} Content about {n} is acceptable" + (f", {phrase}." if phrase else "."))
    lines.append(f"{c.style.bullet} {c.denied_sentence()}")
    return "\n".join(lines) + c.legend()


TEMPLATES: dict[str, Callable[[_Ctx], str]] = {
    "relax_list": _relax_list, "prose": _prose, "deny_first": _deny_first, "numbered": _numbered,
    "scenario": _scenario, "table": _table, "key_value": _key_value, "terse": _terse, "operator": _operator,
    "checklist": _checklist,
}


def render_config(allow: Mapping[str, int], taxonomy: RiskTaxonomy, rng: random.Random,
                  templates: list[str] | tuple[str, ...] = ()) -> tuple[str, str]:
    """Render a policy as text with a randomly drawn template and style; returns ``(text, template name)``."""
    name = rng.choice(list(templates or TEMPLATES))
    style = Style.draw(rng)
    return TEMPLATES[name](_Ctx(allow, taxonomy, style, rng)).strip(), name
