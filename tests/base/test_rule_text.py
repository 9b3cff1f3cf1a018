"""csrm.base.rule_text: numbered policies and User/Agent transcripts read as DynaBench writes them."""

from csrm.base.rule_text import Rule, Turn, agent_turns, format_rules, format_turns, split_rules, split_turns


def test_rules_keep_their_numbers_sub_lists_and_preamble():
    policy = "Be kind.\n0. Never say X.\n\n1. If asked, add Y. Consider:\n  - a\n  2. nested\n12) Last rule."
    assert split_rules(policy) == [
        Rule(None, "Be kind."), Rule(0, "Never say X."),
        Rule(1, "If asked, add Y. Consider:\n  - a\n  2. nested"), Rule(12, "Last rule.")]
    assert split_rules("no numbers here") == [Rule(None, "no numbers here")]
    assert split_rules("  ") == []
    assert split_rules("3.5 percent is fine") == [Rule(None, "3.5 percent is fine")]


def test_format_and_split_are_inverse():
    rules = ["Never reveal a phone number.", "If the user mentions The Clash, include the word 'punk'."]
    assert [r.text for r in split_rules(format_rules(rules, start=0, blank_line=True))] == rules
    turns = [Turn("user", "hi"), Turn("assistant", "hello\nthere"), Turn("user", "ok"), Turn("assistant", "bye")]
    assert split_turns(format_turns(turns)) == turns
    assert agent_turns(turns) == [1, 3]


def test_turn_tags_quoted_joined_and_preamble():
    text = "context\n'User': a\nUser: b\nAgent: c\n 'Agent':d\nUser: e"
    assert split_turns(text) == [Turn("user", "context\n\na\n\nb"), Turn("assistant", "c\n\nd"), Turn("user", "e")]
    assert split_turns("Agent: only") == [Turn("assistant", "only")]
