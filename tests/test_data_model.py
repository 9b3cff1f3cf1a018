"""The data model: taxonomy, safety configs, the compliance rule and error score, records, file helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csrm.base.compliance import VIOLATION_THRESHOLD, complies, error_score, violating_categories
from csrm.base.errors import InputError
from csrm.base.io import atomic_path, iter_jsonl, load_yaml, read_text, require, write_json, write_jsonl
from csrm.base.paths import CONFIGS_DIR
from csrm.base.records import Example, PreferencePair, SourceRecord, as_messages, last_user_turn, stable_id
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy, Severity

V, P, F = "Violence", "Privacy Violations", "Financial Crime and Theft"


@pytest.fixture(scope="module")
def taxonomy() -> RiskTaxonomy:
    return RiskTaxonomy.default()


# -- taxonomy --------------------------------------------------------------------------------------------
def test_default_taxonomy_has_eight_categories_and_other_harms_is_not_allowable(taxonomy):
    assert len(taxonomy.names) == 8
    assert "Other Harms" in taxonomy and not taxonomy["Other Harms"].allowable
    assert "Other Harms" not in taxonomy.allowable_names and len(taxonomy.allowable_names) == 7
    assert all(c.definition for c in taxonomy.categories)


def test_taxonomy_check_orders_dedupes_and_rejects_unknown(taxonomy):
    assert taxonomy.check([P, V, P]) == (V, P)
    with pytest.raises(InputError) as err:
        taxonomy.check([V, "Jaywalking"], path="f.jsonl", line=4)
    assert "f.jsonl:4" in str(err.value) and "Jaywalking" in str(err.value) and "categories" in str(err.value)
    with pytest.raises(InputError):
        taxonomy["Jaywalking"]


def test_taxonomy_from_yaml_validates(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: t\ncategories:\n  - name: A\n    definition: a\n  - name: B\n")
    with pytest.raises(InputError, match=r"categories\[1\]"):
        RiskTaxonomy.from_yaml(path)
    path.write_text("name: t\ncategories:\n  - {name: A, definition: a}\n  - {name: A, definition: b}\n")
    with pytest.raises(InputError, match="duplicate"):
        RiskTaxonomy.from_yaml(path)


def test_severity_is_ordinal():
    assert Severity.NONE < Severity.LOW < Severity.MODERATE < Severity.SEVERE
    assert int(Severity.SEVERE) == 3


# -- safety config ---------------------------------------------------------------------------------------
def test_config_from_dict_true_means_any_severity_and_zero_is_dropped(taxonomy):
    config = SafetyConfig.from_dict({"allow": {V: True, P: 0, F: 2}}, taxonomy=taxonomy)
    assert config.allow == {V: 3, F: 2}
    assert config.max_severity(V) == 3 and config.max_severity(P) == 0
    assert config.allowed_categories == (V, F)


def test_config_list_allow_and_policy_key_ignores_wording(taxonomy):
    a = SafetyConfig.from_dict({"allow": [V, P], "text": "one wording"}, taxonomy=taxonomy)
    b = SafetyConfig(text="another wording", allow={P: 3, V: 3})
    assert a.policy_key == b.policy_key
    assert a.id != b.id  # the id covers the text too
    assert SafetyConfig(allow={}).policy_key == "[]"


def test_config_rejects_bad_input(taxonomy):
    with pytest.raises(InputError, match="empty safety config"):
        SafetyConfig.from_dict({}, taxonomy=taxonomy)
    with pytest.raises(InputError, match="never be allowed"):
        SafetyConfig.from_dict({"allow": {"Other Harms": 1}}, taxonomy=taxonomy)
    with pytest.raises(InputError, match="unknown category"):
        SafetyConfig.from_dict({"allow": {"Jaywalking": 1}}, taxonomy=taxonomy)
    with pytest.raises(InputError, match="both allowed and denied"):
        SafetyConfig.from_dict({"allow": {V: 1}, "deny": [V]}, taxonomy=taxonomy)
    with pytest.raises(InputError, match="0-3"):
        SafetyConfig.from_dict({"allow": {V: 5}}, taxonomy=taxonomy)
    with pytest.raises(InputError) as err:
        SafetyConfig.from_dict({"allow": {V: 1}, "colour": "red"}, taxonomy=taxonomy, path="c.yaml", line=3)
    assert "c.yaml:3" in str(err.value) and "colour" in str(err.value)


def test_free_text_config_has_no_structure():
    config = SafetyConfig(text="Be nice.")
    assert not config.is_structured and config.policy_key.startswith("text:")
    with pytest.raises(ValueError):
        config.max_severity(V)


def test_config_render_lists_allowed_categories_with_definitions(taxonomy):
    text = SafetyConfig(allow={V: 2}).render(taxonomy)
    assert V in text and "moderate" in text and taxonomy[V].definition in text
    assert "do not produce harmful content" in SafetyConfig(allow={}).render(taxonomy)
    assert SafetyConfig(text="Custom.", allow={V: 1}).render(taxonomy) == "Custom."


def test_example_safety_configs_load(taxonomy):
    files = sorted((CONFIGS_DIR / "safety").glob("*.yaml"))
    assert len(files) >= 3
    keys = set()
    for path in files:
        config = SafetyConfig.from_file(path, taxonomy=taxonomy)
        assert config.is_structured and config.name
        assert "Other Harms" not in config.allow
        keys.add(config.policy_key)
    assert "[]" in keys  # a strict example is among them
    assert len(keys) == len(files)


def test_config_from_file_formats(tmp_path, taxonomy):
    (tmp_path / "c.json").write_text(json.dumps({"allow": {V: 1}}))
    assert SafetyConfig.from_file(tmp_path / "c.json", taxonomy=taxonomy).allow == {V: 1}
    (tmp_path / "c.txt").write_text("Only talk about cooking.")
    assert SafetyConfig.from_file(tmp_path / "c.txt").text == "Only talk about cooking."
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(InputError, match="malformed JSON"):
        SafetyConfig.from_file(tmp_path / "bad.json")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(InputError) as err:
        SafetyConfig.from_file(tmp_path / "empty.yaml")
    assert "empty.yaml" in str(err.value) and "field 'text'" in str(err.value)


# -- compliance rule and error score ---------------------------------------------------------------------
@pytest.mark.parametrize(("allow", "categories", "severity", "expected"), [
    ({V: 3}, [V], 3, True),
    ({V: 2}, [V], 3, False),          # severity above the limit
    ({V: 2}, [V], 2, True),           # at the limit
    ({V: 3}, [V, P], 1, False),       # one category not allowed
    ({V: 3, P: 1}, [V, P], 1, True),
    ({}, [], 0, True),                # benign always complies
    ({}, [V], 1, False),              # strict config: even mild content violates
    ({V: 3}, ["Other Harms"], 1, False),
])
def test_complies(allow, categories, severity, expected):
    assert complies(SafetyConfig(allow=allow), categories, severity) is expected


def test_violating_categories_and_error_score_weights():
    config = SafetyConfig(allow={V: 2})
    assert violating_categories(config, [V, P], 2) == [P]
    assert error_score(config, [], 0, helpful=True) == 0
    assert error_score(config, [], 0, helpful=False) == 1  # a refusal
    assert error_score(config, [V], 2, helpful=True) == pytest.approx(0.1)
    assert error_score(config, [P], 1, helpful=True) == pytest.approx(3)  # CoSAlign's weight at severity 1
    assert error_score(config, [P], 3, helpful=True) == pytest.approx(5)
    assert error_score(config, [V, P], 2, helpful=True) == pytest.approx(0.1 + 4)


def test_error_threshold_separates_compliant_from_violating():
    config = SafetyConfig(allow={n: 3 for n in RiskTaxonomy.default().allowable_names})
    worst_compliant = error_score(config, RiskTaxonomy.default().allowable_names, 3, helpful=False)
    assert worst_compliant < VIOLATION_THRESHOLD
    assert error_score(SafetyConfig(allow={}), [V], 1, helpful=True) >= VIOLATION_THRESHOLD


# -- records -------------------------------------------------------------------------------------------
def test_source_record_ids_and_benign_severity():
    a = SourceRecord(as_messages("hi"), "hello", (), 2, "s")
    assert a.severity == 0  # no categories -> severity 0
    b = SourceRecord(as_messages("hi"), "bye", (), 0, "s")
    assert a.prompt_id == b.prompt_id and a.record_id != b.record_id
    assert a.prompt == "hi" and len(a.record_id) == 16


def test_as_messages_validates_and_last_user_turn():
    msgs = as_messages([{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"}])
    assert last_user_turn(msgs) == "q"
    with pytest.raises(ValueError):
        as_messages([{"role": "robot", "content": "x"}])
    assert stable_id(1, "a") == stable_id(1, "a") != stable_id("a", 1)


def test_example_and_pair_round_trip():
    example = Example("cid", "text", json.dumps({V: 2}), "exact", as_messages("q"), None, [V], 2, 1, 0.1, "s",
                      meta={"template": "terse"})
    row = example.to_row()
    assert isinstance(row["meta"], str) and Example.from_row(row) == example
    pair = PreferencePair("cid", "text", as_messages("q"), None, "No.", 0.1, 1.0, 0.9, "s")
    assert PreferencePair.from_row(pair.to_row()) == pair
    with pytest.raises(ValueError, match="lower error"):
        PreferencePair("cid", "text", as_messages("q"), "a", "b", 3.0, 1.0, -2.0, "s")


# -- io ------------------------------------------------------------------------------------------------
def test_read_text_and_iter_jsonl_locate_faults(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": \xff}\n')
    with pytest.raises(InputError, match=r"x.jsonl:3: not valid UTF-8"):
        read_text(path)
    path.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(InputError, match=r"x.jsonl:2: each line must be a JSON object"):
        list(iter_jsonl(path))
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(InputError, match=r"x.jsonl:3: malformed JSON"):
        list(iter_jsonl(path))


def test_require_checks_presence_type_and_emptiness():
    assert require({"a": "x"}, "a", str) == "x"
    with pytest.raises(InputError, match="field 'b': missing"):
        require({"a": "x"}, "b", str)
    with pytest.raises(InputError, match="expected str"):
        require({"a": 1}, "a", str)
    with pytest.raises(InputError, match="empty"):
        require({"a": " "}, "a", str)
    with pytest.raises(InputError, match="expected int"):
        require({"a": True}, "a", int)
    assert require({"a": []}, "a", list, allow_empty=True) == []


def test_load_yaml_errors(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="top level must be a mapping"):
        load_yaml(path)
    path.write_text("")
    assert load_yaml(path) == {}


def test_atomic_path_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_path(target, is_dir=True) as tmp:
        (tmp / "partial.txt").write_text("x")
        raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == [".csrm-output.json", "b.txt"]  # a.txt was its own
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_jsonl_and_json(tmp_path):
    assert write_jsonl(tmp_path / "a.jsonl", iter([{"x": 1}, {"x": "é"}])) == 2
    assert [o for _, o in iter_jsonl(tmp_path / "a.jsonl")] == [{"x": 1}, {"x": "é"}]
    write_json(tmp_path / "m.json", {"k": [1]})
    assert json.loads(Path(tmp_path / "m.json").read_text()) == {"k": [1]}
