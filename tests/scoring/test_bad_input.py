"""The bad-input table: every case runs through the library, ``csrm score`` and ``csrm serve`` and fails the
same way on each (a located error naming the field: InputError / exit 2 / 4xx), while valid-but-unusual input
(U+2028 inside strings, a 20 MB response) is scored, in bounded time, equal on every surface."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import csrm.scoring.scorer
from csrm.app.cli import main as csrm_main
from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.base.text import ELISION, cap_text, char_cap
from csrm.base.validation import parse_item
from csrm.scoring.server import create_app, display_name

VALID = {"id": "ok", "config": "No violence.", "prompt": "Write a story.", "response": "Once upon a time."}

# (case, item, field the error names, words of the message)
ITEM_CASES = [
    ("lone surrogate in response", {**VALID, "response": "x\ud800y"}, "response", "lone surrogate U+D800"),
    ("lone surrogate in prompt", {**VALID, "prompt": "p\udfffq"}, "prompt", "lone surrogate U+DFFF"),
    ("lone surrogate in a turn", {"id": "ok", "config": "c", "messages": [{"role": "user", "content": "\ud83d"}]},
     "messages.0.content", "lone surrogate"),
    ("lone surrogate in config", {**VALID, "config": "no \ud800 violence"}, "config", "lone surrogate"),
    ("lone surrogate in id", {**VALID, "id": "a\ud800"}, "id", "lone surrogate"),
    ("never-allowed category", {**VALID, "config": {"allow": {"Other Harms": True}}}, "config.allow.Other Harms",
     "can never be allowed"),
    ("unknown category beside text", {**VALID, "config": {"text": "Fiction is fine.", "allow": {"Violance": 2}}},
     "config.allow.Violance", "unknown category 'Violance'"),
    ("unknown category, no text", {**VALID, "config": {"allow": {"Gambling": 1}}}, "config.allow.Gambling",
     "unknown category"),
    ("unknown denied category", {**VALID, "config": {"text": "t", "deny": ["Spam"]}}, "config.deny",
     "unknown category 'Spam'"),
    ("severity out of range", {**VALID, "config": {"allow": {"Violence": 7}}}, "config.allow.Violence",
     "severity limit"),
    ("misspelled field", {"id": "ok", "config": "c", "prompt": "p", "respnse": "r"}, "respnse",
     "did you mean 'response'"),
    ("prompt and messages", {**VALID, "messages": [{"role": "user", "content": "x"}]}, "prompt", "exactly one"),
    ("response not a string", {**VALID, "response": 5}, "response", "expected str or null"),
]


@pytest.fixture(scope="module")
def scorer(encoder_model_dir):
    return csrm.scoring.scorer.load(encoder_model_dir)


@pytest.fixture(scope="module")
def client(scorer):
    with TestClient(create_app(scorer, max_body_bytes=25_000_000)) as c:
        yield c


def http_loc(field: str) -> list:
    return ["body", "items", 1, *(int(p) if p.isdigit() else p for p in field.split("."))]


@pytest.mark.parametrize(("case", "item", "field", "words"), ITEM_CASES, ids=[c[0] for c in ITEM_CASES])
def test_bad_item_fails_alike_in_library_cli_and_server(case, item, field, words, tmp_path, scorer, client,
                                                        encoder_model_dir, capsys):
    # library: the validation path every surface calls
    with pytest.raises(InputError) as err:
        parse_item(item, scorer.taxonomy, path="in.jsonl", line=2)
    assert err.value.field == field and words in str(err.value)
    assert str(err.value).startswith(f"in.jsonl:2: field '{field}'")
    # CLI: exit 2, file:line: field, before any model loads (no output, no partial)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps(VALID) + "\n" + json.dumps(item) + "\n", encoding="utf-8")
    assert csrm_main(["score", str(encoder_model_dir), "--input", str(inp), "--output", str(out), "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert f"in.jsonl:2: field '{field}'" in message and words in message, message
    assert not out.exists() and not out.with_name("out.jsonl.partial").exists()
    # server: 4xx naming the field; the valid item of the same request is not scored either
    response = client.post("/score", content=json.dumps({"items": [VALID, item]}),
                           headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    detail = response.json()["detail"]
    assert any(d["loc"][: len(http_loc(field))] == http_loc(field) for d in detail), detail
    if response.status_code == 400:
        assert words in detail[0]["msg"]


@pytest.mark.parametrize(("config", "words"), [
    (SafetyConfig(allow={"Other Harms": 3}), "can never be allowed"),
    (SafetyConfig(text="Fiction is fine.", allow={"Violance": 2}), "unknown category"),
])
def test_library_calls_apply_the_same_config_rules(scorer, config, words):
    with pytest.raises(InputError, match=words):
        scorer.score(config, "Write a story.", "Once.")


def test_library_call_with_a_lone_surrogate_names_the_item_and_field(scorer):
    with pytest.raises(InputError, match=r"field 'items.1.response': lone surrogate U\+D800"):
        scorer.score_batch(["c", "c"], ["p", "p"], ["fine", "x\ud800"])


def test_rank_names_the_bad_response(client):
    body = {"config": "c", "prompt": "p", "responses": ["fine", "bad \ud800"]}
    response = client.post("/rank", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["detail"][0]["loc"] == ["body", "responses", 1]


def test_line_separators_inside_strings_are_valid_everywhere(tmp_path, scorer, client, encoder_model_dir):
    odd = {"id": "sep", "config": "No violence.\u2028Be kind.", "prompt": "Line\u2029break\u0085here",
           "response": "A\u2028B"}
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps(odd, ensure_ascii=False) + "\n" + json.dumps(VALID) + "\n", encoding="utf-8")
    assert csrm_main(["score", str(encoder_model_dir), "--input", str(inp), "--output", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert [r["id"] for r in rows] == ["sep", "ok"]
    expected = scorer.score(odd["config"], odd["prompt"], odd["response"])
    assert rows[0]["p_comply"] == pytest.approx(expected.p_comply, abs=1e-6)
    got = client.post("/score", json={"items": [odd]}).json()["results"][0]
    assert got["p_comply"] == pytest.approx(expected.p_comply, abs=1e-6)


def test_a_20mb_response_is_capped_before_tokenizing(scorer, client):
    """The whole 20 MB response would be 4M+ tokens; the cap keeps the work bounded and, because the formatter
    keeps only the response's head, the result equals scoring the text the model actually reads."""
    head = "The knight lifts the sword and the crowd cheers. "
    huge = head * (20_000_000 // len(head))
    start = time.perf_counter()
    result = scorer.score("No violence.", "Write a story.", huge)
    assert time.perf_counter() - start < 10
    cap = char_cap(scorer.model.config.max_length)
    short = scorer.score("No violence.", "Write a story.", huge[: 3 * cap])
    assert result.p_comply == pytest.approx(short.p_comply, abs=1e-6)
    # the server's default body limit refuses it; under a larger limit it is answered the same way
    body = json.dumps({"items": [{"config": "No violence.", "prompt": "Write a story.", "response": huge}]})
    start = time.perf_counter()
    got = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert got.status_code == 200 and time.perf_counter() - start < 20
    assert got.json()["results"][0]["p_comply"] == pytest.approx(result.p_comply, abs=1e-6)


def test_the_cap_never_changes_what_the_model_reads(scorer):
    """Over-long config, turns and response: the capped item encodes to the same ids as the uncapped one."""
    from csrm.base.score_types import ScoreItem

    long = "word " * 40_000
    items = [ScoreItem("Policy: " + long, [{"role": "user", "content": "old " + long},
                                           {"role": "user", "content": long + " newest"}], "Answer: " + long),
             ScoreItem("short config", [{"role": "user", "content": "p"}], long)]
    uncapped = scorer.predictor.formatter.encode_batch([i.config for i in items], [i.messages for i in items],
                                             [i.response for i in items])
    assert [e.input_ids for e in scorer.predictor.encode(items)] == [e.input_ids for e in uncapped]


def test_cap_text_keeps_both_ends():
    assert cap_text("abcdef", 3) == "abcdef"
    assert cap_text("abcdefg", 3) == "abc" + ELISION + "efg"


def test_empty_input_file_is_refused(tmp_path, encoder_model_dir, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n\n", encoding="utf-8")
    assert csrm_main(["score", str(encoder_model_dir), "--input", str(inp), "--output", str(tmp_path / "o")]) == 2
    assert "no items" in capsys.readouterr().err


# -- commands: located errors (exit 2) instead of tracebacks ------------------------------------------------
@pytest.fixture(scope="module")
def not_a_csrm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bert")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    return folder


def command_cases(tmp: Path, model: Path, bert: Path) -> list[tuple[str, list[str], str]]:
    recipe = tmp / "run.yaml"
    recipe.write_text(f"name: t\naugment: configs/augment/seed.yaml\ntrain: configs/train/tiny_test.yaml\n"
                      f"output_dir: {tmp / 'run'}\n")
    return [
        ("missing train config", ["train", str(tmp / "nope.yaml")], "nope.yaml: no such file"),
        ("calibrate a non-CSRM folder", ["calibrate", str(bert), "--dataset-path", str(tmp)], "not a saved CSRM folder"),
        ("eval a non-CSRM folder", ["eval", str(bert), "--bench", "augmented", "--data-dir", str(tmp)],
         "not a saved CSRM folder"),
        ("score with a non-CSRM folder", ["score", str(bert), "--input", str(tmp / "in.jsonl"), "--output",
                                          str(tmp / "o.jsonl")], "not a saved CSRM folder"),
        ("missing run recipe", ["run", str(tmp / "nope.yaml")], "pipeline recipe not found"),
        ("missing align recipe", ["align", str(tmp / "nope.yaml")], "align recipe not found"),
        ("run eval_limit=abc", ["run", str(recipe), "eval_limit=abc"], "command line: field 'eval_limit': expected an integer"),
        ("run bench typo", ["run", str(recipe), "bench=[augmentd]"], "field 'bench': unknown benchmark"),
        ("zero-step training", ["train", "configs/train/tiny_test.yaml", "max_steps=-5", "num_train_epochs=0",
                                f"output_dir={tmp / 'm'}", f"dataset_path={tmp}"], "field 'max_steps'"),
        ("zero epochs", ["train", "configs/train/tiny_test.yaml", "max_steps=-1", "num_train_epochs=0",
                         f"output_dir={tmp / 'm'}", f"dataset_path={tmp}"], "field 'num_train_epochs'"),
        ("run with zero-step training", ["run", str(recipe), "train_overrides=[max_steps=0]"], "field 'max_steps'"),
        ("serve with an unset token variable", ["serve", str(model), "--token-env", "CSRM_TEST_UNSET_TOKEN"],
         "CSRM_TEST_UNSET_TOKEN is not set"),
    ]


def test_commands_exit_2_with_a_located_error(tmp_path, encoder_model_dir, not_a_csrm, capsys, monkeypatch):
    monkeypatch.delenv("CSRM_TEST_UNSET_TOKEN", raising=False)
    (tmp_path / "in.jsonl").write_text(json.dumps(VALID) + "\n")
    for case, argv, words in command_cases(tmp_path, encoder_model_dir, not_a_csrm):
        assert csrm_main(argv) == 2, case
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (case, err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "m").exists()  # nothing ran


@pytest.mark.parametrize(("argv", "words"), [
    (["calibrate", "M", "--dataset-path", "D", "--batch-tokens", "0"], "field 'batch_tokens': must be >= 1, got 0"),
    (["eval", "M", "--dev-fraction", "1.5"], "field 'dev_fraction': must be between 0 and 1"),
    (["eval", "M", "--limit", "0"], "field 'limit': must be >= 1"),
    (["score", "M", "--input", "I", "--output", "O", "--batch-tokens", "0"], "field 'batch_tokens': must be >= 1"),
    (["serve", "M", "--max-items", "-1"], "field 'max_items': must be >= 1"),
])
def test_bad_option_values_exit_2_naming_the_field(argv, words, capsys):
    assert csrm_main(argv) == 2 and words in capsys.readouterr().err


def test_align_default_recipe_resolves_from_any_folder(tmp_path, monkeypatch):
    from csrm.alignment.config import AlignConfig
    from csrm.app.align import items_from_augmentation

    monkeypatch.chdir(tmp_path)
    cfg = AlignConfig.load("configs/align/smollm2_cpu.yaml", ["data.train_items=2"])
    train, held_out = items_from_augmentation(cfg)
    assert train and held_out


def test_files_get_the_umask_mode(tmp_path, scorer):
    from csrm.base.io import atomic_path, write_json, write_jsonl

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        write_jsonl(tmp_path / "b.jsonl", [{"b": 1}])
        with atomic_path(tmp_path / "folder", is_dir=True) as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    for name in ("a.json", "b.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750


def test_health_shows_no_filesystem_path(scorer, encoder_model_dir):
    with TestClient(create_app(scorer, model_name=display_name(str(encoder_model_dir)))) as c:
        text = c.get("/health").text
    assert json.loads(text)["model"] == "model" and str(encoder_model_dir.parent) not in text
    assert display_name("org/some-hub-model") == "org/some-hub-model"
