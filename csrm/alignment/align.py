"""The CoSAlign loop of ``csrm align`` with the CSRM as judge (command line: :mod:`csrm.app.align`).

Per round ``i`` (1..N), starting from the previous round's policy (round 1: ``policy.name_or_path``):

1. **generate**: sample ``k`` responses per training (config, prompt); the config is the system message
   (exactly the prompt DPO later trains on) -> ``round_i/generations.jsonl``;
2. **score**: the CSRM scores every response under its config -> ``round_i/scores.jsonl``;
3. **pairs**: :func:`csrm.alignment.judge.build_preference_dataset` ranks the responses by (verdict, reward) and emits
   chosen/rejected pairs -> ``round_i/pairs/`` (``Dataset.save_to_disk``);
4. **sft** (optional): ``trl.SFTTrainer`` on the chosen responses -> ``round_i/sft_policy/``;
5. **dpo**: ``trl.DPOTrainer`` with an explicit reference model (a frozen copy of the policy DPO starts
   from), ``beta``, optional LoRA (merged after training) -> ``round_i/policy/``; the policy's
   ``logp(chosen) - logp(rejected)`` on the round's pairs is measured before and after;
6. **eval** (last round, or every round with ``eval.every_round``): CoSA-Score on held-out items
   (:mod:`csrm.alignment.cosa_score`) -> ``round_i/eval.json``.

``round_i/metrics.json`` gathers each step's numbers and wall time. Before round 1 the starting policy is
evaluated (``baseline/eval.json``); at the end ``report.json`` and ``report.md`` compare before and after.

**Items**: ``data/train.jsonl`` and ``data/eval.jsonl``, written once: request-level prompts with synthesized
configs from the augmentation stage (:func:`augmentation.prompts_with_configs`, split ``train`` and
``validation``: its split rule keeps prompts and config policies disjoint), CoSAlign's construction on
CoSAlign-Test (``data.source=cosalign_test``), or user JSONL files (:mod:`~csrm.alignment.items`).

**Audit** (:mod:`~csrm.alignment.audit`): each round counts the pairs that differ in compliance and those won
or lost by the refusal candidate (``sampling.refusal_candidate``); ``eval.judges`` score the same answers
without ever building a pair; the report adds a reward-hacking check of the top-rewarded answers.

**Resume**: every step writes its output atomically (:func:`csrm.base.io.atomic_path`) and then records itself in
``round_i/state.json`` (finished steps, seconds, output policy). Re-running the same command skips finished
steps, so a killed run continues at the step it was in without regenerating or re-scoring what was kept.
``output_dir/fingerprint.json`` (:meth:`AlignRun.fingerprint`, written before the first step) records what those
steps depend on: the settings of data, sampling, judging, SFT and DPO, the judge's and starting policy's
digests and the item files. A rerun with any of them changed stops with exit 2 naming what changed
(``--restart`` discards the run's outputs and starts over); ``rounds`` and ``eval.*`` may change freely.

**Distributed** (``accelerate launch -m csrm align ...`` with DeepSpeed): sampling, scoring and evaluation run
on the main process while the others wait; SFT and DPO run on every process.

**Modules**: this loop; :mod:`~csrm.alignment.items` (the items), :mod:`~csrm.alignment.state` (resume state),
:mod:`~csrm.alignment.distributed` (processes), :mod:`~csrm.alignment.scorers` (the judge, the replay of stored
scores), :mod:`~csrm.alignment.trl_steps` (SFT, DPO, LoRA), :mod:`~csrm.alignment.report` (reports),
:mod:`~csrm.alignment.audit` (pair signal, independent judges, reward-hacking check).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datasets import load_from_disk
from tqdm.auto import tqdm

from csrm.alignment.audit import JudgeLoader, judge_independently, load_csrm_judge, pair_signal
from csrm.alignment.config import AlignConfig
from csrm.alignment.cosa_score import METRICS, CoSASettings, HeldOutItem, evaluate_answers, is_refusal
from csrm.alignment.distributed import barrier, free_memory, is_main
from csrm.alignment.items import ItemSource, cosalign_files, prepare_items, prompt_messages, read_items
from csrm.alignment.judge import JudgeInput, build_preference_dataset
from csrm.alignment.policy import (
    SamplingParams,
    generate,
    load_policy,
    pick_device,
    resolve_policy,
)
from csrm.alignment.report import read_json, short, write_report, write_round_metrics
from csrm.alignment.scorers import ReplayScorer, default_csrm_path
from csrm.alignment.state import FINGERPRINT_FILE, STATE_FILE, StepState, clean_stale, discard_run
from csrm.alignment.trl_steps import run_dpo, run_sft
from csrm.base.fingerprint import check_fingerprint, file_digest, model_digest, tensors_digest
from csrm.base.io import atomic_path, write_json, write_jsonl
from csrm.base.paths import project_path
from csrm.base.plots import plot_bars
from csrm.base.records import Message
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.tracking import log_results, wants_wandb
from csrm.scoring.scorer import load

logger = logging.getLogger(__name__)

# settings that change no finished step's output: later rounds and evaluation may be added on a resume
FINGERPRINT_SKIP = ("output_dir", "rounds", "eval", "logging_steps", "report_to", "judge.csrm", "judge.max_rows",
                    "judge.batch_tokens")
RESTART_HINT = ("rerun with --restart to discard its finished steps and start over, or use another output_dir")


# -- the loop ------------------------------------------------------------------------------------------
class AlignRun:
    """One ``csrm align`` run over an output folder (see the module doc)."""

    def __init__(self, cfg: AlignConfig, *, scorer: Any = None, restart: bool = False,
                 item_sources: Mapping[str, ItemSource] | None = None, load_judge: JudgeLoader = load_csrm_judge):
        self.cfg = cfg
        self.item_sources = item_sources
        self.load_judge = load_judge
        self.out = Path(cfg.output_dir)
        self._scorer = scorer
        self.restart = restart
        self.timings: dict[str, dict[str, float]] = {}

    # -- shared resources ------------------------------------------------------------------------------
    @property
    def scorer(self):
        if self._scorer is None:
            self._scorer = load(default_csrm_path(self.cfg), device=pick_device(self.cfg.device),
                                max_rows=self.cfg.judge.max_rows, max_tokens=self.cfg.judge.batch_tokens)
        return self._scorer

    def start_policy(self) -> str:
        return resolve_policy(self.cfg.policy.name_or_path, self.cfg.policy.gguf_file)

    def load_policy(self, path: str):
        p = self.cfg.policy
        return load_policy(path, dtype=p.dtype, device=self.cfg.device, chat_template=p.chat_template,
                           trust_remote_code=p.trust_remote_code)

    # -- entry -----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.restart and is_main():
            discard_run(self.out)
        barrier()
        self.out.mkdir(parents=True, exist_ok=True)
        check_fingerprint(self.out / FINGERPRINT_FILE, self.fingerprint(), partial=self.out / "data" / STATE_FILE,
                          what=f"the run in {self.out}", restart_hint=RESTART_HINT, write=is_main())
        self._record_config()
        data_state = StepState(self.out / "data")
        data_state.run("items", lambda: prepare_items(cfg, self.out / "data", self.item_sources), main_only=True)
        self.train_items = read_items(self.out / "data" / "train.jsonl")
        self.eval_items = read_items(self.out / "data" / "eval.jsonl")
        policy = self.start_policy() if is_main() else None
        barrier()
        policy = policy or self.start_policy()
        baseline = None
        if cfg.eval.enabled and self.eval_items:
            folder = self.out / "baseline"
            state = StepState(folder)
            state.run("eval", lambda: self.step_eval(folder, policy), main_only=True)
            baseline = read_json(folder / "eval.json")
            self.timings["baseline"] = state.data["seconds"]
        last_eval = None
        for index in range(1, cfg.rounds + 1):
            policy, round_eval = self.run_round(index, policy, last=index == cfg.rounds)
            last_eval = round_eval or last_eval
        return write_report(self, baseline, last_eval, policy)

    def fingerprint(self) -> dict[str, Any]:
        """What the finished steps depend on (:mod:`csrm.base.fingerprint`): the settings of data, sampling,
        judging, SFT and DPO (not ``rounds``, ``eval.*``, logging or batch sizes of the judge), the judge
        model's and the starting policy's digests, and the item files (or augmentation recipe)."""
        settings = self.cfg.to_dict()
        for key in FINGERPRINT_SKIP:
            section, _, name = key.rpartition(".")
            (settings.get(section, {}) if section else settings).pop(name, None)
        if self._scorer is not None:
            model = getattr(self._scorer, "model", None)
            judge = "tensors:" + tensors_digest(model) if model is not None else type(self._scorer).__name__
        else:
            judge = model_digest(default_csrm_path(self.cfg))
        data = self.cfg.data
        if data.source == "files":
            files = [data.train_file, data.eval_file]
        elif data.source == "cosalign_test":
            files = [str(f) for f in cosalign_files(self.cfg)]
        else:
            files = [str(project_path(data.augment_recipe))]
        return {"version": 1, "settings": settings, "judge": judge,
                "policy": model_digest(self.cfg.policy.name_or_path),
                "data": [file_digest(f) if f and Path(f).is_file() else f for f in files]}

    def _record_config(self) -> None:
        path = self.out / "align_config.json"
        current = self.cfg.to_dict()
        if path.is_file():
            previous = json.loads(path.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            if changed:
                logger.warning("resuming %s with changed settings (%s); finished steps are kept", self.out,
                               ", ".join(changed))
        if is_main():
            write_json(path, current)

    def run_round(self, index: int, start: str, *, last: bool) -> tuple[str, dict | None]:
        """Run (or resume) round ``index`` from policy ``start``; returns (its policy, its eval or None)."""
        cfg, folder = self.cfg, self.out / f"round_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale(folder)
        state = StepState(folder)
        seed = cfg.seed + 1000 * index
        state.run("generate", lambda: self.step_generate(folder, start, seed), main_only=True)
        state.run("score", lambda: self.step_score(folder), main_only=True)
        state.run("pairs", lambda: self.step_pairs(folder), main_only=True)
        state.run("sft", lambda: self.step_sft(folder, start, seed))
        dpo_start = state.info("sft_policy") or start
        state.run("dpo", lambda: self.step_dpo(folder, dpo_start, seed))
        policy = state.info("policy") or dpo_start
        round_eval = None
        if cfg.eval.enabled and self.eval_items and (last or cfg.eval.every_round):
            state.run("eval", lambda: self.step_eval(folder, policy), main_only=True)
            round_eval = read_json(folder / "eval.json")
        # a round that is not evaluated leaves "eval" unfinished, so a later run with fewer rounds (or
        # eval.every_round) still evaluates it on resume
        self.timings[folder.name] = state.data["seconds"]
        if is_main():
            write_round_metrics(folder, state, round_eval)
        return policy, round_eval

    # -- steps -----------------------------------------------------------------------------------------
    def step_generate(self, folder: Path, policy_path: str, seed: int) -> dict[str, Any]:
        s = self.cfg.sampling
        params = SamplingParams(n=s.k, max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
                                do_sample=True, batch_size=s.batch_size, seed=seed)
        conversations = [prompt_messages(item) for item in self.train_items]
        responses = self._sample(policy_path, conversations, params, desc=f"{folder.name} generate")
        flat = [r for group in responses for r in group]
        # the refusal candidate joins the judged pool after the samples (sample statistics exclude it)
        extra = [self.cfg.eval.refusal_anchor] if s.refusal_candidate else []
        rows = [{**{k: item[k] for k in ("item_id", "prompt_id", "config_id", "config", "messages")},
                 "label": item.get("label", -1), "responses": [*group, *extra]}
                for item, group in zip(self.train_items, responses, strict=True)]
        write_jsonl(folder / "generations.jsonl", rows)
        return {"generated": len(flat), "sample_refusal_rate": sum(map(is_refusal, flat)) / max(1, len(flat)),
                "mean_response_chars": sum(map(len, flat)) / max(1, len(flat))}

    def _sample(self, policy_path: str, conversations: list[list[Message]], params, *, desc: str) -> list[list[str]]:
        model, tokenizer = self.load_policy(policy_path)
        try:
            return generate(model, tokenizer, conversations, params, desc=desc)
        finally:
            del model
            free_memory()

    def step_score(self, folder: Path) -> dict[str, Any]:
        rows = read_items(folder / "generations.jsonl")
        items = [ScoreItem(r["config"], r["messages"], resp) for r in rows for resp in r["responses"]]
        results: list[Any] = [None] * len(items)
        with tqdm(total=len(items), desc=f"{folder.name} score", unit="resp", leave=False) as bar:
            for indices, batch in self.scorer.iter_batches(items):
                for i, result in zip(indices, batch, strict=True):
                    results[i] = result
                bar.update(len(indices))
        out, position = [], 0
        for row in rows:
            scores = []
            for _ in row["responses"]:
                r = results[position]
                position += 1
                scores.append({"p_comply": r.p_comply, "reward": r.reward, "complies": r.complies,
                               "threshold": r.threshold})
            out.append({"item_id": row["item_id"], "scores": scores})
        write_jsonl(folder / "scores.jsonl", out)
        n = max(1, len(results))
        return {"scored": len(results), "sample_compliant_rate": sum(r.complies for r in results) / n,
                "sample_mean_p_comply": sum(r.p_comply for r in results) / n,
                "sample_mean_reward": sum(r.reward for r in results) / n}

    def step_pairs(self, folder: Path) -> dict[str, Any]:
        rows = read_items(folder / "generations.jsonl")
        scores = {r["item_id"]: r["scores"] for r in read_items(folder / "scores.jsonl")}
        results: dict[tuple, ScoreResult] = {}
        inputs = []
        for row in rows:
            for response, s in zip(row["responses"], scores[row["item_id"]], strict=True):
                results[ReplayScorer.key(row["config"], row["messages"], response)] = ScoreResult(
                    s["p_comply"], s["reward"], s["complies"], s["threshold"])
            inputs.append(JudgeInput(row["config"], row["messages"], row["responses"], row["prompt_id"]))
        dataset = build_preference_dataset(ReplayScorer(results), inputs, strategy=self.cfg.judge.strategy,
                                           min_margin=self.cfg.judge.min_margin)
        with atomic_path(folder / "pairs", is_dir=True) as tmp:
            # one shard even when empty: datasets writes no shard for 0 rows and then cannot load the folder
            dataset.save_to_disk(str(tmp), num_shards=1)
        return pair_signal(dataset, rows, scores, refusal=self.cfg.eval.refusal_anchor)

    def _load_pairs(self, folder: Path):
        return load_from_disk(str(folder / "pairs"))

    def step_sft(self, folder: Path, start: str, seed: int) -> dict[str, Any]:
        if not self.cfg.sft.enabled:
            return {"sft_skipped": True}
        pairs = self._load_pairs(folder)
        if len(pairs) == 0:
            return {"sft_skipped": True, "sft_reason": "no pairs"}
        result = run_sft(self.cfg, pairs, start, folder / "sft_policy", seed=seed)
        return {"sft_policy": str(folder / "sft_policy"), **result}

    def step_dpo(self, folder: Path, start: str, seed: int) -> dict[str, Any]:
        pairs = self._load_pairs(folder)
        if len(pairs) == 0:
            logger.warning("%s: no preference pairs; the policy is carried over unchanged", folder.name)
            return {"policy": start, "dpo_skipped": True}
        result = run_dpo(self.cfg, pairs, start, folder / "policy", seed=seed)
        if is_main():
            write_json(folder / "dpo_metrics.json", result)
        return {"policy": str(folder / "policy"),
                **{k: v for k, v in result.items() if k != "log_history"}}

    def step_eval(self, folder: Path, policy_path: str) -> dict[str, Any]:
        e = self.cfg.eval
        params = SamplingParams(n=1, max_new_tokens=e.max_new_tokens, temperature=self.cfg.sampling.temperature,
                                top_p=self.cfg.sampling.top_p, do_sample=e.do_sample, batch_size=e.batch_size,
                                seed=self.cfg.seed)
        conversations = [prompt_messages(item) for item in self.eval_items]
        answers = [group[0] for group in self._sample(policy_path, conversations, params,
                                                      desc=f"{folder.name} eval")]
        items = [HeldOutItem(i["config"], i["messages"], i["config_id"], i["prompt_id"], i["item_id"],
                             int(i.get("label", -1))) for i in self.eval_items]
        settings = CoSASettings(e.helpfulness_config, e.reward_scale, e.helpful_threshold, e.refusal_anchor)
        result = evaluate_answers(self.scorer, items, answers, settings)
        result["policy"] = policy_path
        result["independent"] = judge_independently(e.judges, items, answers, settings, result["judgements"],
                                                    dev=self.dev_requests(), device=self.cfg.device,
                                                    load_judge=self.load_judge)
        write_json(folder / "eval.json", result)
        overall = result["metrics"]["overall"]
        self._log_cosa(folder, result["metrics"])
        return {"cosa_score": overall.get("cosa_score"), "violation_rate": overall.get("violation_rate"),
                **{f"cosa_score[{name}]": r["metrics"]["overall"].get("cosa_score")
                   for name, r in result["independent"].items()}}

    def dev_requests(self, limit: int = 200) -> list[tuple[ScoreItem, int]]:
        """Labelled training requests (config, prompt, no response) on which uncalibrated independent judges
        fit their threshold: training items are never evaluated, so nothing reported is fitted on."""
        rows = [i for i in self.train_items if i.get("label", -1) in (0, 1)][:limit]
        return [(ScoreItem(i["config"], i["messages"], None), int(i["label"])) for i in rows]

    def _log_cosa(self, folder: Path, metrics: dict[str, Any]) -> None:
        """CoSA-Score of this policy to wandb when ``report_to`` includes it: the overall rates, a per-config
        table and a per-config bar chart (``cosa_by_config.png``, also kept beside ``eval.json``)."""
        if not wants_wandb(self.cfg.report_to):
            return
        names = {i["config_id"]: f"{i.get('config_name') or 'config'} {i['config_id'][:6]}" for i in self.eval_items}
        per_config = metrics["per_config"]
        plot = plot_bars(folder / "cosa_by_config.png",
                         {short(names.get(c, c)): m["cosa_score"] for c, m in per_config.items()},
                         ylabel="CoSA-Score", title=f"{folder.name}: CoSA-Score per config", xlim=(-1, 1))
        rows = [[names.get(c, c), m.get("n"), *(m.get(k) for k in METRICS)] for c, m in per_config.items()]
        log_results(self.cfg.report_to, job_type="cosa_score", name=f"{self.out.name} {folder.name}",
                    metrics={folder.name: metrics["overall"]}, images={"by_config": plot},
                    tables={"per_config": (["config", "n", *METRICS], rows)}, config=self.cfg.to_dict())


def run_align(cfg: AlignConfig, *, scorer: Any = None, restart: bool = False,
              item_sources: Mapping[str, ItemSource] | None = None,
              load_judge: JudgeLoader = load_csrm_judge) -> dict[str, Any]:
    """Run or resume the loop for ``cfg``; returns the report (also written to ``output_dir/report.json``).
    A resume with settings, judge, policy or items other than the run's fingerprint raises
    :class:`InputError`; ``restart`` discards the earlier run's outputs first. ``item_sources`` reads
    ``data.source`` ``augmentation`` and ``cosalign_test``, and ``load_judge`` loads ``eval.judges``: this layer
    never imports :mod:`augmentation` or :mod:`eval`, so ``csrm align`` passes
    :data:`csrm.app.align.ITEM_SOURCES` and :func:`csrm.app.align.load_judge`."""
    return AlignRun(cfg, scorer=scorer, restart=restart, item_sources=item_sources, load_judge=load_judge).run()
