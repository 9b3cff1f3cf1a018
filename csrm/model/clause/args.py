"""Training configuration of the clause family: :class:`ClauseTrainConfig`, only the fields its trainer reads.

``csrm train CONFIG.yaml`` with ``architecture: clause`` (the default) builds this class through
:mod:`csrm.base.config` (errors name file, line and field). It is not a ``TrainingArguments``: the trainer
(:mod:`csrm.model.clause.trainer`) is a few hundred steps of AdamW on cached features, and offering the 120
``TrainingArguments`` fields it never reads let ``max_steps=2`` run ten epochs without a word. Fields a
Trainer user would reach for but this trainer does not honour are refused by name (:attr:`REFUSED`).

``output_dir`` is the final model folder; ``checkpoint_dir`` (default ``<output_dir>-checkpoints``) holds the
feature cache (one file per data, encoder and setting combination), so a rerun skips the encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from csrm.base.config import above, at_least, setting

REPORT_TO = ("none", "wandb", "all")  # "all" = every integration this trainer has: W&B


def _report_to(value: str | list[str] | None) -> str | None:
    names = value.split(",") if isinstance(value, str) else list(value or [])
    unknown = [n for n in (str(n).strip() for n in names) if n and n not in REPORT_TO]
    return None if not unknown else (f"the clause trainer reports to {', '.join(REPORT_TO)}; not "
                                     f"{', '.join(map(repr, unknown))}")


@dataclass(kw_only=True)  # required fields (dataset_path, output_dir) sit beside their section
class ClauseTrainConfig:
    """Settings of the clause-reading CSRM's trainer (module doc). Defaults of the fields shared with the
    cross-encoder's config are the same as there."""

    REFUSED: ClassVar[dict[str, str]] = {
        "max_steps": "the clause trainer counts epochs of its judge stage: use num_train_epochs "
                     "(and reader_steps for the reader)",
        "resume_from_checkpoint": "the clause trainer keeps no checkpoints; a rerun reuses the feature cache in "
                                  "checkpoint_dir, which is most of the work",
        "max_train_minutes": "the clause trainer has no wall-clock budget; lower num_train_epochs or reader_steps",
        "weight_decay": "the clause heads train without weight decay (AdamW weight_decay=0)",
        "bf16": "the frozen encoder runs in float32",
        "deepspeed": "the clause heads have about 20k parameters: nothing for ZeRO to shard",
    }

    architecture: Literal["clause"] = setting("clause", "the model family: clause (this config), cross_encoder or "
                                              "rule")
    # -- model ------------------------------------------------------------------------------------------
    model_name_or_path: str = setting("minilm", "the frozen encoder: a hub id or local path ('minilm' = the "
                                      "bundled all-MiniLM-L6-v2)")
    backbone_config: dict | None = setting(None, "build a randomly initialised encoder from this config dict "
                                           "(model_type plus sizes) instead of loading weights; tests")
    tokenizer_name_or_path: str | None = setting(None, "tokenizer; default model_name_or_path ('minilm' with "
                                                 "backbone_config)")
    max_length: int = setting(512, "token budget of one clause or content window (at most 512 are used)",
                              check=at_least(8))
    reader_dim: int = setting(32, "width of the config reader's MLP", check=at_least(1))
    reader_steps: int = setting(400, "optimisation steps of the config reader on the structured allow maps "
                                "(0 = none)", check=at_least(0))
    reader_learning_rate: float = setting(1e-2, "the reader's learning rate", check=above(0))
    reader_batch_size: int = setting(256, "configs per reader step", check=at_least(1))
    distractor_rules: str | None = setting(
        None, "JSONL of rule lists ('rules' or 'text' per line; '{data_dir}' = the shared data folder) whose "
              "clauses are appended at random to configs while the reader trains, so that long policies full of "
              "unrelated rules do not read as permissions; null = none")
    max_distractors: int = setting(64, "at most this many distractor clauses appended per reader batch",
                                   check=at_least(0))
    pseudo_label_prompts: str | None = setting(
        None, "unlabelled prompts (a JSON list of strings, or JSONL with 'prompt' or 'text'; '{data_dir}' = the "
              "shared data folder) labelled by the zero-shot category similarity and used as category targets "
              "for the matcher's residual; null = none")
    max_pseudo_prompts: int = setting(6000, "at most this many pseudo-labelled prompts (a seeded sample)",
                                      check=at_least(0))
    pseudo_weight: float = setting(1.0, "weight of the pseudo-label loss", check=at_least(0))
    pseudo_margin: float = setting(0.03, "keep a pseudo label only when its category's cosine similarity beats "
                                   "the runner-up's by more than this")
    aux_weight: float = setting(1.0, "weight of the content-level targets (categories, severity, refusal) beside "
                                "the compliance BCE and the pair loss", check=at_least(0))
    # -- data -------------------------------------------------------------------------------------------
    dataset_path: str = setting(help="folder written by 'csrm augment' (examples/ and pairs/ DatasetDicts)")
    train_split: str = setting("train", "split to train on")
    eval_split: str | None = setting("validation", "split evaluated after training (F1/AUROC/ECE/pair "
                                     "accuracy); null = none")
    blind_config: bool = setting(False, "blank every config text (the config-blind baseline); recorded in the "
                                 "saved model's config")
    max_train_examples: int | None = setting(None, "use at most this many training examples", check=at_least(1))
    max_train_pairs: int | None = setting(None, "use at most this many training pairs", check=at_least(1))
    # -- objective (csrm.model.objective) ---------------------------------------------------------------
    per_device_train_batch_size: int = setting(16, "examples per judge step (per process)", check=at_least(1))
    pairs_per_batch: int = setting(8, "preference pairs per judge step (per process)", check=at_least(1))
    compliance_weight: float = setting(1.0, "w_c: weight of the compliance BCE", check=at_least(0))
    reward_weight: float = setting(1.0, "w_r: weight of the Bradley-Terry pair loss", check=at_least(0))
    margin_scale: float = setting(0.1, "m in -log sigmoid(r_chosen - r_rejected - m * margin); 0 = plain BT")
    center_rewards_coefficient: float | None = setting(None, "lambda of the reward-centering term "
                                                       "lambda * mean((r_c + r_r)^2); null = off")
    learning_rate: float = setting(3e-5, "the judge heads' AdamW learning rate", check=above(0))
    num_train_epochs: int = setting(3, "epochs of the judge stage over the training examples", check=at_least(1))
    seed: int = setting(42, "seed of every random choice (sampling, initialisation, shuffles)", check=at_least(0))
    # -- run --------------------------------------------------------------------------------------------
    output_dir: str = setting(help="final model folder (written atomically at the end)")
    overwrite: bool = setting(False, "write into a non-empty output_dir that is not an earlier csrm train output "
                              "(only the files training writes are replaced; everything else in it is kept)")
    checkpoint_dir: str | None = setting(None, "where the feature cache goes; default '<output_dir>-checkpoints'")
    use_cpu: bool = setting(False, "run on the CPU even when a GPU is present")
    logging_steps: int = setting(50, "log the losses every this many optimisation steps (reader and judge steps "
                                 "counted together, as train/global_step; the last step of each epoch and stage "
                                 "is always logged)", check=at_least(1))
    report_to: str | list[str] = setting("none", "'wandb' (or 'all') logs the losses, validation metrics and "
                                         "timings to Weights & Biases (WANDB_PROJECT, default csrm; "
                                         "WANDB_MODE=offline writes locally); 'none' = train_results.json only",
                                         check=_report_to)
    run_name: str | None = setting(None, "the W&B run name (default: the output folder's name)")
    disable_tqdm: bool = setting(False, "hide the progress bars (encoding, reader, judge heads)")

    def __post_init__(self) -> None:
        if self.checkpoint_dir is None:
            self.checkpoint_dir = str(Path(self.output_dir).expanduser()) + "-checkpoints"
