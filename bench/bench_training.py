"""Training speed and peak memory: ``csrm train`` vs. ``trl.RewardTrainer`` on the same backbone and data.

    python bench/bench_training.py [--steps 10] [--warmup-steps 2] [--max-length 256] [--repeats 2] [--threads 1]

Data: the bundled seed corpus through the seed augmentation recipe (``configs/augment/seed.yaml``), written to a
temporary folder; every sequence is tokenized by the CSRM formatter (same template, same truncation at
``--max-length``), so both trainers see identical token ids for identical items.

Equal work (the fairest set-up we found; RewardTrainer cannot train a second head):

- ``trl``: ``RewardTrainer`` on ``AutoModelForSequenceClassification(num_labels=1)`` from the same MiniLM
  weights, ``--pairs`` pairs per step (2 x pairs sequences). Its defaults that would make the work differ are
  aligned with csrm's: ``gradient_checkpointing=False`` (TRL's default True recomputes the forward),
  ``bf16=False`` (TRL's default True autocasts; this CPU has no bf16 units), ``disable_dropout=False`` (csrm
  trains with the backbone's dropout); same optimizer (AdamW), lr, schedule, warm-up, weight decay, clipping,
  margin (TRL's ``margin`` column = csrm's ``margin_scale x margin``), seed and no evaluation or checkpoints.
- ``csrm``: ``csrm.training.train.run_training`` (what ``csrm train`` runs) with the shipped batch layout, B = pairs
  examples + pairs/2 pairs, i.e. the *same number of sequences per step*, training the compliance head (BCE) and
  the reward head (Bradley-Terry) together.
- ``csrm-pairs``: csrm with pairs only (B = 0, ``compliance_weight=0``, ``--pairs`` pairs per step): exactly the
  baseline's sequences and objective, i.e. the trainer overhead alone.

Each run is a fresh subprocess; the first ``--warmup-steps`` steps are not timed; speed = sequences (and real,
non-padding tokens) per second over the timed steps; memory = the process's peak RSS (``ru_maxrss``, what a user
sees) and the peak RSS increase during training (sampled). Runs alternate over ``--repeats``; medians reported.
The two runs' sequences differ in length (csrm's length-grouped sampler serves an epoch's longest batches first,
TRL samples at random), so the speed ratio is the *less favourable* of sequences/s and real tokens/s.
Targets: csrm speed >= 1.0x trl's with peak RSS <= 1.1x trl's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SPEED_TARGET, MEMORY_TARGET = 1.0, 1.1
RUNS = ("trl", "csrm", "csrm-pairs")


# -- child side: one training run -------------------------------------------------------------------------
class StepRecorder:
    """Times each optimizer step and counts the real/padded tokens of the batches (wraps compute_loss)."""

    def __init__(self):
        self.step_times: list[float] = []
        self.real_tokens: list[int] = []
        self.padded_tokens: list[int] = []
        self.sequences: list[int] = []
        self._last = None
        self.rss_at_start = 0.0

    def wrap(self, trainer_cls: type):
        """Count tokens in ``trainer_cls.compute_loss``; returns the function that undoes it."""
        original = trainer_cls.compute_loss
        recorder = self

        def compute_loss(self, model, inputs, *args, **kwargs):
            if model.training:
                mask = inputs["attention_mask"]
                recorder.real_tokens.append(int(mask.sum()))
                recorder.padded_tokens.append(int(mask.numel()))
                recorder.sequences.append(int(mask.shape[0]))
            return original(self, model, inputs, *args, **kwargs)

        trainer_cls.compute_loss = compute_loss
        return lambda: setattr(trainer_cls, "compute_loss", original)

    def callback(self):
        from transformers import TrainerCallback

        recorder = self

        class Timer(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                recorder.rss_at_start = common.current_rss_mib()
                recorder._last = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                now = time.perf_counter()
                recorder.step_times.append(now - recorder._last)
                recorder._last = now

        return Timer()

    def summary(self, warmup: int) -> dict[str, Any]:
        times = self.step_times[warmup:]
        seconds = sum(times)
        seqs, real = sum(self.sequences[warmup:]), sum(self.real_tokens[warmup:])
        return {"timed_steps": len(times), "timed_seconds": round(seconds, 3),
                "median_step_seconds": round(statistics.median(times), 3),
                "sequences_per_second": round(seqs / seconds, 2), "real_tokens_per_second": round(real / seconds, 1),
                "padding_fraction": round(1 - real / max(1, sum(self.padded_tokens[warmup:])), 4),
                "sequences_per_step": round(seqs / len(times), 2), "real_tokens_per_step": round(real / len(times), 1)}


def common_training_args(args, out: Path) -> dict[str, Any]:
    return {"output_dir": str(out), "max_steps": args.warmup_steps + args.steps, "learning_rate": 5e-5,
            "lr_scheduler_type": "linear", "warmup_steps": 0.06, "weight_decay": 0.01, "max_grad_norm": 1.0,
            "optim": "adamw_torch", "seed": 0, "logging_steps": 1000, "save_strategy": "no", "eval_strategy": "no",
            "report_to": "none", "use_cpu": True, "bf16": False, "dataloader_num_workers": 0, "disable_tqdm": True}


def run_csrm(args, out: Path, recorder: StepRecorder, *, pairs_only: bool) -> None:
    from csrm.model.cross_encoder.trainer import CSRMTrainer
    from csrm.training.train import load_train_config, run_training

    undo = recorder.wrap(CSRMTrainer)
    values = {"architecture": "cross_encoder", **common_training_args(args, out / "model"),
              "model_name_or_path": args.backbone,
              "max_length": args.max_length, "dataset_path": str(args.dataset), "eval_split": None,
              "margin_scale": 0.1, "center_rewards_coefficient": None, "group_by_length": True}
    if pairs_only:
        # B must be >= 1; with compliance_weight 0 it is unused (no example stream)
        values.update(per_device_train_batch_size=1, pairs_per_batch=args.pairs, compliance_weight=0.0)
    else:
        values.update(per_device_train_batch_size=args.pairs, pairs_per_batch=args.pairs // 2)
    if args.tiny:
        values.update(backbone_config=dict(TINY_BACKBONE), tokenizer_name_or_path="minilm")
    cfg, _ = load_train_config(None, [], **values)
    try:
        run_training(cfg, callbacks=[recorder.callback()])
    finally:
        undo()


TINY_BACKBONE = {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "intermediate_size": 128, "max_position_embeddings": 512}


def run_trl(args, out: Path, recorder: StepRecorder) -> None:
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from csrm.base.paths import resolve_model_name
    from csrm.model.cross_encoder.modeling import load_tokenizer
    from csrm.model.data import load_augmented

    undo = recorder.wrap(RewardTrainer)
    path = resolve_model_name(args.backbone)
    tok = load_tokenizer(path, decoder=False)
    if args.tiny:
        config = AutoConfig.for_model(**TINY_BACKBONE, vocab_size=len(tok), num_labels=1,
                                      pad_token_id=tok.pad_token_id)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    # the same ids csrm trains on: the CSRM formatter (template, truncation) over the same pair rows
    from csrm.model.formatting import InputFormatter

    formatter = InputFormatter(tok, max_length=args.max_length, template="plain")
    pairs = load_augmented(args.dataset, ["train"])["pairs"]["train"]
    chosen = formatter.encode_batch(pairs["config_text"], pairs["messages"], pairs["chosen"])
    rejected = formatter.encode_batch(pairs["config_text"], pairs["messages"], pairs["rejected"])
    data = Dataset.from_dict({"chosen_ids": [e.input_ids for e in chosen],
                              "rejected_ids": [e.input_ids for e in rejected],
                              "margin": [0.1 * m for m in pairs["margin"]]})
    config = RewardConfig(**common_training_args(args, out / "trl"), per_device_train_batch_size=args.pairs,
                          max_length=args.max_length, gradient_checkpointing=args.trl_gradient_checkpointing,
                          disable_dropout=False, center_rewards_coefficient=None)
    trainer = RewardTrainer(model=model, args=config, train_dataset=data, processing_class=tok,
                            callbacks=[recorder.callback()])
    try:
        trainer.train()
    finally:
        undo()


def child(args) -> None:
    """One training run; prints one JSON line."""
    threads = common.set_threads(args.threads)
    recorder = StepRecorder()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, common.RSSSampler() as sampler:
        if args.child == "trl":
            run_trl(args, Path(tmp), recorder)
        else:
            run_csrm(args, Path(tmp), recorder, pairs_only=args.child == "csrm-pairs")
    result = {"run": args.child, "threads": threads, "wall_seconds": round(time.perf_counter() - start, 1),
              "peak_rss_mib": round(common.peak_rss_mib(), 1),
              "training_rss_increase_mib": round(max(0.0, sampler.peak - recorder.rss_at_start), 1),
              "rss_at_train_start_mib": round(recorder.rss_at_start, 1), **recorder.summary(args.warmup_steps)}
    print(json.dumps(result))


# -- parent side --------------------------------------------------------------------------------------------
def child_argv(args, run: str) -> list[str]:
    argv = [str(Path(__file__).resolve()), "--child", run, "--dataset", str(args.dataset), "--steps", str(args.steps),
            "--warmup-steps", str(args.warmup_steps), "--max-length", str(args.max_length), "--pairs",
            str(args.pairs), "--threads", str(args.threads), "--backbone", args.backbone]
    if args.tiny:
        argv.append("--tiny")
    if args.trl_gradient_checkpointing:
        argv.append("--trl-gradient-checkpointing")
    return argv


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(repeats=2)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed first steps")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=16, help="pairs per step of the baseline (2x sequences)")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--tiny", action="store_true", help="2-layer BERT from config (smoke tests)")
    parser.add_argument("--trl-gradient-checkpointing", action="store_true",
                        help="TRL's own default (recomputes the forward): not equal work, shown for reference")
    parser.add_argument("--in-process", action="store_true",
                        help="no subprocesses (smoke tests): speed only, memory numbers are not per run")
    parser.add_argument("--dataset", type=Path, default=None, help="augmentation output (default: seed recipe)")
    parser.add_argument("--child", choices=RUNS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset is None:
            args.dataset = common.write_seed_dataset(Path(tmp) / "seed")
        return parent(args, argv)


def parent(args, argv: list[str] | None = None) -> dict:
    print(f"training: {args.steps} timed steps (+{args.warmup_steps} warm-up) of {2 * args.pairs} sequences, "
          f"max_length {args.max_length}, {args.threads} threads, {args.repeats} repeats, "
          f"load {common.machine_info()['loadavg_1m']}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {run: [] for run in RUNS}
    for rep in range(args.repeats):
        order = list(RUNS[rep % len(RUNS):] + RUNS[: rep % len(RUNS)])
        for run in order:
            if args.in_process:
                buffer = io.StringIO()
                with contextlib.redirect_stdout(buffer):
                    child(argparse_namespace(args, run))
                result = json.loads(buffer.getvalue().strip().splitlines()[-1])
            else:
                result = common.run_json_subprocess(child_argv(args, run))
            results[run].append(result)
            print(f"  [repeat {rep + 1}/{args.repeats}] {run}: {result['sequences_per_second']} seq/s, "
                  f"{result['real_tokens_per_second']} tok/s, peak RSS {result['peak_rss_mib']} MiB", flush=True)
    return summarize(args, results, argv)


def summarize(args, results: dict[str, list[dict[str, Any]]], argv: list[str] | None) -> dict:
    """Table, JSON and ratio lines from the runs' results."""

    def med(run: str, key: str) -> float:
        return statistics.median(r[key] for r in results[run])

    rows = []
    for run in RUNS:
        rows.append({"run": run, "seq/s": med(run, "sequences_per_second"),
                     "real tok/s": med(run, "real_tokens_per_second"),
                     "padding": f"{100 * med(run, 'padding_fraction'):.0f}%",
                     "peak RSS MiB": med(run, "peak_rss_mib"),
                     "train RSS increase MiB": med(run, "training_rss_increase_mib"),
                     "seq/s vs trl": round(med(run, "sequences_per_second") / med("trl", "sequences_per_second"), 2),
                     "tok/s vs trl": round(med(run, "real_tokens_per_second") / med("trl", "real_tokens_per_second"),
                                           2),
                     "memory vs trl": round(med(run, "peak_rss_mib") / med("trl", "peak_rss_mib"), 3)})
    print(common.table(rows))
    seq_ratio = med("csrm", "sequences_per_second") / med("trl", "sequences_per_second")
    token_ratio = med("csrm", "real_tokens_per_second") / med("trl", "real_tokens_per_second")
    speed = min(seq_ratio, token_ratio)  # the sequence sets differ in length: take the less favourable measure
    memory = med("csrm", "peak_rss_mib") / med("trl", "peak_rss_mib")
    payload = {"ratio": round(speed, 3),
               "ratio_name": "csrm speed over trl.RewardTrainer's: min(sequences/s ratio, real tokens/s ratio)",
               "sequence_ratio": round(seq_ratio, 3),
               "memory_ratio": round(memory, 3), "target": {"speed": SPEED_TARGET, "memory": MEMORY_TARGET},
               "target_met": speed >= SPEED_TARGET and memory <= MEMORY_TARGET,
               "pairs_only_ratio": round(med("csrm-pairs", "sequences_per_second")
                                         / med("trl", "sequences_per_second"), 3),
               "token_ratio": round(token_ratio, 3),
               "steps": args.steps, "warmup_steps": args.warmup_steps, "max_length": args.max_length,
               "sequences_per_step": 2 * args.pairs, "threads": args.threads, "in_process": args.in_process,
               "rows": rows, "runs": results}
    common.write_results("training", payload, args.out, script=__file__, argv=argv)
    print(common.ratio_line("csrm_vs_trl_memory", memory, MEMORY_TARGET, higher_is_better=False))
    print(common.ratio_line("csrm_vs_trl_speed", speed, SPEED_TARGET))
    return payload


def argparse_namespace(args, run: str) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "child": run})


if __name__ == "__main__":
    main()
