"""The clause-reading CSRM: scoring groups that share text, training memory, and wall time to a held-out AUROC
against ``trl.RewardTrainer``, on the bundled MiniLM (all-MiniLM-L6-v2), in one run.

    python bench/bench_clause.py [--groups 16] [--group-size 8] [--trl-seconds 300] [--target-auroc 0.85]
                                 [--data DIR] [--threads 1]

Data: ``csrm augment configs/augment/seed.yaml output_dir=<tmp>`` (or ``--data``, e.g. runs/shared/data).

1. **Training memory** (``memory``): ``csrm train configs/train/clause_minilm.yaml dataset_path=... output_dir=...``
   in a fresh subprocess, twice with the same ``checkpoint_dir``: first without the feature cache (every clause
   and window encoded), then with it (``features-<key>.pt`` read back). Peak RSS is the child's ``ru_maxrss``
   from ``os.wait4`` (what ``/usr/bin/time -v`` reports); seconds of features vs. heads (reader + judge) come
   from its ``train_results.json``. Target (the issue's): peak RSS <= 2 GB (decimal) for the MiniLM recipe.
2. **Scoring groups that share text** (``scoring``), with the model trained in 1 (``csrm.load``): configs are
   ``SafetyConfig(allow=...).render()`` for ``--configs`` allow maps (the strict one included), responses are
   2-4 seed responses joined (a few sentences), conversations are seed prompts. Two shapes, ``--groups`` groups
   of ``--group-size`` items each: *one response under N configs* and *N responses under one config*. Methods:

   - ``csrm``: one ``Scorer.score_items(group)`` call, feature cache emptied before each group (so each
     distinct clause and window of the group is encoded once, nothing is reused across groups or repeats);
   - ``per-item``: the baseline, a per-item loop of single forward passes: one ``score_items([item])`` call
     per item with the feature cache emptied before each, so every item encodes its own config clauses and
     content windows;
   - ``csrm-configs-cached`` (for reference, not in the ratio): one call whose configs' clauses were encoded
     earlier (untimed), the steady state of a deployment with few configs.

   Groups are timed in turn (order rotating), a method's time is the sum over groups of its median over
   ``--repeats``. The encoded-token count (real tokens through the encoder) of each method gives the bound
   the speed-up can reach when the encoder dominates. Scores must agree with ``csrm`` within ``--tolerance``.
   Target (the issue's): >= 5x items/s over ``per-item`` for each shape.
3. **Wall time to a held-out AUROC** (``auroc``): ``RewardTrainer`` exactly as bench/bench_training.py sets it
   up (same MiniLM weights, CSRM formatter token ids, ``--pairs`` pairs per step, lr 5e-5, no gradient
   checkpointing, no bf16), in a fresh subprocess, for at most ``--trl-seconds`` of training; every
   ``--eval-every`` steps (and at step 0 and at the end) it scores the validation examples: AUROC of
   violation (label 0) by ``-reward``. Its time is the training clock only (evaluation, model loading and
   tokenization excluded, which favours it). The clause CSRM's time is its ``train_seconds`` from run 1
   (everything in process: loading, features, reader, judge, its evaluation), its AUROC ``eval.eval_auroc``
   (p_violation on the same validation examples), re-checked here by scoring them with ``csrm.load``. The clause
   model is evaluated once, at the end, so its time to a target is an upper bound. Reported: each one's best
   AUROC, the time to ``--target-auroc`` if reached (never extrapolated), and the time each needs to reach the
   lower of the two best AUROCs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SCORING_TARGET, RSS_TARGET_GB = 5.0, 2.0
CLAUSE_RECIPE = common.PROJECT_ROOT / "configs" / "train" / "clause_minilm.yaml"
PARTS = ("memory", "scoring", "auroc")
SHAPES = {"one-response-n-configs": "1 response x {n} configs", "n-responses-one-config": "{n} responses x 1 config"}
METHODS = ("csrm", "per-item", "csrm-configs-cached")


# -- data ---------------------------------------------------------------------------------------------------
def make_dataset(out_dir: Path, in_process: bool) -> Path:
    """``csrm augment configs/augment/seed.yaml output_dir=<out_dir>``."""
    if in_process:
        return common.write_seed_dataset(out_dir)
    proc = subprocess.run([sys.executable, "-m", "csrm", "augment", str(common.SEED_RECIPE), f"output_dir={out_dir}",
                           "progress=false"], capture_output=True, text=True, cwd=str(common.PROJECT_ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"csrm augment failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return out_dir


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(common.PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}


def run_measured(argv: list[str], log_path: Path, threads: int) -> dict[str, Any]:
    """Run ``python argv...`` (stdout+stderr to ``log_path``); its own peak RSS and CPU time from ``wait4``."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT,
                                env=child_env(threads), cwd=str(common.PROJECT_ROOT))
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
    return {"wall_seconds": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "cpu_utilisation": round((usage.ru_utime + usage.ru_stime) / wall, 2)}


# -- 1. clause training runs -------------------------------------------------------------------------------
def tiny_overrides() -> list[str]:
    import bench_training

    return [f"backbone_config={json.dumps(bench_training.TINY_BACKBONE)}", "tokenizer_name_or_path=minilm"]


def clause_train(args, data: Path, out_dir: Path, checkpoint_dir: Path, log_path: Path) -> dict[str, Any]:
    """One ``csrm train`` run of the clause recipe; its train_results.json plus the process's measurements."""
    overrides = [f"dataset_path={data}", f"output_dir={out_dir}", f"checkpoint_dir={checkpoint_dir}",
                 *(tiny_overrides() if args.tiny else []), *args.clause_set]
    cached = any(checkpoint_dir.glob("features-*.pt"))
    if args.in_process:  # smoke tests: what `csrm train` runs, in this process (RSS is not per run)
        from csrm.training.train import load_train_config, run_training

        start = time.perf_counter()
        cfg, raw = load_train_config(CLAUSE_RECIPE, overrides)
        with contextlib.redirect_stdout(io.StringIO()):
            run_training(cfg, raw_config=raw)
        measured = {"wall_seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": None,
                    "cpu_seconds": None, "cpu_utilisation": None}
    else:
        measured = run_measured(["-m", "csrm", "train", str(CLAUSE_RECIPE.relative_to(common.PROJECT_ROOT)),
                                 *overrides], log_path, args.threads)
    results = json.loads((out_dir / "train_results.json").read_text())
    results.pop("log", None)
    return {"feature_cache": "read" if cached else "built", "command": "csrm train " + " ".join(
        [str(CLAUSE_RECIPE.relative_to(common.PROJECT_ROOT)), *overrides]), **measured, "results": results}


# -- 2. scoring groups that share text ----------------------------------------------------------------------
def make_configs(n: int, rng: random.Random) -> list[str]:
    """``n`` rendered configs: the strict one (nothing allowed) and ``n - 1`` distinct random allow maps."""
    from csrm.base.safety_config import SafetyConfig
    from csrm.base.taxonomy import RiskTaxonomy

    taxonomy = RiskTaxonomy.default()
    names = [c.name for c in taxonomy.categories if c.allowable]
    maps: list[dict[str, int]] = [{}]
    while len(maps) < n:
        allow = {name: rng.randint(1, 3) for name in sorted(rng.sample(names, rng.randint(1, 4)))}
        if allow not in maps:
            maps.append(allow)
    return [SafetyConfig(allow=a).render(taxonomy) for a in maps]


def make_groups(args, data: Path) -> dict[str, list[list]]:
    from csrm.base.score_types import ScoreItem
    from csrm.model.data import load_augmented

    examples = load_augmented(data, ["train"])["examples"]["train"]
    responses = sorted({r for r in examples["response"] if r})
    conversations = [m for m, r in zip(examples["messages"], examples["response"], strict=True) if r]
    rng = random.Random(args.seed)
    configs = make_configs(max(args.configs, args.group_size), rng)
    lo, hi = args.response_parts

    def response() -> str:
        return " ".join(rng.sample(responses, rng.randint(lo, hi)))

    one_response = []
    for _ in range(args.groups):
        messages, text = rng.choice(conversations), response()
        one_response.append([ScoreItem(c, messages, text) for c in rng.sample(configs, args.group_size)])
    one_config = [[ScoreItem(configs[g % len(configs)], rng.choice(conversations), response())
                   for _ in range(args.group_size)] for g in range(args.groups)]
    return {"one-response-n-configs": one_response, "n-responses-one-config": one_config}


class Scoring:
    """The three methods over one :class:`~csrm.scoring.scorer.Scorer` of a clause model, counting the tokens each sends through the encoder."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.tokens = {"real": 0, "padded": 0, "texts": 0}
        encode = scorer.model.encode

        def counting_encode(input_ids, attention_mask):
            self.tokens["real"] += int(attention_mask.sum())
            self.tokens["padded"] += int(attention_mask.numel())
            self.tokens["texts"] += int(attention_mask.shape[0])
            return encode(input_ids, attention_mask)

        scorer.model.encode = counting_encode  # an instance attribute: only this scorer's calls are counted

    def cold(self) -> None:
        """Empty the feature cache (a fresh :class:`FeatureEncoder`, same batching settings)."""
        from csrm.model.clause.features import FeatureEncoder

        s = self.scorer.predictor
        s.features = FeatureEncoder(s.model, s.tokenizer, max_tokens=s.max_tokens, max_rows=s.max_rows)

    def prepare(self, method: str, group) -> None:
        """Untimed set-up: ``csrm-configs-cached`` encodes the group's configs before the timed call."""
        if method == "csrm-configs-cached":
            self.cold()
            self.scorer.predictor.features.clause_features(list(dict.fromkeys(item.config for item in group)))

    def run(self, method: str, group) -> list[tuple[float, float]]:
        if method == "csrm":
            self.cold()
            results = self.scorer.score_items(group)
        elif method == "per-item":
            results = []
            for item in group:
                self.cold()
                results += self.scorer.score_items([item])
        else:
            results = self.scorer.score_items(group)
        return [(r.p_comply, r.reward) for r in results]


def bench_scoring(args, scorer, data: Path) -> dict[str, Any]:
    groups = make_groups(args, data)
    bench = Scoring(scorer)
    out: dict[str, Any] = {}
    for shape, shape_groups in groups.items():
        for _ in range(args.warmup):  # allocator, oneDNN primitives
            for method in METHODS:
                bench.prepare(method, shape_groups[0])
                bench.run(method, shape_groups[0])
        seconds = {m: [[] for _ in shape_groups] for m in METHODS}
        tokens = {m: {"real": 0, "padded": 0, "texts": 0} for m in METHODS}
        scores: dict[str, list] = {m: [None] * len(shape_groups) for m in METHODS}
        turn = 0
        for rep in range(args.repeats):
            for k, group in enumerate(shape_groups):
                order = METHODS[turn % len(METHODS):] + METHODS[: turn % len(METHODS)]
                turn += 1
                for method in order:
                    bench.prepare(method, group)
                    before = dict(bench.tokens)
                    start = time.perf_counter()
                    scores[method][k] = bench.run(method, group)
                    seconds[method][k].append(time.perf_counter() - start)
                    if rep == 0:
                        for key in tokens[method]:
                            tokens[method][key] += bench.tokens[key] - before[key]
            print(f"  [{shape}, repeat {rep + 1}/{args.repeats}] " + ", ".join(
                f"{m} {sum(s[-1] for s in seconds[m]):.2f} s" for m in METHODS), flush=True)
        items = sum(len(g) for g in shape_groups)
        total = {m: sum(statistics.median(s) for s in seconds[m]) for m in METHODS}
        diffs = {m: max(max(abs(a[0] - b[0]), abs(a[1] - b[1]))
                        for got, ref in zip(scores[m], scores["csrm"], strict=True)
                        for a, b in zip(got, ref, strict=True)) for m in METHODS}
        out[shape] = {"items": items, "groups": len(shape_groups), "group_size": args.group_size,
                      "seconds": {m: round(total[m], 3) for m in METHODS},
                      "items_per_second": {m: round(items / total[m], 2) for m in METHODS},
                      "ratio": round(total["per-item"] / total["csrm"], 3),
                      "configs_cached_ratio": round(total["per-item"] / total["csrm-configs-cached"], 3),
                      "token_ratio": round(tokens["per-item"]["real"] / tokens["csrm"]["real"], 3),
                      "encoded": tokens, "max_abs_diff": {m: diffs[m] for m in METHODS if m != "csrm"},
                      "seconds_per_group": seconds}
    return out


def validation_auroc(scorer, data: Path, split: str) -> dict[str, float]:
    """The trained clause model's AUROC of violation on ``split``, re-scored through ``csrm.load``."""
    from sklearn.metrics import roc_auc_score

    from csrm.base.score_types import ScoreItem
    from csrm.model.data import load_augmented

    rows = load_augmented(data, ["train", split])["examples"][split]
    items = [ScoreItem(c, m, r) for c, m, r in zip(rows["config_text"], rows["messages"], rows["response"],
                                                   strict=True)]
    results = scorer.score_items(items)
    violation = [1 - int(y) for y in rows["label"]]
    return {"auroc_p_violation": float(roc_auc_score(violation, [1 - r.p_comply for r in results])),
            "auroc_minus_reward": float(roc_auc_score(violation, [-r.reward for r in results])),
            "examples": len(items)}


def load_scorer(args, model_dir: Path | None):
    import csrm

    if model_dir is not None:
        return csrm.load(str(model_dir), device="cpu")
    import bench_training
    from transformers import AutoConfig, AutoTokenizer

    from csrm.base.paths import resolve_model_name
    from csrm.model.clause.modeling import ClauseCSRMModel
    from csrm.scoring.scorer import Scorer

    tok = AutoTokenizer.from_pretrained(resolve_model_name("minilm"))
    if args.tiny:
        spec = dict(bench_training.TINY_BACKBONE)
        config = AutoConfig.for_model(spec.pop("model_type"), **spec, vocab_size=len(tok))
        model = ClauseCSRMModel.from_backbone_config(config, tokenizer=tok)
    else:
        model = ClauseCSRMModel.from_backbone("minilm", tokenizer=tok)
    return Scorer(model, tok, device="cpu")


# -- 3. trl.RewardTrainer to a held-out AUROC ----------------------------------------------------------------
def trl_child(args) -> dict[str, Any]:
    """bench_training's RewardTrainer run, bounded by ``--trl-seconds`` of training, evaluated periodically."""
    import bench_training
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score
    from transformers import TrainerCallback

    from csrm.base.paths import resolve_model_name
    from csrm.model.cross_encoder.modeling import load_tokenizer
    from csrm.model.data import load_augmented
    from csrm.model.formatting import InputFormatter, pad_batch

    threads = common.set_threads(args.threads)
    process_start = time.perf_counter()
    data = load_augmented(args.data, ["train", args.eval_split])
    n_pairs = len(data["pairs"]["train"])
    steps = max(1, math.ceil(n_pairs / args.pairs) * args.trl_epochs)
    rows = data["examples"][args.eval_split]
    formatter = InputFormatter(load_tokenizer(resolve_model_name(args.backbone), decoder=False),
                               max_length=args.max_length, template="plain")
    ids = [e.input_ids for e in formatter.encode_batch(rows["config_text"], rows["messages"], rows["response"])]
    violation = [1 - int(y) for y in rows["label"]]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad_id = formatter.tokenizer.pad_token_id or 0

    class Recorder(bench_training.StepRecorder):
        """bench_training's token counting, plus the evaluation schedule and the time bound."""

        def __init__(self):
            super().__init__()
            self.curve: list[dict[str, Any]] = []
            self.eval_seconds = 0.0
            self.train_begin = self.setup_seconds = 0.0

        def clock(self) -> float:
            return time.perf_counter() - self.train_begin - self.eval_seconds

        def evaluate(self, model, step: int) -> None:
            start = time.perf_counter()
            train_clock = self.clock()
            was_training = model.training
            model.eval()
            rewards = np.zeros(len(ids))
            with torch.inference_mode():
                for b in range(0, len(order), 32):
                    batch = order[b:b + 32]
                    out = model(**pad_batch([ids[i] for i in batch], pad_id))
                    rewards[batch] = out.logits[:, 0].float().numpy()
            model.train(was_training)
            auroc = float(roc_auc_score(violation, -rewards))
            self.curve.append({"step": step, "train_seconds": round(train_clock, 2), "auroc": round(auroc, 4)})
            print(f"  [trl] step {step}: AUROC {auroc:.3f} after {train_clock:.0f} s of training", file=sys.stderr,
                  flush=True)
            self.eval_seconds += time.perf_counter() - start

        def callback(self):
            recorder = self

            class BoundedEval(TrainerCallback):
                def on_train_begin(self, args_, state, control, model=None, **kwargs):
                    recorder.rss_at_start = common.current_rss_mib()
                    recorder.train_begin = time.perf_counter()
                    recorder.setup_seconds = recorder.train_begin - process_start
                    recorder.evaluate(model, 0)
                    recorder._last = time.perf_counter()

                def on_step_end(self, args_, state, control, model=None, **kwargs):
                    now = time.perf_counter()
                    recorder.step_times.append(now - recorder._last)
                    out_of_time = recorder.clock() >= args.trl_seconds
                    if state.global_step % args.eval_every == 0 or out_of_time or state.global_step >= steps:
                        recorder.evaluate(model, state.global_step)
                    if out_of_time:
                        control.should_training_stop = True
                    recorder._last = time.perf_counter()

            return BoundedEval()

    recorder = Recorder()
    spec = argparse.Namespace(backbone=args.backbone, tiny=args.tiny, max_length=args.max_length,
                              dataset=args.data, pairs=args.pairs, trl_gradient_checkpointing=False,
                              steps=steps, warmup_steps=0)
    with tempfile.TemporaryDirectory() as tmp:
        bench_training.run_trl(spec, Path(tmp), recorder)
    seqs, step_seconds = sum(recorder.sequences), sum(recorder.step_times)
    return {"run": "trl", "threads": threads, "max_steps": steps, "steps": len(recorder.step_times),
            "pairs_per_step": args.pairs, "pairs_seen": seqs // 2, "train_seconds": round(step_seconds, 2),
            "eval_seconds": round(recorder.eval_seconds, 2), "setup_seconds": round(recorder.setup_seconds, 2),
            "sequences_per_second": round(seqs / max(step_seconds, 1e-9), 2), "curve": recorder.curve,
            "best_auroc": max(p["auroc"] for p in recorder.curve)}


def run_trl(args, data: Path, log_path: Path) -> dict[str, Any]:
    if args.in_process:
        child_args = argparse.Namespace(**{**vars(args), "data": data})
        with contextlib.redirect_stdout(io.StringIO()):
            return {**trl_child(child_args), "wall_seconds": None, "peak_rss_mib": None}
    argv = [str(Path(__file__).resolve()), "--child", "trl", "--data", str(data), "--threads", str(args.threads),
            "--trl-seconds", str(args.trl_seconds), "--eval-every", str(args.eval_every), "--pairs",
            str(args.pairs), "--max-length", str(args.max_length), "--trl-epochs", str(args.trl_epochs),
            "--backbone", args.backbone, "--eval-split", args.eval_split, *(["--tiny"] if args.tiny else [])]
    measured = run_measured(argv, log_path, args.threads)
    lines = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the RewardTrainer run printed no JSON:\n{log_path.read_text()[-4000:]}")
    return {**json.loads(lines[-1]), **measured}


def first_reaching(curve: list[dict[str, Any]], level: float) -> float | None:
    return next((p["train_seconds"] for p in curve if p["auroc"] >= level), None)


def time_to_auroc(args, clause: dict[str, Any], trl: dict[str, Any]) -> dict[str, Any]:
    """Each one's best AUROC and time to the target / to the lower of the two bests (never extrapolated)."""
    c_auroc = float(clause["results"]["eval"].get("eval_auroc", float("nan")))
    c_seconds = float(clause["results"]["train_seconds"])
    t_best = trl["best_auroc"]
    target = args.target_auroc
    c_target = c_seconds if c_auroc >= target else None
    t_target = first_reaching(trl["curve"], target)
    common_level = min(c_auroc, t_best)
    c_common, t_common = c_seconds, first_reaching(trl["curve"], common_level)
    if c_target is not None and t_target is not None:
        ratio, note = t_target / c_target, "both reached the target"
    elif c_target is not None:
        ratio = trl["train_seconds"] / c_target
        note = f"trl did not reach it in {trl['train_seconds']:.0f} s of training: the ratio is a lower bound"
    else:
        ratio, note = None, ("neither reached the target" if t_target is None
                             else "only trl reached the target")
    return {"target_auroc": target, "clause_best_auroc": round(c_auroc, 4), "trl_best_auroc": round(t_best, 4),
            "clause_seconds_to_target": c_target, "trl_seconds_to_target": t_target,
            "ratio": None if ratio is None else round(ratio, 3), "ratio_is_lower_bound": c_target is not None
            and t_target is None, "note": note, "common_level": round(common_level, 4),
            "clause_seconds_to_common": c_common, "trl_seconds_to_common": t_common,
            "common_ratio": None if t_common is None else round(t_common / c_common, 3),
            "clause_train_seconds": c_seconds, "trl_train_seconds": trl["train_seconds"]}


# -- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--data", type=Path, default=None,
                        help="augmentation output (default: csrm augment configs/augment/seed.yaml into a tmp dir)")
    parser.add_argument("--groups", type=int, default=16, help="groups per scoring shape")
    parser.add_argument("--group-size", type=int, default=8, help="items per group (configs or responses)")
    parser.add_argument("--configs", type=int, default=12, help="distinct rendered configs (allow maps)")
    parser.add_argument("--response-parts", type=int, nargs=2, default=(2, 4), metavar=("MIN", "MAX"),
                        help="seed responses joined into one response")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff of p_comply/reward vs csrm")
    parser.add_argument("--trl-seconds", type=float, default=300.0, help="RewardTrainer training-time bound")
    parser.add_argument("--eval-every", type=int, default=4, help="RewardTrainer steps between evaluations")
    parser.add_argument("--trl-epochs", type=int, default=1, help="RewardTrainer max_steps = epochs x steps/epoch "
                                                                  "(its linear lr schedule spans them)")
    parser.add_argument("--pairs", type=int, default=16, help="RewardTrainer pairs per step (as bench_training)")
    parser.add_argument("--max-length", type=int, default=256, help="RewardTrainer max_length (the recipe's)")
    parser.add_argument("--target-auroc", type=float, default=0.85)
    parser.add_argument("--eval-split", default="validation")
    parser.add_argument("--clause-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra overrides for csrm train (e.g. num_train_epochs=20)")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--tiny", action="store_true", help="2-layer BERT from config (smoke tests)")
    parser.add_argument("--in-process", action="store_true",
                        help="no subprocesses (smoke tests): memory numbers are not per run")
    parser.add_argument("--child", choices=["trl"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(trl_child(args)), flush=True)
        return {}
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {PARTS}")
    threads = common.set_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        data = args.data or make_dataset(tmp_dir / "seed", args.in_process)
        print(f"clause: data {data}, {threads} threads, parts {','.join(parts)}, "
              f"load {common.machine_info()['loadavg_1m']}", flush=True)
        payload: dict[str, Any] = {"data": str(args.data or "csrm augment configs/augment/seed.yaml"),
                                   "threads": threads, "in_process": args.in_process, "tiny": args.tiny}
        clause_runs: dict[str, dict[str, Any]] = {}
        model_dir = None
        if "memory" in parts or "auroc" in parts:
            for name in ("no-cache", "cache") if "memory" in parts else ("no-cache",):
                run = clause_train(args, data, tmp_dir / f"clause-{name}", tmp_dir / "clause-checkpoints",
                                   tmp_dir / f"clause-{name}.log")
                clause_runs[name] = run
                r = run["results"]
                print(f"  [clause train, feature cache {run['feature_cache']}] {r['train_seconds']} s in process "
                      f"(features {r['feature_seconds']}, reader {r['reader_seconds']}, judge {r['judge_seconds']})"
                      f", wall {run['wall_seconds']} s, peak RSS {run['peak_rss_mib']} MiB, "
                      f"AUROC {r['eval'].get('eval_auroc', float('nan')):.3f}", flush=True)
            model_dir = tmp_dir / "clause-no-cache"
            payload["clause_runs"] = clause_runs
        scorer = load_scorer(args, model_dir) if "scoring" in parts or clause_runs else None
        if clause_runs:
            payload["clause_rescored"] = validation_auroc(scorer, data, args.eval_split)
        if "scoring" in parts:
            payload["scoring"] = bench_scoring(args, scorer, data)
            payload["scoring_model"] = "trained in this run (no-cache run)" if model_dir else "untrained"
        if "auroc" in parts:
            trl = run_trl(args, data, tmp_dir / "trl.log")
            payload["trl"] = trl
            payload["time_to_auroc"] = time_to_auroc(args, clause_runs["no-cache"], trl)
    payload["wall_seconds"] = round(time.perf_counter() - start, 1)
    return report(args, payload, argv)


def report(args, payload: dict[str, Any], argv: list[str] | None) -> dict:
    lines: list[str] = []
    if "clause_runs" in payload:
        rows = []
        for name, run in payload["clause_runs"].items():
            r = run["results"]
            rows.append({"clause train": name, "feature cache": run["feature_cache"],
                         "peak RSS MiB": run["peak_rss_mib"] if run["peak_rss_mib"] is not None else "n/a",
                         "wall s": run["wall_seconds"], "train s": r["train_seconds"],
                         "features s": r["feature_seconds"], "reader s": r["reader_seconds"],
                         "judge s": r["judge_seconds"], "encoded texts": r["encoded_texts"],
                         "val AUROC": round(r["eval"].get("eval_auroc", float("nan")), 3)})
        print(common.table(rows))
        peaks = [run["peak_rss_mib"] for run in payload["clause_runs"].values() if run["peak_rss_mib"] is not None]
        if peaks:
            gb = max(peaks) * 2**20 / 1e9
            payload["peak_rss_gb"] = round(gb, 3)
            lines.append(common.ratio_line("clause_train_peak_rss", gb, RSS_TARGET_GB, higher_is_better=False,
                                           unit="GB"))
    if "clause_rescored" in payload:
        c = payload["clause_rescored"]
        print(f"clause model re-scored by csrm.load on {c['examples']} {args.eval_split} examples: AUROC "
              f"{c['auroc_p_violation']:.3f} (p_violation), {c['auroc_minus_reward']:.3f} (-reward)")
    if "time_to_auroc" in payload:
        t, trl = payload["time_to_auroc"], payload["trl"]
        fmt = lambda v: "not reached" if v is None else f"{v:.0f} s"  # noqa: E731
        print(common.table([
            {"run": "clause CSRM", "best AUROC": t["clause_best_auroc"],
             f"s to {t['target_auroc']:g}": fmt(t["clause_seconds_to_target"]),
             f"s to {t['common_level']:.3f}": fmt(t["clause_seconds_to_common"]),
             "train s": t["clause_train_seconds"], "evaluations": 1,
             "peak RSS MiB": payload["clause_runs"]["no-cache"]["peak_rss_mib"] or "n/a"},
            {"run": "trl.RewardTrainer", "best AUROC": t["trl_best_auroc"],
             f"s to {t['target_auroc']:g}": fmt(t["trl_seconds_to_target"]),
             f"s to {t['common_level']:.3f}": fmt(t["trl_seconds_to_common"]),
             "train s": t["trl_train_seconds"], "evaluations": len(trl["curve"]),
             "peak RSS MiB": trl["peak_rss_mib"] if trl["peak_rss_mib"] is not None else "n/a"}]))
        print("trl AUROC curve (training seconds: AUROC): " + ", ".join(
            f"{p['train_seconds']:.0f}: {p['auroc']:.3f}" for p in trl["curve"]))
        name = f"trl_vs_clause_time_to_auroc_{t['target_auroc']:g}"
        if t["ratio"] is None:
            lines.append(f"RATIO {name}=n/a ({t['note']}; best AUROC clause {t['clause_best_auroc']:.3f}, "
                         f"trl {t['trl_best_auroc']:.3f})")
        else:
            bound = ">=" if t["ratio_is_lower_bound"] else ""
            lines.append(f"RATIO {name}={bound}{t['ratio']:.2f}x ({t['note']})")
        if t["common_ratio"] is not None:
            lines.append(f"RATIO trl_vs_clause_time_to_auroc_{t['common_level']:.3f}={t['common_ratio']:.2f}x "
                         "(the lower of the two best AUROCs)")
    ratios = []
    if "scoring" in payload:
        rows = []
        for shape, s in payload["scoring"].items():
            label = SHAPES[shape].format(n=s["group_size"])
            for method in METHODS:
                rows.append({"shape": label, "method": method, "items": s["items"],
                             "seconds": s["seconds"][method], "items/s": s["items_per_second"][method],
                             "speed-up vs per-item": round(s["seconds"]["per-item"] / s["seconds"][method], 2),
                             "encoded tokens": s["encoded"][method]["real"],
                             "encoded texts": s["encoded"][method]["texts"],
                             "max abs diff vs csrm": f"{s['max_abs_diff'].get(method, 0.0):.1e}"})
            ratios.append((shape, s["ratio"]))
        print(common.table(rows))
        for shape, s in payload["scoring"].items():
            print(f"{shape}: token ratio per-item/csrm {s['token_ratio']:.2f} (the bound when the encoder "
                  f"dominates); with configs cached {s['configs_cached_ratio']:.2f}x")
        for shape, ratio in ratios:
            lines.append(common.ratio_line(shape.replace("-", "_"), ratio, SCORING_TARGET))
    if ratios:
        payload.update(ratio=round(min(r for _, r in ratios), 3),
                       ratio_name="min over the two shapes of csrm items/s over the per-item loop's",
                       target=SCORING_TARGET, target_met=min(r for _, r in ratios) >= SCORING_TARGET)
    common.write_results("clause", payload, args.out, script=__file__, argv=argv)
    worst = max((v for s in payload.get("scoring", {}).values() for v in s["max_abs_diff"].values()), default=0.0)
    for line in lines:
        print(line)
    if worst > args.tolerance:
        raise SystemExit(f"scores differ by {worst:.2e} > {args.tolerance:g}")
    return payload


if __name__ == "__main__":
    main()
