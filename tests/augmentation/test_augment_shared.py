"""`csrm augment` on the shared data (OpenAI moderation, CoSAlign-Test seen, and both): balanced labels,
pairs, no split leakage. Skipped where ../shared/data is absent (a failure in CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augmentation.mapping import MAPPINGS_DIR, SourceMapping
from augmentation.sources import cosalign_record
from augmentation.synthesis import record_label
from csrm.app import cli
from csrm.base.paths import CONFIGS_DIR
from csrm.base.taxonomy import RiskTaxonomy

pytestmark = pytest.mark.shared_data
SPLITS = ("train", "validation")


def run_recipe(name: str, out: Path) -> dict:
    assert cli.main(["augment", str(CONFIGS_DIR / "augment" / f"{name}.yaml"), f"output_dir={out}", "progress=false"]) == 0
    return json.loads((out / "manifest.json").read_text())


def jsonl(out: Path, kind: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{kind}.{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def check_balanced_pairs_and_splits(out: Path, manifest: dict) -> None:
    for split in SPLITS:
        examples = manifest["examples"][split]
        assert examples["count"] > 0 and manifest["pairs"][split]["count"] > 0
        assert 0.35 <= examples["compliant_fraction"] <= 0.65
        assert examples["compliant"] > 0 and examples["violating"] > 0
        assert manifest["pairs"][split]["max_chosen_error"] < 3
    prompts = {s: {r["prompt_id"] for r in jsonl(out, "examples", s) + jsonl(out, "pairs", s)} for s in SPLITS}
    policies = {s: {r["config_policy"] for r in jsonl(out, "examples", s)} for s in SPLITS}
    assert not prompts["train"] & prompts["validation"]
    assert not policies["train"] & policies["validation"]


def test_openai_moderation_recipe(shared_data, tmp_path):
    out = tmp_path / "mod"
    m = run_recipe("openai_moderation", out)
    check_balanced_pairs_and_splits(out, m)
    assert m["records"]["total"] > 1600 and m["records"]["with_uncertain_labels"] > 0
    assert m["build"]["candidates_dropped_uncertain"] > 0
    train = m["examples"]["train"]
    assert {"2", "3"} <= set(train["severity_histogram"])  # base flags and severe variants
    assert train["by_mode"]["severity_threshold"]["count"] > 0
    rows = jsonl(out, "examples", "train")
    assert all(r["response"] is not None for r in rows)  # texts are judged as responses


def test_cosalign_seen_recipe(shared_data, tmp_path):
    out = tmp_path / "cos"
    m = run_recipe("cosalign_test_seen", out)
    check_balanced_pairs_and_splits(out, m)
    train = m["examples"]["train"]
    assert train["by_mode"]["source"]["count"] > 0 and "severity_threshold" not in train["by_mode"]
    assert train["request_level"] == train["count"] - train["refusals"]
    pairs = jsonl(out, "pairs", "train")
    assert all((p["chosen"] is None) != (p["rejected"] is None) for p in pairs)  # full answer vs refusal


def test_cosalign_source_labels_agree_with_situations(shared_data):
    taxonomy = RiskTaxonomy.default()
    mapping = SourceMapping.from_yaml(MAPPINGS_DIR / "cosalign_test.yaml", taxonomy)
    path = shared_data / "cosalign_test" / "cosalign_test_seen.jsonl"
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(text)
        record = cosalign_record(row, mapping, taxonomy, source="c", path=str(path), line=line)
        assert record_label(record.configs[0], record, taxonomy) == int(row["situation"] == "situation 1"), line


def test_shared_recipe_size_and_mix(shared_data, tmp_path):
    out = tmp_path / "shared"
    m = run_recipe("shared", out)
    check_balanced_pairs_and_splits(out, m)
    train = m["examples"]["train"]
    assert 3000 <= train["count"] <= 6000 and m["pairs"]["train"]["count"] <= 4000
    assert set(train["by_source"]) == {"openai_moderation", "cosalign_test"}
    assert set(m["pairs"]["train"]["by_source"]) == {"openai_moderation", "cosalign_test"}
