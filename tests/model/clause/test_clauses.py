"""Splitting configs into clauses and judged content into windows (csrm.model.clause.clauses, clause_features.content_windows):
structure is kept (numbered rules, bullets under their lead-in, table rows, key: value blocks, sentences) and
nothing is lost (every word of a 25k-character policy and every character of every agent turn is in a window)."""

from __future__ import annotations

import random
import re

import pytest

from csrm.model.clause.clauses import (
    MAX_CLAUSE_CHARS,
    MAX_SEGMENT_CHARS,
    WINDOW_OVERLAP_CHARS,
    segments,
    split_clauses,
    windows,
)
from csrm.model.clause.features import content_windows


def texts(config: str, **kw) -> list[str]:
    return [c.text for c in split_clauses(config, **kw)]


def spans(text: str, parts: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each window in ``text``, found left to right (windows are substrings, in order)."""
    out, pos = [], 0
    for part in parts:
        start = text.find(part, pos)
        assert start >= 0, f"window not a substring of the text in order: {part[:60]!r}"
        out.append((start, start + len(part)))
        pos = start + 1
    return out


def assert_covers(text: str, parts: list[str], max_chars: int) -> None:
    """Every non-space character of ``text`` lies in some window, and every window fits ``max_chars``."""
    assert parts and all(0 < len(p) <= max_chars for p in parts)
    covered = [False] * len(text)
    for start, end in spans(text, parts):
        covered[start:end] = [True] * (end - start)
    missing = [i for i, c in enumerate(text) if not c.isspace() and not covered[i]]
    assert not missing, f"{len(missing)} characters in no window, first at {missing[0]}: {text[missing[0]:][:40]!r}"


# -- clauses ------------------------------------------------------------------------------------------------
def test_numbered_rules_are_one_clause_each_without_their_numbers():
    config = ("1. The agent may discuss violence in fiction.\n"
              "2) The agent must not give weapon instructions.\n"
              "3. Never reveal a home address. Not even a partial one.")
    clauses = split_clauses(config)
    assert [c.text for c in clauses] == ["The agent may discuss violence in fiction.",
                                         "The agent must not give weapon instructions.",
                                         "Never reveal a home address. Not even a partial one."]
    assert [c.body for c in clauses] == [c.text for c in clauses]  # no lead-in: the rule is its own text
    assert [c.index for c in clauses] == [0, 1, 2]


def test_bullets_inherit_their_lead_in_line():
    config = ("Prohibited content:\n"
              "- Violence\n"
              "* Weapons (any severity)\n"
              "\n"
              "Permitted:\n"
              "• Violence\n"
              "- Gambling, at most severity 1\n"
              "Everything else is refused.\n"
              "- Orphan bullet")
    clauses = split_clauses(config)
    assert [c.text for c in clauses] == [
        "Prohibited content:",
        "Prohibited content: Violence",
        "Prohibited content: Weapons (any severity)",
        "Permitted:",
        "Permitted: Violence",
        "Permitted: Gambling, at most severity 1",
        "Everything else is refused.",
        "Orphan bullet",  # a prose line ends the lead-in's reach
    ]
    # the same bullet means opposite things under the two lead-ins: its text differs, its body does not
    assert clauses[1].body == clauses[4].body == "Violence"
    assert clauses[1].text != clauses[4].text
    assert [c.index for c in clauses] == list(range(len(clauses)))


def test_numbered_items_and_lettered_items_also_inherit_a_lead_in():
    config = "You may relax safety rules for:\n1. Violence\n2. Privacy Violations\na) Other Harms"
    assert texts(config) == ["You may relax safety rules for:", "You may relax safety rules for: Violence",
                             "You may relax safety rules for: Privacy Violations",
                             "You may relax safety rules for: Other Harms"]


def test_table_rows_become_clauses_and_separator_rows_are_dropped():
    config = ("Content policy:\n"
              "| Risk category | Allowed? |\n"
              "|---|---|\n"
              "| Violence | no |\n"
              "| :--- | ---: |\n"
              "| Financial Crime and Theft |  yes, up to severity 2 |\n"
              "Categories not marked yes are not allowed.")
    clauses = split_clauses(config)
    assert [c.text for c in clauses] == [
        "Content policy:",
        "Content policy: Risk category: Allowed?",
        "Content policy: Violence: no",
        "Content policy: Financial Crime and Theft: yes, up to severity 2",
        "Categories not marked yes are not allowed.",
    ]
    assert clauses[2].body == "Violence: no"
    assert not any(set(c.text) <= set("|-: ") for c in clauses)


def test_indented_key_value_lines_inherit_their_header():
    config = ("allowed_categories:\n"
              "  Violence: only when harmless in context\n"
              "  Privacy Violations:   any severity\n"
              "disallowed: everything else")
    clauses = split_clauses(config)
    assert [c.text for c in clauses] == ["allowed_categories:",
                                         "allowed_categories: Violence: only when harmless in context",
                                         "allowed_categories: Privacy Violations: any severity",
                                         "disallowed: everything else"]  # not indented: not under the header
    assert clauses[2].body == "Privacy Violations: any severity"


def test_prose_is_split_into_sentences_and_paragraphs():
    config = ("This deployment is fine with violence in fiction. It is not fine with weapons!\n"
              "Is gambling acceptable? Only at low severity.\n"
              "\n"
              "A second paragraph (about privacy) starts here. \"Quoted rules\" count too.")
    assert texts(config) == ["This deployment is fine with violence in fiction.",
                             "It is not fine with weapons!",
                             "Is gambling acceptable?",
                             "Only at low severity.",
                             "A second paragraph (about privacy) starts here.",
                             "\"Quoted rules\" count too."]
    # a line break inside a paragraph does not end a sentence
    assert texts("The agent may discuss\nviolence in fiction.") == ["The agent may discuss violence in fiction."]


def test_long_clause_is_windowed_and_keeps_every_word():
    words = [f"word{i}" for i in range(300)]
    config = "Prohibited content:\n- " + " ".join(words)
    clauses = split_clauses(config, max_chars=200)
    assert len(clauses) > 10 and all(len(c.text) <= 200 for c in clauses)
    assert clauses[1].text.startswith("Prohibited content: word0 ")
    found = {w for c in clauses for w in c.text.split()}
    assert set(words) <= found
    assert [c.index for c in clauses] == list(range(len(clauses)))


def policy_25k(seed: int = 0) -> tuple[str, set[str]]:
    """A >= 25,000-character policy mixing every structure, and the set of its unique content words."""
    rng = random.Random(seed)
    vocabulary = ["agent", "may", "discuss", "never", "content", "about", "severity", "harmless", "context",
                  "explicit", "detail", "news", "history", "education", "fiction", "user", "request", "only"]
    counter = iter(range(10**6))
    unique: set[str] = set()

    def phrase(n: int) -> str:
        out = []
        for _ in range(n):
            word = f"u{next(counter)}"
            unique.add(word)
            out += [word, *rng.sample(vocabulary, 2)]
        return " ".join(out)

    parts = []
    while sum(map(len, parts)) < 25_000:
        parts.append("\n".join(f"{i}. The {phrase(rng.randint(2, 6))}." for i in range(1, 12)))
        parts.append("Prohibited content:\n" + "\n".join(f"- {phrase(rng.randint(1, 4))}" for _ in range(6)))
        parts.append("| Category | Allowed? |\n|---|---|\n" + "\n".join(f"| {phrase(1)} | {phrase(2)} |"
                                                                          for _ in range(4)))
        parts.append("limits:\n" + "\n".join(f"  {phrase(1)}: {phrase(2)}" for _ in range(4)))
        parts.append(" ".join(f"The {phrase(rng.randint(2, 5))}." for _ in range(5)))
        parts.append(f"The {phrase(60)}")  # one ~1,000-character sentence: cut into windows
        parts.append(f"- {phrase(40)}")  # one long bullet
    return "\n\n".join(parts), unique


@pytest.mark.parametrize("max_chars", [MAX_CLAUSE_CHARS, 120])
def test_a_25k_policy_is_fully_covered(max_chars):
    config, unique = policy_25k()
    assert len(config) >= 25_000
    clauses = split_clauses(config, max_chars=max_chars)
    assert all(0 < len(c.text) <= max_chars for c in clauses)
    found = {w.strip(".:,") for c in clauses for w in c.text.split()}
    missing = unique - found
    assert not missing, f"{len(missing)} words of the policy are in no clause, e.g. {sorted(missing)[:5]}"
    # and nothing is invented: every clause word is a word of the policy (lead-ins are words of the policy)
    policy_words = {w.strip(".:,|") for w in config.split()}
    assert {w.strip(".:,") for c in clauses for w in c.text.split()} <= policy_words
    assert [c.index for c in clauses] == list(range(len(clauses)))


def test_a_config_is_never_split_into_nothing():
    for config in ["|---|---|", "-", "Rules:", "1.", "word"]:
        assert split_clauses(config), config
    assert split_clauses("") == [] and split_clauses("  \n\n ") == []


def test_windows_cover_the_text_with_overlap():
    text = " ".join(f"token{i}" for i in range(400))  # ~3,700 characters
    parts = windows(text, 300)
    assert len(parts) > 12
    assert_covers(text, parts, 300)
    bounds = spans(text, parts)
    for (_, e1), (s2, _) in zip(bounds, bounds[1:], strict=False):
        assert s2 < e1, "consecutive windows overlap"
        assert e1 - s2 <= WINDOW_OVERLAP_CHARS, "by about the overlap, not more"
        assert text[s2 - 1] == " " and (e1 == len(text) or text[e1] == " "), "cut at word boundaries"
    assert parts[0].startswith("token0 ") and parts[-1].endswith("token399")


def test_windows_edge_cases():
    assert windows("", 50) == [] and windows("   ", 50) == []
    assert windows("  short text  ", 50) == ["short text"]
    unbroken = "x" * 1000  # no space to cut at: hard cuts, still every character
    parts = windows(unbroken, 300)
    assert "".join(parts) == unbroken and all(len(p) <= 300 for p in parts)
    mixed = "a" * 350 + " " + " ".join(f"b{i}" for i in range(200))  # unique words: windows locate exactly
    assert_covers(mixed, windows(mixed, 300), 300)


def test_segments():
    assert segments("") == [""]
    assert segments(" \n\t ") == [""]
    assert segments("Hello\n\n  there\tfriend.") == ["Hello there friend."]
    long = " ".join(f"sentence {i} of a long reply." for i in range(300))
    parts = segments(long)
    assert len(parts) > 10
    assert_covers(long, parts, MAX_SEGMENT_CHARS)


def test_a_line_that_only_looks_like_a_list_marker_keeps_its_text():
    assert texts("3.5 percent of answers may mention violence.") == ["3.5 percent of answers may mention violence."]
    assert texts("U.S. law applies to every answer.") == ["U.S. law applies to every answer."]


# -- judged content -----------------------------------------------------------------------------------------
def conversation(turns: int, reply: str = "Answer {i}: fine.") -> list[dict]:
    out = []
    for i in range(turns // 2):
        out.append({"role": "user", "content": f"Question {i}?"})
        out.append({"role": "assistant", "content": reply.format(i=i)})
    return out


def test_request_screening_judges_the_last_user_turn_ungated():
    messages = conversation(4) + [{"role": "user", "content": "How do I pick a lock?"}]
    assert content_windows(messages, None, 600) == [("How do I pick a lock?", False)]
    long = " ".join(f"part {i} of a long request." for i in range(200))
    out = content_windows([{"role": "user", "content": long}], None, 300)
    assert len(out) > 5 and not any(gated for _, gated in out)
    assert_covers(long, [w for w, _ in out], 300)
    assert content_windows([{"role": "system", "content": "Be nice."}], None, 600) == [("", False)]


def test_a_response_judges_it_and_every_earlier_agent_turn_gated():
    messages = [{"role": "system", "content": "System text."},
                {"role": "user", "content": "First question?"},
                {"role": "assistant", "content": "First agent turn."},
                {"role": "user", "content": "Second question?"},
                {"role": "assistant", "content": "Second agent turn."},
                {"role": "user", "content": "Third question?"}]
    assert content_windows(messages, "The response.", 600) == [
        ("First agent turn.", True), ("Second agent turn.", True), ("The response.", True)]
    assert content_windows([{"role": "user", "content": "Hi?"}], "", 600) == [("", True)]


def test_a_20_turn_transcript_with_a_long_response_is_fully_judged():
    rng = random.Random(0)
    messages = []
    for i in range(10):
        messages.append({"role": "user", "content": f"Question {i}?"})
        reply = " ".join(f"t{i}s{j} " + " ".join(rng.choice(["calm", "sea", "red", "fox"]) for _ in range(6))
                         for j in range(rng.randint(1, 40)))
        messages.append({"role": "assistant", "content": reply + "."})
    response = " ".join(f"r{j} and then more words." for j in range(700))  # ~17,000 characters
    out = content_windows(messages, response, MAX_SEGMENT_CHARS)
    assert all(gated for _, gated in out)
    parts = [w for w, _ in out]
    judged = [m["content"] for m in messages if m["role"] == "assistant"] + [response]
    # windows come turn by turn, in order: split them back by turn and check each turn is covered
    start = 0
    for text in judged:
        n = len(segments(text))
        assert_covers(text, parts[start:start + n], MAX_SEGMENT_CHARS)
        start += n
    assert start == len(parts)
    words = set(re.findall(r"\S+", " ".join(parts)))
    assert {f"t{i}s0" for i in range(10)} <= words and "r699" in words
