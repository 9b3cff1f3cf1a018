"""Training: objective, batching, config checks, and end-to-end runs of a tiny backbone (learning, saving,
resuming, stopping on NaN, wandb) on a synthetic set whose label depends on config x content."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.train.synthetic import write_dataset
from safetensors.torch import load_file
from transformers import TrainerCallback

from csrm.app import cli
from csrm.base.errors import InputError
from csrm.base.metrics import classification_metrics
from csrm.base.paths import CONFIGS_DIR, default_backbone
from csrm.model.cross_encoder.args import CrossEncoderTrainConfig
from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer
from csrm.model.cross_encoder.trainer import CSRMTrainer, NonFiniteLossError
from csrm.model.data import (
    MixedBatchSampler,
    MixedCollator,
    MixedDataset,
    TokenizedSplit,
    load_augmented,
    tokenize_examples,
    tokenize_pairs,
)
from csrm.model.formatting import InputFormatter
from csrm.model.objective import csrm_loss
from csrm.training.calibration import compliance_logits
from csrm.training.train import load_train_config, run_training

TINY = CONFIGS_DIR / "train" / "tiny_test.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(default_backbone(), decoder=False)


def tiny_config(tmp: Path, dataset: Path, **values) -> CrossEncoderTrainConfig:
    config, _ = load_train_config(TINY, [], dataset_path=str(dataset), output_dir=str(tmp / "model"), **values)
    return config


# -- objective ----------------------------------------------------------------------------------------------
def test_objective_matches_its_formula():
    z, y = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.0])
    rc, rr, m = torch.tensor([1.0, 0.2]), torch.tensor([-1.0, 0.4]), torch.tensor([1.0, 3.0])
    parts = csrm_loss(z, y, rc, rr, m, compliance_weight=0.7, reward_weight=2.0, margin_scale=0.5,
                      center_rewards_coefficient=0.1)
    p = 1 / (1 + np.exp(-z.numpy()))
    bce = -np.mean(y.numpy() * np.log(p) + (1 - y.numpy()) * np.log(1 - p))
    gap = (rc - rr - 0.5 * m).numpy()
    bt = np.mean(np.log1p(np.exp(-gap)))
    center = np.mean(((rc + rr) ** 2).numpy())
    assert parts.bce.item() == pytest.approx(bce, rel=1e-5)
    assert parts.bradley_terry.item() == pytest.approx(bt, rel=1e-5)
    assert parts.loss.item() == pytest.approx(0.7 * bce + 2.0 * bt + 0.1 * center, rel=1e-5)
    assert parts.pair_accuracy.item() == 0.5


def test_objective_margin_weights_and_empty_parts():
    rc, rr, m = torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([2.0])
    empty = torch.zeros(0)
    plain = csrm_loss(empty, empty, rc, rr, m, margin_scale=0.0)
    wider = csrm_loss(empty, empty, rc, rr, m, margin_scale=1.0)
    assert wider.loss > plain.loss  # a margin asks for a wider reward gap
    assert plain.bce.item() == 0.0 and plain.loss.item() == pytest.approx(math.log1p(math.exp(-1.0)))
    only_bce = csrm_loss(torch.tensor([0.0]), torch.tensor([1.0]), empty, empty, empty)
    assert only_bce.loss.item() == pytest.approx(math.log(2)) and only_bce.bradley_terry.item() == 0.0
    off = csrm_loss(torch.tensor([0.0]), torch.tensor([1.0]), rc, rr, m, compliance_weight=0.0, reward_weight=0.0)
    assert off.loss.item() == 0.0


def test_objective_gradients_reach_both_heads_inputs():
    z = torch.tensor([0.3, -0.2], requires_grad=True)
    r = torch.tensor([0.1, 0.4, -0.3, 0.2], requires_grad=True)
    parts = csrm_loss(z, torch.tensor([1.0, 0.0]), r[:2], r[2:], torch.tensor([1.0, 1.0]), margin_scale=0.1)
    parts.loss.backward()
    assert z.grad.abs().sum() > 0 and r.grad.abs().sum() > 0
    assert (r.grad[:2] < 0).all() and (r.grad[2:] > 0).all()  # push chosen up, rejected down


# -- data ---------------------------------------------------------------------------------------------------
def sampler(n_ex=50, n_pairs=20, b=8, p=4, **kw) -> MixedBatchSampler:
    rng = np.random.default_rng(0)
    return MixedBatchSampler(rng.integers(5, 200, n_ex).tolist(), rng.integers(5, 200, n_pairs).tolist(), b, p,
                             **kw)


def test_sampler_covers_examples_once_and_cycles_pairs():
    s = sampler(seed=3)
    batches = list(s)
    assert len(batches) == len(s) == 7  # ceil(50 / 8) example batches set the epoch
    examples = [i for b in batches for i in b if i < 50]
    pairs = [i - 50 for b in batches for i in b if i >= 50]
    assert sorted(examples) == list(range(50))  # each example exactly once
    assert set(pairs) == set(range(20)) and len(pairs) == 7 * 4  # pairs cycle through fresh permutations
    for batch in batches:
        assert len(set(batch)) == len(batch)  # nothing twice in one batch


def test_sampler_order_depends_only_on_seed_and_epoch():
    a, b = sampler(seed=1), sampler(seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(sampler(seed=2)) != list(sampler(seed=1))


def test_sampler_length_grouping_reduces_padding_and_puts_longest_first():
    lengths_e = np.random.default_rng(1).integers(5, 500, 400).tolist()
    lengths_p = np.random.default_rng(2).integers(5, 500, 200).tolist()

    def padded_tokens(group: bool) -> tuple[int, list[list[int]]]:
        s = MixedBatchSampler(lengths_e, lengths_p, 16, 8, seed=0, group_by_length=group, mega_batch_mult=8)
        batches = list(s)
        total = 0
        for batch in batches:
            lens = [lengths_e[i] if i < 400 else lengths_p[i - 400] for i in batch]
            total += max(lens) * len(lens)
        return total, batches

    grouped, batches = padded_tokens(True)
    ungrouped, _ = padded_tokens(False)
    assert grouped < 0.75 * ungrouped
    assert max(lengths_e) in [lengths_e[i] for i in batches[0] if i < 400] or \
        max(lengths_p) in [lengths_p[i - 400] for i in batches[0] if i >= 400]


def test_sampler_streams_can_be_switched_off():
    s = MixedBatchSampler([3, 4, 5], [6, 7], 0, 2, seed=0)
    assert all(i >= 3 for b in s for i in b) and len(s) == 1
    with pytest.raises(ValueError, match="at least one"):
        MixedBatchSampler([], [], 4, 4)


def test_collator_layout(tokenizer):
    fmt = InputFormatter(tokenizer, max_length=64)
    msgs = [{"role": "user", "content": "hi"}]
    ex = TokenizedSplit(tokenize_examples_from_rows(fmt, [("allow x", msgs, "ok", 1), ("forbid x", msgs, None, 0)]),
                        tokenize_pairs_from_rows(fmt, [("forbid x", msgs, "No.", "Sure, x.", 3.0)]))
    ds = MixedDataset(ex)
    assert len(ds) == 3
    batch = MixedCollator(tokenizer.pad_token_id)([ds[2], ds[0], ds[1]])
    assert batch["num_examples"] == 2 and batch["num_pairs"] == 1
    assert batch["input_ids"].shape[0] == 4  # 2 examples, 1 chosen, 1 rejected
    assert batch["compliance_labels"].tolist() == [1.0, 0.0] and batch["margins"].tolist() == [3.0]
    assert batch["example_index"].tolist() == [0, 1] and batch["pair_index"].tolist() == [0]
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths == [len(ex.examples.input_ids[0]), len(ex.examples.input_ids[1]),
                       len(ex.pairs.chosen_ids[0]), len(ex.pairs.rejected_ids[0])]
    assert batch["input_ids"].shape[1] == max(lengths)  # dynamic padding to the longest row
    left = MixedCollator(tokenizer.pad_token_id, "left")([ds[0], ds[1]])
    assert left["attention_mask"][:, -1].tolist() == [1, 1]


def tokenize_examples_from_rows(fmt, rows):
    from datasets import Dataset

    return tokenize_examples(Dataset.from_list([{"config_text": c, "messages": m, "response": r, "label": y}
                                                for c, m, r, y in rows]), fmt)


def tokenize_pairs_from_rows(fmt, rows):
    from datasets import Dataset

    return tokenize_pairs(Dataset.from_list([{"config_text": c, "messages": m, "chosen": a, "rejected": b,
                                              "margin": g} for c, m, a, b, g in rows]), fmt)


def test_blind_config_blanks_the_config(tokenizer, dataset):
    fmt = InputFormatter(tokenizer, max_length=64)
    msgs = [{"role": "user", "content": "Tell me about weapons."}]
    rows = [("Never discuss weapons.", msgs, None, 0), ("You may discuss weapons freely.", msgs, None, 1)]
    seen = tokenize_examples_from_rows(fmt, rows)
    assert seen.input_ids[0] != seen.input_ids[1]
    from datasets import Dataset

    blind = tokenize_examples(Dataset.from_list([{"config_text": c, "messages": m, "response": r, "label": y}
                                                 for c, m, r, y in rows]), fmt, blind_config=True)
    assert blind.input_ids[0] == blind.input_ids[1]
    assert blind.input_ids[0] == fmt.encode("", msgs, None).input_ids


def test_load_augmented_names_what_is_missing(tmp_path, dataset):
    with pytest.raises(InputError, match="no 'examples' dataset folder"):
        load_augmented(tmp_path, ["train"])
    with pytest.raises(InputError, match="split 'test'"):
        load_augmented(dataset, ["test"])
    data = load_augmented(dataset, ["train", "validation"])
    assert len(data["examples"]["train"]) == 400 and len(data["pairs"]["validation"]) == 120


# -- config -------------------------------------------------------------------------------------------------
def test_unknown_key_fails_before_any_work(tmp_path, capsys):
    out = tmp_path / "model"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"architecture: cross_encoder\ndataset_path: {tmp_path / 'nowhere'}\noutput_dir: {out}\n"
                   "learning_rat: 0.1\n")
    assert cli.main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: field 'learning_rat': unknown key 'learning_rat' (did you mean 'learning_rate'?)" in err
    assert not out.exists() and not Path(f"{out}-checkpoints").exists()


def test_wrong_types_are_named(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(f"architecture: cross_encoder\ndataset_path: {tmp_path}\noutput_dir: {tmp_path / 'model'}\n")
    assert cli.main(["train", str(good), "num_train_epochs=many"]) == 2
    assert "field 'num_train_epochs': expected a number" in capsys.readouterr().err
    assert cli.main(["train", str(good), "blind_config=maybe"]) == 2
    assert "field 'blind_config': expected true/false" in capsys.readouterr().err
    assert cli.main(["train", str(good), "template=fancy"]) == 2
    assert "field 'template': expected one of plain, chat, got 'fancy'" in capsys.readouterr().err
    assert cli.main(["train", str(good), "eval_strategy=sometimes"]) == 2
    assert "field 'eval_strategy': expected one of no, steps, epoch" in capsys.readouterr().err
    assert cli.main(["train", str(good), "architecture=transformer"]) == 2
    assert "field 'architecture': expected one of clause, cross_encoder" in capsys.readouterr().err
    with pytest.raises(InputError, match="field 'dataset_path': missing"):
        load_train_config(None, ["architecture=cross_encoder", f"output_dir={tmp_path / 'model'}"])


def test_yaml_values_are_read_leniently_where_yaml_is_odd(tmp_path):
    config, raw = load_train_config(None, ["architecture=cross_encoder", f"output_dir={tmp_path / 'm'}",
                                           f"dataset_path={tmp_path}", "learning_rate=1e-4", "eval_strategy=no",
                                           "report_to=none"])
    assert config.learning_rate == 1e-4 and raw["eval_strategy"] == "no"  # YAML reads 1e-4 as text, `no` as false
    assert raw["learning_rate"] == 1e-4  # the mapping a run records holds the checked values
    assert config.checkpoint_dir == f"{tmp_path / 'm'}-checkpoints" and config.remove_unused_columns is False
    args = config.trainer_arguments()
    assert args.output_dir == config.checkpoint_dir


def test_the_clause_config_offers_only_what_its_trainer_reads(tmp_path):
    """The default family (clause) refuses Trainer fields it would ignore, by name, and checks its bounds."""
    base = [f"output_dir={tmp_path / 'm'}", f"dataset_path={tmp_path}"]
    config, raw = load_train_config(None, base)
    assert config.architecture == "clause" and "architecture" not in raw  # the default family
    assert config.checkpoint_dir == f"{tmp_path / 'm'}-checkpoints"
    for key, why in (("max_steps=2", "use num_train_epochs"), ("resume_from_checkpoint=auto", "no checkpoints"),
                     ("max_train_minutes=5", "no wall-clock budget"), ("weight_decay=0.1", "weight decay"),
                     ("report_to=wandb", "train_results.json")):
        with pytest.raises(InputError, match=f"field '{key.split('=')[0]}': not supported here: .*{why}"):
            load_train_config(None, [*base, key])
    with pytest.raises(InputError, match="field 'reader_steps': must be >= 0, got -3"):
        load_train_config(None, [*base, "reader_steps=-3"])
    with pytest.raises(InputError, match="field 'num_train_epochs': expected an integer"):
        load_train_config(None, [*base, "num_train_epochs=2.5"])
    with pytest.raises(InputError, match="unknown key 'reader_stepz' \\(did you mean 'reader_steps'"):
        load_train_config(None, [*base, "reader_stepz=3"])


def test_shipped_configs_are_valid():
    """Every shipped training config builds its family's config (keys, types and bounds checked)."""
    for path in sorted((CONFIGS_DIR / "train").glob("*.yaml")):
        kwargs, data = load_train_config(path, instantiate=False)
        assert "dataset_path" in data and "output_dir" in data, path
        if "deepspeed" in data:
            assert (CONFIGS_DIR.parent / data["deepspeed"]).is_file()
    for path in (CONFIGS_DIR / "deepspeed").glob("*.json"):
        json.loads(path.read_text())


# -- end to end ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset):
    tmp = tmp_path_factory.mktemp("run")
    config, raw = load_train_config(TINY, [], dataset_path=str(dataset), output_dir=str(tmp / "model"),
                                    eval_on_start=True)
    return run_training(config, raw_config=raw), config


@pytest.mark.slow
def test_training_lowers_the_loss_and_separates_the_synthetic_set(trained):
    summary, config = trained
    state = json.loads((Path(config.checkpoint_dir) / "checkpoint-300" / "trainer_state.json").read_text())
    evals = [h for h in state["log_history"] if "eval_loss" in h]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 300
    assert evals[-1]["eval_loss"] < 0.5 * evals[0]["eval_loss"]
    final = summary["eval"]
    assert final["eval_accuracy"] > 0.9  # a config-blind model cannot exceed 0.75 + noise here
    assert final["eval_f1"] > 0.8 and final["eval_auroc"] > 0.95  # violation is the positive class
    assert final["eval_pair_accuracy"] > 0.9
    assert summary["examples_seen"] == 300 * 16 and summary["pairs_seen"] == 300 * 8
    assert summary["items_per_second"] > 0 and summary["peak_rss_mib"] > 0


@pytest.mark.slow
def test_saved_model_loads_and_scores_like_the_trainer(trained, dataset):
    summary, config = trained
    out = Path(config.output_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_config.yaml",
            "train_results.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "training_args.bin").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no partial folder left
    model = CSRMModel.from_pretrained(out)
    tok = load_tokenizer(out, decoder=False)
    split = load_augmented(dataset, ["validation"])["examples"]["validation"]
    feats = tokenize_examples(split, model.make_formatter(tok))
    logits = compliance_logits(model, feats.input_ids, pad_token_id=tok.pad_token_id)
    labels = np.array(feats.labels)
    metrics = classification_metrics(1 - labels, 1 / (1 + np.exp(logits)))
    for key in ("accuracy", "f1", "auroc", "ece", "brier"):
        assert metrics[key] == pytest.approx(summary["eval"][f"eval_{key}"], abs=1e-6)
    checkpoints = sorted(p.name for p in Path(config.checkpoint_dir).iterdir())
    # save_total_limit 2, no staging left; tokenized/ is the tokenization cache (csrm.model.token_cache)
    assert checkpoints == ["checkpoint-150", "checkpoint-300", "tokenized"]


COMPUTE_LOSS = CSRMTrainer.compute_loss


class Killed(Exception):
    """Stands in for the process dying mid-run."""


def recorder(monkeypatch, log: list, stop_at: int | None = None) -> None:
    """Record each training micro-batch's items; raise (like a kill) when step ``stop_at`` starts."""
    original = COMPUTE_LOSS

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            step = self.state.global_step + 1
            if step == stop_at:
                raise Killed(f"killed at step {step}")
            log.append((step, inputs["example_index"].tolist(), inputs["pair_index"].tolist()))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(CSRMTrainer, "compute_loss", compute_loss)


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint_with_the_same_data_order(tmp_path, dataset, monkeypatch):
    # 3 batches per epoch, checkpoint at step 4 (inside epoch 2), 8 steps: resume skips into an epoch and
    # crosses an epoch boundary afterwards
    values = dict(max_steps=8, save_steps=4, eval_strategy="no", max_train_examples=48, max_train_pairs=24,
                  head_dropout=0.1, learning_rate=1e-3)
    full_log: list = []
    recorder(monkeypatch, full_log)
    run_training(tiny_config(tmp_path / "a", dataset, **values))
    reference = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))

    killed_log: list = []
    recorder(monkeypatch, killed_log, stop_at=6)
    with pytest.raises(Killed):
        run_training(tiny_config(tmp_path / "b", dataset, **values))
    ckpt_dir = tmp_path / "b" / "model-checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir() if p.name != "tokenized") == ["checkpoint-4"]
    assert not (tmp_path / "b" / "model").exists()

    resumed_log: list = []
    recorder(monkeypatch, resumed_log)
    summary = run_training(tiny_config(tmp_path / "b", dataset, resume_from_checkpoint=True, **values))
    assert summary["resumed_from"].endswith("checkpoint-4") and summary["global_step"] == 8
    assert [s for s, *_ in resumed_log] == [5, 6, 7, 8]
    assert resumed_log == full_log[4:]  # the same items in the same batches
    assert killed_log == full_log[:5]
    weights = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    for name, tensor in reference.items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-6, rtol=1e-5)


class Poison(TrainerCallback):
    """After step 3, make the compliance head NaN (kind 'loss') or its gradients NaN (kind 'gradient')."""

    def __init__(self, kind: str):
        self.kind = kind

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != 3:
            return
        head = model.compliance_head.weight
        if self.kind == "loss":
            with torch.no_grad():
                head.fill_(float("nan"))
        else:
            head.register_hook(lambda grad: grad * float("nan"))


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, dataset, kind):
    config = tiny_config(tmp_path, dataset, max_steps=10, save_steps=2, eval_strategy="no")
    with pytest.raises(NonFiniteLossError) as info:
        run_training(config, callbacks=[Poison(kind)])
    message = str(info.value)
    what = "loss" if kind == "loss" else "gradient norm"
    assert f"the {what} became nan at step 4" in message
    ckpt_dir = Path(config.checkpoint_dir)
    assert str(ckpt_dir / "checkpoint-2") in message and "resume_from_checkpoint" in message
    assert sorted(p.name for p in ckpt_dir.iterdir() if p.name != "tokenized") == ["checkpoint-2"]  # no half-write
    weights = load_file(str(ckpt_dir / "checkpoint-2" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert not Path(config.output_dir).exists()


def test_cli_exit_code_for_a_diverged_run(tmp_path, monkeypatch, capsys, dataset):
    import csrm.training.train as train_module

    def diverge(*args, **kwargs):
        raise NonFiniteLossError("training stopped: the loss became nan at step 4")

    monkeypatch.setattr(train_module, "run_training", diverge)
    assert cli.main(["train", str(TINY), f"dataset_path={dataset}", f"output_dir={tmp_path / 'm'}"]) == 3
    assert "the loss became nan at step 4" in capsys.readouterr().err


@pytest.mark.slow
def test_wandb_offline_run_writes_its_files(tmp_path, dataset, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_PROJECT"):  # unset here, restored afterwards (run_training sets defaults)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    config = tiny_config(tmp_path, dataset, max_steps=4, logging_steps=2, eval_steps=4, save_strategy="no",
                         report_to="wandb", blind_config=True)
    summary = run_training(config)
    runs = list((Path(config.checkpoint_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and summary["wandb_run_dir"] == str(runs[0])
    events = list(runs[0].glob("run-*.wandb"))
    assert events and events[0].stat().st_size > 0
    assert os.environ["WANDB_PROJECT"] == "csrm" and os.environ["WANDB_DIR"] == config.checkpoint_dir
    saved = json.loads((Path(config.output_dir) / "config.json").read_text())
    assert saved["blind_config"] is True  # the config-blind baseline is marked on the model


@pytest.mark.slow
def test_time_budget_stops_the_run_and_still_saves(tmp_path, dataset):
    config = tiny_config(tmp_path, dataset, max_steps=100_000, max_train_minutes=0.02, eval_strategy="no",
                         save_steps=100_000)
    summary = run_training(config)
    assert 0 < summary["global_step"] < 100_000
    assert (Path(config.checkpoint_dir) / f"checkpoint-{summary['global_step']}").is_dir()  # resumable
    assert CSRMModel.from_pretrained(config.output_dir) is not None


def test_trainer_overrides_only_public_hooks():
    """Resume and checkpointing must not hang on Trainer internals a release inside the pin may reshape."""
    from transformers import Trainer

    private = sorted(name for name in vars(CSRMTrainer)
                     if name.startswith("_") and not name.startswith("__") and hasattr(Trainer, name))
    assert private == []


def test_csrm_config_exposes_the_backbone_hidden_size_for_deepspeed_auto_values():
    from transformers import BertConfig

    from csrm.model.cross_encoder.modeling import CSRMConfig

    config = CSRMConfig(backbone=BertConfig(hidden_size=48, num_attention_heads=4).to_dict())
    assert config.hidden_size == 48
