"""Source adapters, label mappings, and located errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augmentation.mapping import MAPPINGS_DIR, SourceMapping
from augmentation.recipe import SourceSpec
from augmentation.sources import SEED_CORPUS, load_source
from augmentation.synthesis import record_label
from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy

TAX = RiskTaxonomy.default()
V, P, F, S = "Violence", "Privacy Violations", "Financial Crime and Theft", "Sexual Misconduct, Exploitation, and Infidelity"
D, G, W = ("Discrimination and Verbal Abuse", "Illegal Drug-Related Activities and Substance Abuse",
           "Weapons, Explosives, Arson, and Illegal Firearm Transactions")


@pytest.fixture(scope="module")
def fx(fixtures_dir) -> Path:
    return fixtures_dir / "augment"


@pytest.fixture(scope="module")
def hub(fx) -> dict:
    return json.loads((fx / "hub_rows.json").read_text())


def load(type_, path="", **kw):
    return load_source(SourceSpec(type=type_, path=str(path), **kw), TAX)


# -- mappings ------------------------------------------------------------------------------------------
def test_every_shipped_mapping_loads_onto_the_taxonomy():
    names = {p.stem for p in MAPPINGS_DIR.glob("*.yaml")}
    assert {"generic", "openai_moderation", "cosalign_test", "pku_saferlhf", "beavertails", "wildguardmix"} <= names
    for path in MAPPINGS_DIR.glob("*.yaml"):
        mapping = SourceMapping.from_yaml(path, TAX)
        for targets in mapping.labels.values():
            assert all(t.category in TAX for t in targets)
    assert len(SourceMapping.from_yaml(MAPPINGS_DIR / "pku_saferlhf.yaml", TAX).labels) == 19 + 1
    assert len(SourceMapping.from_yaml(MAPPINGS_DIR / "beavertails.yaml", TAX).labels) == 14 + 1


def test_moderation_mapping_gives_severe_variants_severity_three():
    mapping = SourceMapping.from_yaml(MAPPINGS_DIR / "openai_moderation.yaml", TAX)
    assert set(mapping.labels) == {"S", "H", "V", "HR", "SH", "S3", "H2", "V2"}
    assert mapping.translate(["V"]) == ([V], 2)
    assert mapping.translate(["V", "V2"]) == ([V], 3)
    assert mapping.translate(["S3"]) == ([S], 3)
    with pytest.raises(InputError, match="unknown category 'X'"):
        mapping.translate(["X"], path="f", line=2, field="flags")


def test_bad_mapping_file_names_file_line_and_field(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nlabels:\n  a: Violence\n  b: Jaywalking\n")
    with pytest.raises(InputError) as err:
        SourceMapping.from_yaml(path, TAX)
    assert f"{path}:4" in str(err.value) and "labels.b" in str(err.value) and "Jaywalking" in str(err.value)
    path.write_text("name: m\nlabelz: {}\n")
    with pytest.raises(InputError, match=r"m.yaml:2: field 'labelz'"):
        SourceMapping.from_yaml(path, TAX)


# -- generic formats -----------------------------------------------------------------------------------
def test_generic_jsonl_records(fx):
    records = load("jsonl", fx / "tiny.jsonl")
    assert len(records) == 13
    first = records[0]
    assert first.is_request and first.categories == (V, P) and first.severity == 3  # taxonomy order
    refusal = next(r for r in records if r.is_refusal)
    assert not refusal.helpful and refusal.categories == ()
    with_system = [r for r in records if r.messages[0]["role"] == "system"]
    assert len(with_system) == 3 and len({r.prompt_id for r in with_system}) == 1
    neighbour = [r for r in records if r.prompt_id == first.prompt_id]
    assert len(neighbour) == 6  # several responses per prompt -> pairs can form
    hastings = records[-1]
    assert hastings.configs == [SafetyConfig(allow={V: 1})]
    assert record_label(hastings.configs[0], hastings) == 1


def test_generic_csv_records(fx):
    records = load("csv", fx / "tiny.csv")
    assert [r.categories for r in records] == [(), (V,), (), (V, P)]
    assert records[2].is_refusal and not records[2].helpful
    assert records[3].is_request and records[3].severity == 3
    assert records[1].severity == 2 and records[1].severity_known


def test_missing_severity_takes_mapping_default(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response": "r", "categories": [V]}) + "\n")
    (record,) = load("jsonl", path)
    assert record.severity == 2 and not record.severity_known


def test_seed_corpus_covers_every_category_and_severity():
    records = load("seed")
    assert len(records) >= 250
    seen = {(c, r.severity) for r in records for c in r.categories}
    assert {(c, s) for c in TAX.names for s in (1, 2, 3)} <= seen
    prompts: dict[str, list] = {}
    for r in records:
        prompts.setdefault(r.prompt_id, []).append(r)
    assert all(sum(not r.is_request for r in group) >= 2 for group in prompts.values())
    assert sum(r.is_refusal for r in records) >= 40 and sum(not r.categories and r.helpful for r in records) >= 50


def test_seed_generator_reproduces_the_committed_corpus(tmp_path):
    from tools import make_seed

    make_seed.write(tmp_path / "seed.jsonl")
    assert (tmp_path / "seed.jsonl").read_bytes() == SEED_CORPUS.read_bytes()


# -- moderation and CoSAlign formats --------------------------------------------------------------------
def test_moderation_records_and_unknown_flags(fx):
    records = load("openai_moderation", fx / "moderation_sample.jsonl")
    benign, violent, graphic, partial, sexual, hateful = records
    assert benign.categories == () and not benign.uncertain and benign.response == "What a lovely day at the beach."
    assert benign.messages[0]["role"] == "user" and benign.prompt_id != violent.prompt_id
    assert (violent.categories, violent.severity) == ((V,), 2)
    assert (graphic.categories, graphic.severity) == ((V,), 3)
    assert partial.categories == () and partial.uncertain == {S: 3, D: 3, V: 3}  # S, H, S3, H2 missing
    assert sexual.categories == (S,) and sexual.uncertain[S] == 3
    assert set(hateful.categories) == {D, V} and hateful.severity == 3
    both = load("openai_moderation", fx / "moderation_sample.jsonl", use_as="both")
    assert len(both) == 12 and sum(r.is_request for r in both) == 6
    requests = [r for r in both if r.is_request]
    assert requests[1].messages[0]["content"] == "[a text flagged as violent]"
    assert requests[1].prompt_id == violent.prompt_id  # both views of a text share its split


def test_cosalign_records_merge_configs_and_match_situations(fx):
    records = load("cosalign_test", fx / "cosalign_sample.jsonl")
    assert len(records) == 3  # the repeated prompt is one record
    fight, ex, cat = records
    assert fight.is_request and fight.categories == (V,) and not fight.severity_known
    assert [c.allow for c in fight.configs] == [{V: 3}, {}]
    assert [record_label(c, fight) for c in fight.configs] == [1, 0]  # situation 1, situation 3
    assert record_label(ex.configs[0], ex) == 0  # situation 2: partial overlap
    assert record_label(cat.configs[0], cat) == 1


# -- hub adapters (rows in the real schemas; the hub itself is never contacted) --------------------------
def test_pku_saferlhf_rows(hub):
    records = load_source(SourceSpec(type="pku_saferlhf"), TAX, rows=hub["pku_saferlhf"])
    assert len(records) == 4
    safe, phish, tease, cruel = records
    assert safe.categories == () and phish.categories == (F, P) and phish.severity == 3
    assert safe.prompt_id == phish.prompt_id
    assert tease.categories == (D,) and tease.severity == 1
    assert set(cruel.categories) == {D, "Other Harms"} and cruel.severity == 2  # Psychological Harm -> Other


def test_beavertails_rows(hub):
    records = load_source(SourceSpec(type="beavertails"), TAX, rows=hub["beavertails"])
    gun, licensed, lie = records
    assert gun.categories == (G, W) and gun.severity == 2 and not gun.severity_known
    assert licensed.categories == ()
    assert lie.categories == ("Other Harms",)  # unsafe without a flag


def test_wildguardmix_rows(hub):
    records = load_source(SourceSpec(type="wildguardmix"), TAX, rows=hub["wildguardmix"])
    refusal, leak, pasta = records  # the unlabelled test row is skipped
    assert refusal.is_refusal and not refusal.helpful and refusal.categories == ()
    assert leak.categories == (P,) and not leak.is_refusal
    assert pasta.categories == ()
    both = load_source(SourceSpec(type="wildguardmix", use_as="both"), TAX, rows=hub["wildguardmix"])
    requests = [r for r in both if r.is_request]
    # one request per distinct prompt (the repeated prompt de-duplicates), screened by prompt_harm_label
    assert [r.categories for r in requests] == [(P,), (), ()]
    assert len(both) == 6


@pytest.mark.parametrize(("type_", "name", "config", "split"), [
    ("pku_saferlhf", "PKU-Alignment/PKU-SafeRLHF", None, "train"),
    ("beavertails", "PKU-Alignment/BeaverTails", None, "30k_train"),
    ("wildguardmix", "allenai/wildguardmix", "wildguardtrain", "train"),
])
def test_hub_loading_calls_load_dataset_with_the_real_ids(monkeypatch, hub, type_, name, config, split):
    import datasets

    calls = []

    def fake_load_dataset(path, name_=None, split=None, revision=None):
        calls.append((path, name_, split, revision))
        return hub[type_]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    records = load_source(SourceSpec(type=type_, revision="abc"), TAX)
    assert records and calls == [(name, config, split, "abc")]


# -- bad input: file, line and field in the message -----------------------------------------------------
@pytest.mark.parametrize(("fixture", "line", "field", "words"), [
    ("bad_malformed.jsonl", 3, "categories", "malformed JSON"),
    ("bad_missing_field.jsonl", 2, "categories", "missing"),
    ("bad_unknown_category.jsonl", 3, "categories", "unknown category 'Jaywalking'"),
    ("bad_empty_config.jsonl", 2, "config", "empty config"),
    ("bad_not_utf8.jsonl", 2, "prompt", "not valid UTF-8"),
])
def test_bad_input_names_file_line_and_field(fx, fixture, line, field, words):
    with pytest.raises(InputError) as err:
        load("jsonl", fx / fixture)
    message = str(err.value)
    assert f"{fx / fixture}:{line}: field '{field}'" in message and words in message


def test_more_bad_rows(tmp_path):
    path = tmp_path / "x.jsonl"
    cases = [
        ({"response": "r", "categories": []}, "prompt", "missing"),
        ({"prompt": "q", "categories": [V], "severity": 7}, "severity", "0-3"),
        ({"prompt": "q", "categories": [V], "severity": 0}, "severity", "1-3"),
        ({"prompt": "q", "categories": "Violence"}, "categories", "expected list"),
        ({"prompt": "q", "response": "", "categories": []}, "response", "non-empty"),
        ({"prompt": "q", "categories": [], "colour": 1}, "colour", "unknown field"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "categories": []},
         "messages", "end with a user turn"),
        ({"prompt": "q", "categories": [], "config": {"allow": {"Other Harms": 1}}}, "config.allow.Other Harms",
         "never be allowed"),
    ]
    for obj, field, words in cases:
        path.write_text(json.dumps({"prompt": "ok", "categories": []}) + "\n" + json.dumps(obj) + "\n")
        with pytest.raises(InputError) as err:
            load("jsonl", path)
        assert f"{path}:2: field '{field}'" in str(err.value) and words in str(err.value), obj


def test_bad_moderation_flag_and_missing_file(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"prompt": "x", "V": 1, "ZZ": 1}) + "\n")
    with pytest.raises(InputError, match=r"m.jsonl:1: field 'ZZ': unknown category"):
        load("openai_moderation", path)
    path.write_text(json.dumps({"prompt": "x", "V": 2}) + "\n")
    with pytest.raises(InputError, match=r"m.jsonl:1: field 'V': flag must be 0 or 1"):
        load("openai_moderation", path)
    with pytest.raises(InputError, match="file not found"):
        load("jsonl", tmp_path / "nope.jsonl")
