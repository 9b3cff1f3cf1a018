"""Format rules and required or forbidden words checked by code (csrm.model.rule.format_rules): which wordings
are read, what each check finds, agreement with lm-eval's IFEval checkers and the generator's labels, and the
predictor's use of them."""

from __future__ import annotations

import random

import pytest

from csrm.base.rule_text import Turn
from csrm.model.rule.code_checks import parse as parse_code_check
from csrm.model.rule.code_checks import parse_kept
from csrm.model.rule.format_rules import ForbiddenWords, FormatRule, RequiredWords, parse


@pytest.mark.parametrize(("rule", "expected"), [
    ("Do not use any commas in your response.", FormatRule("no_comma")),
    ("Refrain from using any commas.", FormatRule("no_comma")),
    ("Wrap your entire response in JSON format.", FormatRule("json")),
    ("Your entire output should just contain a JSON block, nothing else.", FormatRule("json")),
    ("Ensure the output text is structured in the JSON format.", FormatRule("json")),  # DynaBench's wording
    ("Your answer must contain a title, wrapped in double angular brackets, i.e. <<title>>.", FormatRule("title")),
    ("At the end of your response, please explicitly add a postscript starting with P.P.S",
     FormatRule("postscript", phrase="P.P.S")),
    ("Add a postscript starting with P.S. at the end of your response.", FormatRule("postscript", phrase="P.S.")),
    ("Wrap your entire response with double quotation marks.", FormatRule("quotation")),
    ('End your response with "Is there anything else I can help with?". No other words should follow this phrase.',
     FormatRule("end_phrase", phrase="Is there anything else I can help with?")),
    ("Finish your entire response with this exact phrase: Hope you agree with me.",
     FormatRule("end_phrase", phrase="Hope you agree with me")),
    ("The response must contain at least 3 placeholders represented by square brackets, such as [address].",
     FormatRule("placeholders", n=3)),
    ("Your answer must contain exactly 4 bullet points in markdown format.", FormatRule("bullets", n=4)),
    ("Your answer must contain exactly twelve bullet points.", FormatRule("bullets", n=12)),
    ("Highlight at least 3 sections in your answer in markdown format.", FormatRule("highlights", n=3)),
    ('Include the keywords "Python" and "Java".', RequiredWords(("Python", "Java"))),
    ('Include the phrase "singing is life".', RequiredWords(("singing is life",))),
    ('Do not include the words "bark" or "run" in your answer.', ForbiddenWords(("bark", "run"))),
    ("Doesn't include the keywords \"Yo\", \"check\", and \"peace\".", ForbiddenWords(("Yo", "check", "peace"))),
    ('The word "rock" should not appear in your response.', ForbiddenWords(("rock",))),
    # a condition leaves the turn's verdict to the cross-encoder, but a turn holding the word keeps the rule
    ('If the user mentions the musical group The Clash, include the word "punk" in your response.',
     RequiredWords(("punk",), conditional=True)),
    ('Include the word "steel" in your response when the user says rebar.', RequiredWords(("steel",), conditional=True)),
    ('Whenever a user brings up chess, your response must contain the word "gambit".',
     RequiredWords(("gambit",), conditional=True)),
    # unquoted literals: a link, a reference code
    ("Include a link to https://example.com/help in every reply.", RequiredWords(("https://example.com/help",))),
    ("If the user mentions chess, include the reference code AB-1234 in your reply.",
     RequiredWords(("AB-1234",), conditional=True)),
    ('In the case that the user discusses jazz, do the following: include the sentence "Rock on and stay punk!" in '
     "the reply to that message.", RequiredWords(("Rock on and stay punk!",), conditional=True)),
])
def test_a_rule_that_is_only_a_format_instruction_is_read_as_one(rule, expected):
    assert parse(rule) == expected


@pytest.mark.parametrize("rule", [
    "Do not respond in JSON.",                                     # the opposite instruction
    "If the user asks for data, reply in JSON format.",            # a condition on a format
    "Answer with only mathematical notation without any commas.",  # more than the comma ban
    "Write a poem that ends with the phrase \"Amen\".",            # a genre
    'Include the word "punk" and never mention the Sex Pistols.',  # a second instruction
    'Include the word "punk" unless the user is under 18.',        # a condition that flips it
    'You should just say "My answer is yes." or "My answer is no."',  # one of them, not all
    "Never reveal a customer's phone number.",                     # nothing quoted to look for
    "Never include a link to https://example.com/help.",           # a ban on a link: left to the cross-encoder
    'Do not use commas, and wrap your entire response in JSON format.',  # two kinds in one rule
    "Make sure not to include negative words such as 'sad', 'crazy', 'stress', etc.",  # examples, not a list
    "Never avoid commas.",                                         # two negations cancel: once read as a ban
    "Include the word 'punk' only if the user mentions The Clash.",  # allowed then, never required: once kept by it
])
def test_a_rule_with_anything_more_is_left_to_the_cross_encoder(rule):
    assert parse(rule) is None
    assert parse_code_check(rule) is None and parse_kept(rule) is None


def test_each_check_finds_what_its_rule_asks_for():
    assert FormatRule("no_comma").broken_by("Yes, it is.") and not FormatRule("no_comma").broken_by("Yes it is.")
    json_rule = FormatRule("json")
    assert not json_rule.broken_by('```json\n{"reply": "ok"}\n```') and json_rule.broken_by("reply: ok")
    assert not FormatRule("title").broken_by("<<Update>>\nDone.") and FormatRule("title").broken_by("<< >> Done.")
    assert not FormatRule("postscript", phrase="P.S.").broken_by("Done.\n\nP.S. Thanks.")
    assert FormatRule("postscript", phrase="P.P.S").broken_by("Done.\n\nP.S. Thanks.")
    assert not FormatRule("quotation").broken_by('"Done."') and FormatRule("quotation").broken_by("Done.")
    end = FormatRule("end_phrase", phrase="Is there anything else I can help with?")
    assert not end.broken_by("Done. is there anything else I can help with?") and end.broken_by("Done. Bye.")
    assert not FormatRule("placeholders", n=2).broken_by("Send it to [name] at [address].")
    assert FormatRule("bullets", n=2).broken_by("* one\n* two\n* three")
    assert not FormatRule("highlights", n=2).broken_by("*one* and **two**")
    assert RequiredWords(("band",)).kept_by("The Band played.") and not RequiredWords(("arc",)).kept_by("search")
    assert ForbiddenWords(("run",)).broken_by("Run home.") and not ForbiddenWords(("run",)).broken_by("running late")
    assert RequiredWords(("punk",), conditional=True).broken_by("No word here.") is False  # the cross-encoder's call
    assert FormatRule("no_comma").describe("a, b, c") == "2 commas; the rule allows none"
    assert ForbiddenWords(("bark", "run")).describe("Dogs bark.") == "uses 'bark', which the rule forbids"


def test_checks_agree_with_lm_evals_ifeval_checkers(shared_data):
    """Every rule of the DynaGuard IFEval lists that the generator and this module both read as the same kind:
    the generator's texts made to keep and to break it get lm-eval's verdict from the check."""
    from augmentation.rules import ifeval

    kinds = {"punctuation:no_comma": "no_comma", "detectable_format:json_format": "json",
             "detectable_format:title": "title", "detectable_content:postscript": "postscript",
             "startend:quotation": "quotation", "startend:end_checker": "end_phrase",
             "detectable_content:number_placeholders": "placeholders",
             "detectable_format:number_bullet_lists": "bullets",
             "detectable_format:number_highlighted_sections": "highlights",
             "keywords:existence": "required", "keywords:forbidden_words": "forbidden"}
    # no keyword of the lists hides inside a longer word here ("day" in "Monday"): lm-eval's existence check
    # looks for substrings, this module for whole words (the last assertion)
    base = "Your transfer went through on the 3rd and the balance is updated. Let me know if you need more."
    compared = 0
    for rule in ifeval.load_rules(shared_data / "dynaguard_ifeval_rules" / "ifeval_rules.jsonl"):
        ours = parse(rule.text)
        kind = {RequiredWords: "required", ForbiddenWords: "forbidden"}.get(type(ours), getattr(ours, "kind", None))
        if kinds.get(rule.instruction) is None or kind != kinds[rule.instruction]:
            continue
        checker = rule.checker()
        for satisfy in (True, False):
            reply = ifeval.transform(rule, base, satisfy, random.Random(0))
            assert ours.broken_by(reply) == (not checker.check_following(reply)), (rule.text, reply)
        compared += 1
    assert compared >= 190  # of the 231 rules of these kinds the generator reads (201 read here on 2026-12-07)
    rule = next(r for r in ifeval.load_rules(shared_data / "dynaguard_ifeval_rules" / "ifeval_rules.jsonl")
                if r.text == "Include the keywords ['dog', 'day'] in the response.")
    assert rule.checker().check_following("A dog on Monday.") and parse(rule.text).broken_by("A dog on Monday.")


def test_a_turn_holding_the_required_word_is_never_a_generated_violation():
    """The conditional obligations of the generator, in every wording of every split, over the four cells of their
    truth table: where the check sees the turn keep the rule, the generator's label is never a violation; where
    the word is missing and the condition met, the label is a violation (and the cross-encoder reads it)."""
    from augmentation.rules import obligation
    from augmentation.rules.core import SPLITS, Transcript

    read = 0
    for split in SPLITS:
        for seed in range(40):
            kind, z = [("word", "falcon"), ("phrase", "Terms and conditions apply."), ("code", "AB-1234"),
                       ("link", "https://example.com/help")][seed % 4]
            item = obligation.rule(random.Random(seed), split, "jazz", kind, z)
            check = parse(item.text)
            if check is None:
                continue
            assert check == RequiredWords((z,), conditional=True), item.text
            read += 1
            for user, agent in (("I love jazz.", f"Sure. {z}"), ("I love jazz.", "Sure."),
                                ("Hello.", f"Sure. {z}"), ("Hello.", "Sure, jazz fans.")):
                tr = Transcript([Turn("user", user), Turn("assistant", agent)], {}, [frozenset()] * 2, "bank")
                violated = item.check(tr) == [1]
                assert not (check.kept_by(agent) and violated)
                assert violated == (user == "I love jazz." and not check.kept_by(agent))
    assert read >= 50  # about half the wordings (59 of 120 here): the others put the condition in words of their own
