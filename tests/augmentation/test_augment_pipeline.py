"""The pipeline end to end on the bundled seed: outputs, label rule, balance, splits, determinism, recipes,
bad input, and the programmatic API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from augmentation import (
    load_recipe,
    prompts_with_configs,
    recipe_from_dict,
    render,
    request_records,
    synthesize_configs,
)
from augmentation.pipeline import build, load_taxonomy, run, split_rule
from augmentation.recipe import MODES, Recipe
from augmentation.refusals import REFUSALS
from augmentation.sources import load_records
from augmentation.synthesis import record_label
from augmentation.templates import TEMPLATES
from csrm.app import cli
from csrm.base.compliance import VIOLATION_THRESHOLD, complies, error_score
from csrm.base.config import field_help
from csrm.base.errors import InputError
from csrm.base.io import OUTPUT_MARKER
from csrm.base.paths import CONFIGS_DIR
from csrm.base.records import Example, PreferencePair
from csrm.base.safety_config import SafetyConfig
from tools.make_seed import SEED_REFUSALS

SEED_RECIPE = CONFIGS_DIR / "augment" / "seed.yaml"
SPLITS = ("train", "validation")


def augment(*args: str) -> int:
    return cli.main(["augment", *map(str, args), "progress=false"])


@pytest.fixture(scope="module")
def seed_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seed") / "out"
    assert augment(SEED_RECIPE, f"output_dir={out}") == 0
    return out


def rows(out: Path, kind: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{kind}.{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# -- outputs -------------------------------------------------------------------------------------------
def test_output_layout_and_columns(seed_out):
    from datasets import load_from_disk

    names = {p.name for p in seed_out.iterdir()}
    assert names == {"examples", "pairs", "manifest.json", OUTPUT_MARKER,  # the marker: csrm.base.io
                     *(f"{k}.{s}.jsonl" for k in ("examples", "pairs", "pairs_trl") for s in SPLITS)}
    examples, pairs = load_from_disk(str(seed_out / "examples")), load_from_disk(str(seed_out / "pairs"))
    assert set(examples) == set(pairs) == set(SPLITS)
    assert examples["train"].column_names == list(Example.__dataclass_fields__)
    assert pairs["train"].column_names == list(PreferencePair.__dataclass_fields__)
    m = manifest(seed_out)
    for split in SPLITS:
        assert len(examples[split]) == len(rows(seed_out, "examples", split)) == m["examples"][split]["count"] > 0
        assert len(pairs[split]) == len(rows(seed_out, "pairs", split)) == m["pairs"][split]["count"] > 0
    Example.from_row(examples["train"][0])
    PreferencePair.from_row(pairs["train"][0])
    assert m["records"]["total"] == 313 and m["records"]["by_source"] == {"seed": 313}
    assert set(m["examples"]["train"]) >= {"by_mode", "severity_histogram", "by_source", "compliant_fraction"}


def test_every_label_and_error_follows_the_rule(seed_out):
    for split in SPLITS:
        for row in rows(seed_out, "examples", split):
            config = SafetyConfig(text=row["config_text"], allow=json.loads(row["config_policy"]))
            assert "Other Harms" not in config.allow
            assert row["config_id"] == config.id and row["config_text"].strip()
            assert row["label"] == int(complies(config, row["categories"], row["severity"]))
            helpful = json.loads(row["meta"])["helpful"]
            assert row["error"] == pytest.approx(error_score(config, row["categories"], row["severity"], helpful=helpful))


def test_modes_templates_severities_and_refusals_are_all_used(seed_out):
    m = manifest(seed_out)["examples"]["train"]
    assert set(MODES) | {"refusal"} <= set(m["by_mode"])
    assert m["by_mode"]["drop_one"]["compliant"] == 0 and m["by_mode"]["exact"]["compliant"] == m["by_mode"]["exact"]["count"]
    threshold = m["by_mode"]["severity_threshold"]
    assert 0 < threshold["compliant"] < threshold["count"]
    assert len(m["by_template"]) >= 8
    assert set(m["severity_histogram"]) == {"0", "1", "2", "3"}
    assert m["refusals"] > 0 and m["request_level"] > 0


def test_labels_are_balanced(seed_out):
    m = manifest(seed_out)
    for split in SPLITS:
        data = rows(seed_out, "examples", split)
        share = sum(r["label"] for r in data) / len(data)
        assert 0.35 <= share <= 0.65 and share == pytest.approx(m["examples"][split]["compliant_fraction"], abs=1e-3)


def test_pairs_never_prefer_a_violation_and_rank_refusals_correctly(seed_out):
    refusals = set(REFUSALS) | set(SEED_REFUSALS)
    data = rows(seed_out, "pairs", "train") + rows(seed_out, "pairs", "validation")
    assert any(p["chosen"] is None for p in data) and any(p["rejected"] is None for p in data)
    refusal_rejected = refusal_chosen = 0
    for p in data:
        assert p["chosen_error"] < VIOLATION_THRESHOLD and p["margin"] > 0
        assert p["margin"] == pytest.approx(p["rejected_error"] - p["chosen_error"])
        if p["rejected"] in refusals:  # a permissive config: the helpful compliant answer wins
            refusal_rejected += 1
            assert p["chosen_error"] < 1 and p["rejected_error"] == 1
        if p["chosen"] in refusals:  # a restrictive config: the refusal beats a violation
            refusal_chosen += 1
            assert p["rejected_error"] >= VIOLATION_THRESHOLD
    assert refusal_rejected > 20 and refusal_chosen > 20


def test_no_prompt_or_policy_in_both_splits(seed_out):
    ex = {s: rows(seed_out, "examples", s) for s in SPLITS}
    pr = {s: rows(seed_out, "pairs", s) for s in SPLITS}
    prompts = {s: {r["prompt_id"] for r in ex[s]} | {p["prompt_id"] for p in pr[s]} for s in SPLITS}
    policies = {s: {r["config_policy"] for r in ex[s]} for s in SPLITS}
    assert prompts["train"] and prompts["validation"] and not prompts["train"] & prompts["validation"]
    assert policies["train"] and policies["validation"] and not policies["train"] & policies["validation"]
    assert "{}" in policies["train"]  # the strict policy is a training policy


def test_pair_policies_stay_in_their_split():
    recipe = load_recipe(SEED_RECIPE, ["progress=false"])
    taxonomy = load_taxonomy(recipe)
    result = build(recipe, load_records(recipe, taxonomy), taxonomy)
    rule = split_rule(recipe)
    keys = {s: {result.policy_of[p.config_id] for p in result.pairs[s]} for s in SPLITS}
    assert keys["train"] and keys["validation"] and not keys["train"] & keys["validation"]
    for split in SPLITS:
        assert all(rule.config_split(k) == split for k in keys[split])
        assert all(rule.prompt_split(p.prompt_id) == split for p in result.pairs[split])


def test_same_recipe_and_seed_give_byte_identical_jsonl(seed_out, tmp_path):
    again = tmp_path / "again"
    assert augment(SEED_RECIPE, f"output_dir={again}") == 0
    for kind in ("examples", "pairs"):
        for split in SPLITS:
            name = f"{kind}.{split}.jsonl"
            assert (again / name).read_bytes() == (seed_out / name).read_bytes(), name
    other = tmp_path / "other"
    assert augment(SEED_RECIPE, f"output_dir={other}", "seed=1") == 0
    assert (other / "examples.train.jsonl").read_bytes() != (seed_out / "examples.train.jsonl").read_bytes()
    # the split does not depend on the augmentation seed
    val = {r["prompt_id"] for r in rows(seed_out, "examples", "validation")}
    assert {r["prompt_id"] for r in rows(other, "examples", "validation")} <= val


# -- other inputs --------------------------------------------------------------------------------------
def test_generic_jsonl_and_csv_sources_with_source_configs(fixtures_dir, tmp_path):
    fx = fixtures_dir / "augment"
    recipe = recipe_from_dict({"sources": [{"type": "jsonl", "path": str(fx / "tiny.jsonl")},
                                           {"type": "csv", "path": str(fx / "tiny.csv"), "name": "tiny_csv"}],
                               "validation_prompt_fraction": 0.0, "validation_config_fraction": 0.0,
                               "progress": False, "min_compliant": 0.0,
                               "max_compliant": 1.0})
    m = run(recipe, output_dir=tmp_path / "out")
    train = m["examples"]["train"]
    assert m["examples"]["validation"]["count"] == 0 and not (tmp_path / "out" / "examples" / "validation").exists()
    assert set(train["by_source"]) == {"jsonl", "tiny_csv"} and train["by_mode"]["source"] == {"count": 1, "compliant": 1}
    assert m["pairs"]["train"]["count"] > 0
    assert (tmp_path / "out" / "examples.validation.jsonl").read_text() == ""


# -- bad input: nothing partial is left ------------------------------------------------------------------
@pytest.mark.parametrize(("fixture", "where"), [
    ("bad_malformed.jsonl", ":3: field 'categories'"),
    ("bad_missing_field.jsonl", ":2: field 'categories'"),
    ("bad_unknown_category.jsonl", ":3: field 'categories'"),
    ("bad_empty_config.jsonl", ":2: field 'config'"),
    ("bad_not_utf8.jsonl", ":2: field 'prompt'"),
])
def test_bad_input_stops_with_located_error_and_writes_nothing(fixtures_dir, tmp_path, capsys, fixture, where):
    source = fixtures_dir / "augment" / fixture
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"sources": [{"type": "jsonl", "path": str(source)}]}))
    out = tmp_path / "runs" / "out"
    assert augment(recipe, f"output_dir={out}") == 2
    assert f"{source}{where}" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.yaml"]  # no output, no temp folder


def test_failed_run_keeps_the_previous_output(seed_out, fixtures_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    bad = fixtures_dir / "augment" / "bad_unknown_category.jsonl"
    with pytest.raises(InputError):
        run(recipe_from_dict({"sources": [{"type": "jsonl", "path": str(bad)}], "progress": False}), output_dir=out)
    assert [p.name for p in out.iterdir()] == ["manifest.json"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- recipes -------------------------------------------------------------------------------------------
def test_shipped_recipes_load():
    for name in ("seed", "openai_moderation", "cosalign_test_seen", "shared", "hub"):
        recipe = load_recipe(CONFIGS_DIR / "augment" / f"{name}.yaml")
        assert recipe.sources and recipe.output_dir.startswith("runs/augment/")
    assert [s.type for s in load_recipe(CONFIGS_DIR / "augment" / "shared.yaml").sources] == [
        "openai_moderation", "cosalign_test"]


def test_recipe_rejects_unknown_keys_naming_file_line_and_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("seed: 1\nsources:\n  - type: seed\nmax_config_per_record: 3\n")
    with pytest.raises(InputError) as err:
        load_recipe(path)
    assert f"{path}:4: field 'max_config_per_record'" in str(err.value)
    path.write_text("sources:\n  - type: seed\n    limt: 3\n")
    with pytest.raises(InputError, match=r"r.yaml:3: field 'sources.0.limt'"):
        load_recipe(path)
    path.write_text("sources:\n  - type: sed\n")
    with pytest.raises(InputError, match=r"r.yaml:2: field 'sources.0.type': unknown source type"):
        load_recipe(path)
    path.write_text("sources: []\nseed: one\n")
    with pytest.raises(InputError, match=r"r.yaml:2: field 'seed': expected an integer"):
        load_recipe(path)
    path.write_text("")
    with pytest.raises(InputError, match="empty recipe"):
        load_recipe(path)


def test_overrides(tmp_path, capsys):
    recipe = load_recipe(SEED_RECIPE, ["seed=5", "sources.0.limit=10", "modes=[exact, none]", "min_compliant=0.3"])
    assert (recipe.seed, recipe.sources[0].limit, recipe.modes, recipe.min_compliant) == (5, 10, ["exact", "none"], 0.3)
    with pytest.raises(InputError, match="unknown key 'sed'"):
        load_recipe(SEED_RECIPE, ["sed=5"])
    with pytest.raises(InputError, match="not key=value"):
        load_recipe(SEED_RECIPE, ["seed"])
    with pytest.raises(InputError, match="no such setting"):
        load_recipe(SEED_RECIPE, ["sources.3.limit=1"])
    assert augment(SEED_RECIPE, "validation_prompt_fraction=2") == 2
    assert "must lie in [0, 1]" in capsys.readouterr().err


def test_every_recipe_field_has_help(capsys):
    assert all(help_ for _, _, help_ in field_help(Recipe))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["augment", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "max_configs_per_record" in text and "use_as" in text


# -- programmatic API ----------------------------------------------------------------------------------
def test_request_records_and_prompts_with_configs_respect_the_split():
    recipe = load_recipe(SEED_RECIPE, ["progress=false"])
    rule = split_rule(recipe)
    train = request_records(recipe)
    everything = request_records(recipe, split=None)
    assert train and all(r.is_request for r in train) and len(everything) == 57 > len(train)
    assert all(rule.prompt_split(r.prompt_id) == "train" for r in train)
    combos = prompts_with_configs(recipe, split="validation", configs_per_prompt=2)
    assert combos
    for record, synth in combos:
        assert rule.prompt_split(record.prompt_id) == "validation"
        assert rule.config_split(synth.config.policy_key) == "validation"
        assert synth.label == record_label(synth.config, record) and synth.config.text.strip()
        assert synth.template in TEMPLATES


def test_synthesize_configs_and_render_are_deterministic():
    (record, *_) = request_records(load_recipe(SEED_RECIPE), split=None)
    a = synthesize_configs(record, seed=3, max_configs=4)
    assert a == synthesize_configs(record, seed=3, max_configs=4)
    assert len(a) == 4 and {s.label for s in a} == {0, 1}
    assert all(s.config.allow is not None and "Other Harms" not in s.config.allow for s in a)
    assert render({"Violence": 2}, seed=1) == render({"Violence": 2}, seed=1)
    assert "Violence" in render({"Violence": 2}, seed=1)


def test_gc_paused_restores_the_collector_even_on_error():
    import gc

    from augmentation.pipeline import gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()
