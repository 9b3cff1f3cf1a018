"""Hostile-but-fair file handling (issue 30): no user data deleted by a writer, output folders never inside
their inputs, symlinked outputs written through, readable file modes, no pickle in caches, numeric fields
bounded before anything loads, ``csrm score`` never overwriting its input and resuming byte-identically.

Tiny models only: a 1-layer BERT (hidden 32) clause CSRM trained for a few steps on the bundled seed corpus,
the 2-layer cross-encoder of ``configs/train/tiny_test.yaml`` for 2 steps, and the tiny scoring encoders of
``tests/scoring_fixtures.py``. Each test fails on the code before this change (the commit that added it says
how)."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from scoring_fixtures import CONFIGS, PROMPTS, RESPONSES, save, tiny_encoder

import augmentation
from csrm.app.cli import main as csrm_main
from csrm.base.io import atomic_path

ROOT = Path(__file__).resolve().parents[1]
CLAUSE_YAML = ROOT / "configs" / "train" / "clause_minilm.yaml"
TINY_YAML = ROOT / "configs" / "train" / "tiny_test.yaml"
SEED_RECIPE = ROOT / "configs" / "augment" / "seed.yaml"
OUTPUT_MARKER = ".csrm-output.json"  # csrm.base.io.OUTPUT_MARKER, spelled out so this file imports on older code
TINY_CLAUSE = ["backbone_config={model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
               "intermediate_size: 64}", "reader_steps=3", "reader_batch_size=32", "num_train_epochs=1",
               "max_train_examples=48", "distractor_rules=", "pseudo_label_prompts=", "eval_split="]


@pytest.fixture(scope="module")
def seed_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("io_seed") / "augment"
    augmentation.run(augmentation.load_recipe(SEED_RECIPE, ["progress=false"]), output_dir=out)
    return out


@pytest.fixture(autouse=True)
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def train(data: Path, output: Path, *extra: str, checkpoints: Path | None = None) -> int:
    return csrm_main(["train", str(CLAUSE_YAML), f"dataset_path={data}", f"output_dir={output}",
                      f"checkpoint_dir={checkpoints or output.parent / 'ck'}", *TINY_CLAUSE, *extra])


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/" for p in sorted(folder.rglob("*"))}


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def clause_model(seed_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("io_clause") / "model"
    assert train(seed_data, out) == 0
    return out


# -- (1) writers: foreign folders, inputs, symlinks, modes ------------------------------------------------------
def test_train_refuses_a_foreign_folder_keeps_user_files_and_writes_readable_files(seed_data, tmp_path, capsys):
    out = tmp_path / "v"
    (out / "sub").mkdir(parents=True)
    (out / "n.txt").write_text("mine")
    (out / "sub" / "deep.txt").write_text("mine too")
    before = listing(out)

    assert train(seed_data, out) == 2  # not an earlier csrm train output: refused, nothing touched
    err = capsys.readouterr().err
    assert "field 'output_dir'" in err and "--overwrite" in err
    assert listing(out) == before

    assert train(seed_data, out, "--overwrite") == 0
    assert (out / "n.txt").read_text() == "mine" and (out / "sub" / "deep.txt").read_text() == "mine too"
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert marker["command"] == "train" and "model.safetensors" in marker["files"] and "n.txt" not in marker["files"]
    # every file readable by another user (umask 022), the weights included (safetensors writes 0600)
    assert set(modes(out).values()) == {0o644}, modes(out)

    # a rerun into its own earlier output needs no flag, and still keeps the user's files
    (out / "stale_own.txt").write_text("x")
    assert train(seed_data, out) == 0
    assert (out / "n.txt").read_text() == "mine" and (out / "stale_own.txt").exists()  # not ours: kept
    assert set(modes(out).values()) == {0o644}


def test_train_never_writes_into_or_around_its_input(seed_data, tmp_path, capsys):
    before = listing(seed_data)
    for output in (seed_data, seed_data / "model", seed_data.parent):
        assert train(seed_data, output, "--overwrite") == 2, output  # even with --overwrite
        assert "dataset_path" in capsys.readouterr().err
    assert listing(seed_data) == before


def test_a_symlinked_output_folder_is_written_through(seed_data, clause_model, tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    assert train(seed_data, link) == 0
    assert link.is_symlink() and (target / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".link*")) and not list(tmp_path.glob(".real.*"))
    results = json.loads((target / "train_results.json").read_text())
    assert Path(results["output_dir"]) == target.resolve()


def test_cross_encoder_final_model_keeps_user_files_and_modes(seed_data, tmp_path):
    out = tmp_path / "ce"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    args = ["train", str(TINY_YAML), f"dataset_path={seed_data}", f"output_dir={out}", "max_steps=2",
            "eval_strategy=no", "save_strategy=no", "max_train_examples=32", "max_train_pairs=16"]
    assert csrm_main(args) == 2
    assert csrm_main([*args, "--overwrite"]) == 0
    assert (out / "notes.md").read_text() == "mine" and (out / "model.safetensors").is_file()
    assert set(modes(out).values()) == {0o644}, modes(out)


def test_a_rerun_replacing_a_folder_keeps_files_it_did_not_write(tmp_path):
    """``csrm run``'s evaluation rerun puts ``eval/csrm/`` in place with :func:`atomic_path`; a user's file in
    it survives, and a file the earlier run wrote but this one does not is gone."""
    target = tmp_path / "eval" / "csrm"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "report.json").write_text("1")
        (tmp / "f1_by_config_old.png").write_text("old plot")
    (target / "my_analysis.ipynb").write_text("mine")
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "report.json").write_text("2")
    assert (target / "my_analysis.ipynb").read_text() == "mine"
    assert (target / "report.json").read_text() == "2" and not (target / "f1_by_config_old.png").exists()
    assert not list(target.parent.glob(".csrm.*"))


def test_export_reruns_into_its_own_output_and_refuses_inputs_and_foreign_folders(clause_model, tmp_path, capsys):
    out = tmp_path / "exported"
    export = ["export", str(clause_model), str(out), "--no-verify"]
    assert csrm_main(export) == 0
    (out / "mine.txt").write_text("mine")
    assert csrm_main(export) == 0  # an earlier csrm export output: rewritten, the user's file kept
    assert (out / "mine.txt").read_text() == "mine"
    before = listing(clause_model)
    assert csrm_main(["export", str(clause_model), str(clause_model / "exported"), "--no-verify"]) == 2
    assert "input model" in capsys.readouterr().err
    assert listing(clause_model) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("x")
    assert csrm_main(["export", str(clause_model), str(foreign), "--no-verify"]) == 2
    assert csrm_main(["export", str(clause_model), str(foreign), "--no-verify", "--overwrite"]) == 0
    assert (foreign / "x.txt").read_text() == "x" and (foreign / "config.json").is_file()


def test_augment_refuses_a_foreign_folder_and_a_folder_holding_its_source(tmp_path, capsys):
    out = tmp_path / "aug"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    augment = ["augment", str(SEED_RECIPE), f"output_dir={out}", "progress=false"]
    assert csrm_main(augment) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert csrm_main([*augment, "--overwrite"]) == 0
    assert (out / "keep.txt").read_text() == "mine" and (out / "manifest.json").is_file()
    assert csrm_main(augment) == 0  # its own earlier output
    source = tmp_path / "mine" / "rows.jsonl"
    source.parent.mkdir()
    source.write_text(json.dumps({"prompt": "hi", "response": "hello", "categories": []}) + "\n")
    recipe = ["augment", str(SEED_RECIPE), f"output_dir={source.parent}", f"sources.0.path={source}",
              "sources.0.type=jsonl", "--overwrite"]
    assert csrm_main(recipe) == 2
    assert "holds the input" in capsys.readouterr().err
    assert source.exists() and len(list(source.parent.iterdir())) == 1


def test_calibrate_never_writes_into_its_dataset(clause_model, seed_data, capsys):
    before = listing(seed_data)
    assert csrm_main(["calibrate", str(clause_model), f"dataset_path={seed_data}", f"output_dir={seed_data}",
                      "max_examples=16", "--no-progress", "--dry-run"]) == 2
    assert "dataset_path" in capsys.readouterr().err
    assert listing(seed_data) == before


# -- (2) caches are never unpickled -----------------------------------------------------------------------------
class Planted:
    def __init__(self, proof: Path):
        self.proof = proof

    def __reduce__(self):
        return os.system, (f"touch {self.proof}",)


def test_a_planted_pickle_in_the_feature_cache_is_refused(seed_data, tmp_path, capsys):
    ck = tmp_path / "ck"
    assert train(seed_data, tmp_path / "m", checkpoints=ck) == 0
    (cache,) = ck.glob("features-*.pt")
    proof = tmp_path / "pwned"
    cache.write_bytes(pickle.dumps({"train": Planted(proof)}))
    assert train(seed_data, tmp_path / "m", checkpoints=ck) == 2
    err = capsys.readouterr().err
    assert "refused to load this cache" in err and str(cache) in err
    assert not proof.exists() and cache.exists()


# -- (3) numeric fields bounded before anything loads, --print-config included ----------------------------------
@pytest.mark.parametrize("recipe", [CLAUSE_YAML, TINY_YAML], ids=["clause", "cross_encoder"])
@pytest.mark.parametrize("override", ["per_device_train_batch_size=0", "learning_rate=-1", "reader_batch_size=0",
                                      "gradient_accumulation_steps=0", "seed=-1", "head_dropout=1.5",
                                      "per_device_eval_batch_size=0", "max_train_examples=0"])
def test_out_of_range_fields_are_field_errors_also_under_print_config(recipe, override, tmp_path, capsys):
    field = override.split("=")[0]
    for extra in (["--print-config"], []):
        argv = ["train", str(recipe), f"dataset_path={tmp_path / 'none'}", f"output_dir={tmp_path / 'o'}",
                override, *extra]
        assert csrm_main(argv) == 2, (override, extra)
        assert f"field '{field}'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- (4) csrm score: input = output refused, resume byte-identical ------------------------------------------------
def score_input(path: Path, n: int) -> None:
    rows = [{"id": f"i{i}", "config": CONFIGS[i % 3], "prompt": PROMPTS[i % 3] + " more" * (i % 11),
             "response": RESPONSES[i % 5] and RESPONSES[i % 5] + " and so on" * (i % 7)} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    return save(*tiny_encoder(seed=0), tmp_path_factory.mktemp("io_enc") / "model")


def test_score_refuses_to_write_over_its_input(encoder_dir, tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    score_input(inp, 6)
    before = inp.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(inp)
    for output in (inp, link):
        assert csrm_main(["score", str(encoder_dir), "--input", str(inp), "--output", str(output),
                          "--no-progress"]) == 2
        assert "field 'output'" in capsys.readouterr().err
    assert inp.read_bytes() == before


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def minilm_clause_model(seed_data, tmp_path_factory) -> Path:
    """A clause CSRM over the real MiniLM encoder (the shipped design): with it, a text's features change in
    the last bits with the batch it is encoded in, which the tiny random BERT does not show."""
    out = tmp_path_factory.mktemp("io_minilm") / "model"
    assert train(seed_data, out, "backbone_config=null", "model_name_or_path=minilm") == 0
    return out


@pytest.mark.parametrize("kind", ["cross_encoder", "clause"])
def test_a_resumed_score_is_byte_identical_to_an_uninterrupted_one(kind, encoder_dir, minilm_clause_model,
                                                                    tmp_path):
    """A resumed run rescoring only the unfinished items in new batches (and, for the clause design, with
    a cold feature cache) differed from the uninterrupted one in the last bits (60 of 3,000 rows)."""
    from csrm.scoring.score_file import score_file
    from csrm.scoring.scorer import load

    model = encoder_dir if kind == "cross_encoder" else minilm_clause_model
    inp, clean, out = tmp_path / "in.jsonl", tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
    score_input(inp, 150)
    score_file(load(model, device="cpu", max_tokens=256), inp, clean, progress=False, chunk_items=40)

    scorer = load(model, device="cpu", max_tokens=256)
    original = scorer.iter_batches
    flushed = []

    def stop_midway(items, thresholds=None):
        for batch in original(items, thresholds):
            yield batch
            flushed.append(len(batch[0]))
            if sum(flushed) >= 55:  # past the first block, inside the second
                raise Interrupted

    scorer.iter_batches = stop_midway
    with pytest.raises(Interrupted):
        score_file(scorer, inp, out, progress=False, chunk_items=40)
    partial = out.with_name("out.jsonl.partial")
    assert 40 < len(partial.read_text().splitlines()) < 150
    counts = score_file(load(model, device="cpu", max_tokens=256), inp, out, progress=False, chunk_items=40)
    assert counts["resumed"] > 40
    assert out.read_bytes() == clean.read_bytes()
