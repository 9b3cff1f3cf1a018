"""InputFormatter: template layout, prefix sharing, the truncation rule's order and counters, padding."""

from __future__ import annotations

import logging

import pytest

from csrm.base.paths import default_backbone
from csrm.model.cross_encoder.modeling import load_tokenizer
from csrm.model.formatting import SCREENING_MARKER, InputFormatter, pad_batch

CONFIG = "Never discuss weapons. Gambling is allowed."
MESSAGES = [{"role": "user", "content": "Tell me about dice games."}]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(default_backbone(), decoder=False)


def n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_plain_template_layout(tok):
    fmt = InputFormatter(tok, max_length=128)
    assert fmt.segments(CONFIG, MESSAGES, "Sure.") == (
        f"Safety configuration:\n{CONFIG}", "\nConversation:\nUser: Tell me about dice games.\n",
        "Response under review:\nSure.")
    enc = fmt.encode(CONFIG, MESSAGES, "Sure.")
    ids = enc.input_ids
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ids.count(tok.sep_token_id) == 2  # between config and conversation, and at the end
    text = tok.decode(ids)
    assert text.index("never discuss weapons") < text.index("user : tell me") < text.index("response under review")
    assert not enc.truncated and fmt.stats["items"] == 1 and fmt.stats["truncated"] == 0


def test_screening_marker_and_multi_turn(tok):
    fmt = InputFormatter(tok, max_length=256)
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "roll dice?"}]
    config, conversation, response = fmt.segments(CONFIG, turns, None)
    assert response == f"Response under review:\n{SCREENING_MARKER}"
    assert conversation == "\nConversation:\nUser: hi\nAssistant: hello\nUser: roll dice?\n"


def test_empty_config_is_accepted(tok):
    fmt = InputFormatter(tok, max_length=64)
    blind = fmt.encode("", MESSAGES, "Sure.")
    seen = fmt.encode(CONFIG, MESSAGES, "Sure.")
    assert len(seen.input_ids) - len(blind.input_ids) == n_tokens(tok, CONFIG)
    assert blind.prefix_len < seen.prefix_len


def test_prefix_len_is_shared_by_every_response(tok):
    fmt = InputFormatter(tok, max_length=128)
    a, b, c = fmt.encode_batch([CONFIG] * 3, [MESSAGES] * 3, ["Sure, here you go.", "No.", None])
    assert a.prefix_len == b.prefix_len == c.prefix_len
    prefix = a.input_ids[:a.prefix_len]
    assert b.input_ids[:b.prefix_len] == prefix and c.input_ids[:c.prefix_len] == prefix
    assert a.input_ids[a.prefix_len:] != b.input_ids[b.prefix_len:]
    # the prefix is [CLS] config [SEP] conversation; the response starts right after it
    assert tok.decode(a.input_ids[a.prefix_len:]).startswith("response under review")


def _long_case(tok):
    old = [{"role": "user", "content": "first question " + "alpha " * 40},
           {"role": "assistant", "content": "first answer " + "beta " * 40},
           {"role": "user", "content": "latest question about gamma"}]
    response = "the answer is " + "delta " * 30
    return old, response


def test_truncation_cuts_oldest_conversation_first(tok):
    old, response = _long_case(tok)
    full = InputFormatter(tok, max_length=4096).encode(CONFIG, old, response)
    fmt = InputFormatter(tok, max_length=len(full.input_ids) - 30)
    enc = fmt.encode(CONFIG, old, response)
    assert enc.truncated and len(enc.input_ids) == fmt.max_length
    assert fmt.stats["conversation_truncated"] == 1
    assert fmt.stats["response_truncated"] == 0 and fmt.stats["config_truncated"] == 0
    text = tok.decode(enc.input_ids)
    assert "never discuss weapons. gambling is allowed." in text  # config whole
    assert "latest question about gamma" in text  # newest turn kept
    assert text.count("delta") == 30  # response whole
    assert "first question" not in text  # the oldest tokens went first


def test_truncation_then_cuts_response_tail_down_to_a_floor(tok):
    old, response = _long_case(tok)
    config_len, resp_len = n_tokens(tok, f"Safety configuration:\n{CONFIG}"), n_tokens(
        tok, f"Response under review:\n{response}")
    max_length = 3 + config_len + resp_len - 10  # the conversation alone cannot make room
    fmt = InputFormatter(tok, max_length=max_length)
    enc = fmt.encode(CONFIG, old, response)
    assert len(enc.input_ids) == max_length
    assert fmt.stats["conversation_truncated"] == 1 and fmt.stats["response_truncated"] == 1
    assert fmt.stats["config_truncated"] == 0
    text = tok.decode(enc.input_ids)
    assert "never discuss weapons. gambling is allowed." in text
    assert "conversation" not in text and "question" not in text  # the whole conversation segment went
    assert 0 < text.count("delta") < 30  # the tail of the response was cut


def test_config_is_cut_last_and_never_silently(tok, caplog):
    long_config = "Rule: " + "never discuss weapons. " * 60
    response = "the answer is " + "delta " * 60
    fmt = InputFormatter(tok, max_length=96)
    budget = 96 - 3
    with caplog.at_level(logging.WARNING, logger="csrm.model.formatting"):
        enc = fmt.encode(long_config, MESSAGES, response)
        fmt.encode(long_config, MESSAGES, response)
    assert len(enc.input_ids) == 96
    assert fmt.stats["config_truncated"] == 2 and fmt.stats["truncated"] == 2
    warnings = [r for r in caplog.records if "its tail is cut" in r.getMessage()]
    assert len(warnings) == 1  # logged, once per formatter
    # the response keeps its floor of budget // 4 tokens; the config got the rest
    resp_tokens = len(enc.input_ids) - enc.prefix_len - 1
    assert resp_tokens == budget // 4
    assert "delta" in tok.decode(enc.input_ids[enc.prefix_len:])


def test_decoder_layout_ends_with_eos(tok):
    dec = load_tokenizer(default_backbone(), decoder=True)
    dec.eos_token = "[SEP]"
    fmt = InputFormatter(dec, max_length=64, is_decoder=True)
    enc = fmt.encode(CONFIG, MESSAGES, "Sure.")
    assert enc.input_ids[-1] == dec.eos_token_id
    assert dec.cls_token_id not in enc.input_ids  # decoders get no [CLS]/[SEP] scaffolding
    assert enc.input_ids.count(dec.eos_token_id) == 1


CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


def test_chat_template_segments(tok):
    dec = load_tokenizer(default_backbone(), decoder=True)
    dec.eos_token = "[SEP]"
    dec.chat_template = CHAT
    fmt = InputFormatter(dec, max_length=128, template="chat", is_decoder=True)
    config, conversation, response = fmt.segments(CONFIG, MESSAGES, "Sure.")
    assert config == f"<system>{CONFIG}</system>\n"
    assert conversation == "<user>Tell me about dice games.</user>\n<assistant>"
    assert response.startswith("Sure.")
    enc = fmt.encode(CONFIG, MESSAGES, "Sure.")
    assert enc.input_ids[-1] == dec.eos_token_id


def test_chat_template_requirements(tok):
    with pytest.raises(ValueError, match="chat template"):
        InputFormatter(tok, template="chat")
    with pytest.raises(ValueError, match="plain' or 'chat"):
        InputFormatter(tok, template="fancy")
    dec = load_tokenizer(default_backbone(), decoder=True)
    dec.chat_template = "{% for m in messages|reverse %}{{ m['content'] }}{% endfor %}"  # not incremental
    fmt = InputFormatter(dec, template="chat", is_decoder=True)
    with pytest.raises(ValueError, match="incrementally"):
        fmt.segments(CONFIG, MESSAGES, "Sure.")


def test_pad_batch_sides_and_multiple():
    right = pad_batch([[5, 6, 7], [8]], 0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    left = pad_batch([[5, 6, 7], [8]], 0, padding_side="left", pad_to_multiple_of=4)
    assert left["input_ids"].tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]]
    assert left["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
