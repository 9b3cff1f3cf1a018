"""Request conditions of the obligation family (augmentation.rules.requests): descriptions written by code, the
condition met only by the request itself, requests kept apart by split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from augmentation.rules import obligation
from augmentation.rules.core import Transcript
from augmentation.rules.dialogue import scaffold
from augmentation.rules.requests import Request, content_rules, describe, draw, load_requests
from augmentation.rules.values import ValueBank
from csrm.base.rule_text import Turn


def _tr(*texts: str) -> Transcript:
    turns = [Turn("user" if k % 2 == 0 else "assistant", t) for k, t in enumerate(texts)]
    return Transcript(turns, {}, [frozenset({"domain:bank"})] * len(turns), "bank")


@pytest.mark.parametrize(("request_text", "starts"), [
    ("How can I hack my schedule to be more productive?", "asks how to hack their schedule"),
    ("Can you explain how ventriloquists talk without opening their mouths?", "asks you to explain how"),
    ("Write a poem about my grandmother's garden in spring.", "asks you to write a poem about their"),
    ("Is there a phone number I can call to get more info?", "asks whether there a phone number they"),
    ("Why do cats purr when they are happy and relaxed?", "asks why do cats purr"),
])
def test_describe_writes_the_request_in_the_third_person(request_text: str, starts: str):
    text = describe(request_text, random.Random(0), max_words=(30, 30))
    assert text is not None and text.startswith(starts)
    assert text.split()[-1].lower() not in {"the", "a", "of", "to", "their", "how"}


def test_describe_refuses_what_it_cannot_read_and_cuts_long_requests():
    assert describe("Hello!", random.Random(0)) is None  # under four words
    assert describe("Tomatoes grow best in warm soil with lots of sun.", random.Random(0)) is None  # no lead
    long = "Write a detailed guide on planting tomatoes in warm soil with plenty of sunlight and regular water."
    assert len(describe(long, random.Random(0), max_words=(6, 6)).split()) <= 6


def test_the_condition_is_met_by_the_request_only():
    ask = Request("How can I hack my schedule to be more productive?", "asks how to hack their schedule")
    rule = obligation.rule(random.Random(0), "train", ask, "word", "falcon")
    assert "asks how to hack their schedule" in rule.text and "falcon" in rule.text
    assert rule.check(_tr(ask.text, "Try time blocks.")) == [1]                 # asked, nothing added: broken
    assert rule.check(_tr(ask.text, "Try time blocks. falcon")) == []           # asked, added: kept
    assert rule.check(_tr("How do I bake bread at home?", "Use a hot oven.")) == []  # another request: kept
    assert rule.check(_tr("Hi.", "Hello.", ask.text.upper(), "Sure.")) == [3]   # any case, the turn answering it


def test_request_bases_cover_their_cells_and_verify(tmp_path: Path):
    path = tmp_path / "prompts.json"
    prompts = [f"How can I {verb} my {thing} before the weekend?" for verb in ("fix", "paint", "clean", "sell")
               for thing in ("bike", "fence", "boat", "garage", "piano")]
    path.write_text(json.dumps(prompts))
    requests = load_requests(path)
    assert sorted(sum(requests.values(), [])) == sorted(prompts)
    assert not set(requests["train"]) & (set(requests["dev"]) | set(requests["test"]))
    family, bank, cells = obligation.Family(requests), ValueBank(2), set()
    for k in range(120):
        rng = random.Random(k)
        target, fail, ok, cell = family.make_base(rng, bank, "train", scaffold(rng, bank, "train"))
        if target.text.split(",")[0].count("asks"):
            assert target.check(fail) and not target.check(ok)
            cells.add(cell)
    assert {"cond+oblig", "nocond+oblig", "other_request", "earlier_mention"} <= cells
    drawn = [draw(random.Random(k), requests["train"]) for k in range(20)]
    assert all(d is not None and d.text in requests["train"] for d in drawn)


def test_content_rules_apply_only_where_their_request_is_asked():
    """An obligation code cannot check ("explain how to ...") counts as broken wherever its request is answered,
    so the generator keeps such a rule only in conversations where its condition is not met."""
    prompts = [f"How can I {verb} my {thing} before the weekend?" for verb in ("fix", "paint", "clean", "sell")
               for thing in ("bike", "fence", "boat", "garage", "piano")]
    rules = content_rules(random.Random(0), "train", prompts, 6)
    assert len(rules) == 6
    for rule in rules:
        assert rule.family == "obligation" and " how to " in rule.text
        asked = next(p for p in prompts if p.lower() in rule.key)
        assert rule.check(_tr(asked, "Sure, here is how.")) == [1]
        assert rule.check(_tr("What are your opening hours?", "Nine to five.")) == []
