"""``csrm align RECIPE.yaml [key=value ...]``: the CoSAlign loop with the CSRM as judge.

Per round ``i`` (1..N), starting from the previous round's policy (round 1: ``policy.name_or_path``):

1. **generate**: sample ``k`` responses per training (config, prompt); the config is the system message
   (exactly the prompt DPO later trains on) -> ``round_i/generations.jsonl``;
2. **score**: the CSRM scores every response under its config -> ``round_i/scores.jsonl``;
3. **pairs**: :func:`csrm.judge.build_preference_dataset` ranks the responses by (verdict, reward) and emits
   chosen/rejected pairs -> ``round_i/pairs/`` (``Dataset.save_to_disk``);
4. **sft** (optional): ``trl.SFTTrainer`` on the chosen responses -> ``round_i/sft_policy/``;
5. **dpo**: ``trl.DPOTrainer`` with an explicit reference model (a frozen copy of the policy DPO starts
   from), ``beta``, optional LoRA (merged after training) -> ``round_i/policy/``; the policy's
   ``logp(chosen) - logp(rejected)`` on the round's pairs is measured before and after;
6. **eval** (last round, or every round with ``eval.every_round``): CoSA-Score on held-out items
   (:mod:`csrm.cosa_score`) -> ``round_i/eval.json``.

``round_i/metrics.json`` gathers each step's numbers and wall time. Before round 1 the starting policy is
evaluated (``baseline/eval.json``); at the end ``report.json`` and ``report.md`` compare before and after.

**Items**: ``data/train.jsonl`` and ``data/eval.jsonl``, written once: request-level prompts with synthesized
configs from the augmentation stage (:func:`augmentation.prompts_with_configs`, split ``train`` and
``validation``: its split rule keeps prompts and config policies disjoint), or user JSONL files.

**Resume**: every step writes its output atomically (:func:`csrm.io.atomic_path`) and then records itself in
``round_i/state.json`` (finished steps, seconds, output policy). Re-running the same command skips finished
steps, so a killed run continues at the step it was in without regenerating or re-scoring what was kept.
``out_dir/fingerprint.json`` (:meth:`AlignRun.fingerprint`, written before the first step) records what those
steps depend on: the settings of data, sampling, judging, SFT and DPO, the judge's and starting policy's
digests and the item files. A rerun with any of them changed stops with exit 2 naming what changed
(``--restart`` discards the run's outputs and starts over); ``rounds`` and ``eval.*`` may change freely.

**Distributed** (``accelerate launch -m csrm align ...`` with DeepSpeed): sampling, scoring and evaluation run
on the main process while the others wait; SFT and DPO run on every process.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from csrm.align_audit import answer_profile, judge_independently, pair_signal
from csrm.align_config import AlignConfig
from csrm.errors import InputError
from csrm.fingerprint import check_fingerprint
from csrm.io import atomic_path, iter_jsonl, write_json, write_jsonl
from csrm.paths import project_path
from csrm.records import Message, as_messages, stable_id

logger = logging.getLogger(__name__)

STEPS = ("generate", "score", "pairs", "sft", "dpo", "eval")
STATE_FILE = "state.json"
FINGERPRINT_FILE = "fingerprint.json"
# settings that change no finished step's output: later rounds and evaluation may be added on a resume
FINGERPRINT_SKIP = ("out_dir", "rounds", "eval", "logging_steps", "report_to", "judge.csrm", "judge.max_rows",
                    "judge.max_tokens")
RESTART_HINT = ("rerun with --restart to discard its finished steps and start over, or use another out_dir")


def discard_run(out: Path) -> None:
    """Remove what ``csrm align`` wrote under ``out`` (and nothing else): ``--restart``."""
    for name in ("data", "baseline", "report.json", "report.md", "align_config.json", FINGERPRINT_FILE):
        path = out / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for folder in out.glob("round_*"):
        if folder.is_dir() and folder.name[len("round_"):].isdigit():
            shutil.rmtree(folder, ignore_errors=True)


# -- distributed helpers -------------------------------------------------------------------------------
def _dist():
    """accelerate's PartialState when launched with several processes, else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from datetime import timedelta

    from accelerate import PartialState

    # the other ranks wait while the main one samples and scores: allow hours, not the default minutes
    return PartialState(timeout=timedelta(hours=int(os.environ.get("CSRM_ALIGN_BARRIER_HOURS", "6"))))


def _is_main() -> bool:
    state = _dist()
    return state is None or state.is_main_process


def _barrier() -> None:
    state = _dist()
    if state is not None:
        state.wait_for_everyone()


# -- state ---------------------------------------------------------------------------------------------
class StepState:
    """Finished steps of one folder (a round, ``baseline`` or ``data``), persisted in ``state.json``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / STATE_FILE
        self.data: dict[str, Any] = {"finished": [], "seconds": {}, "info": {}}
        if self.path.is_file():
            self.data.update(json.loads(self.path.read_text(encoding="utf-8")))

    def done(self, step: str) -> bool:
        return step in self.data["finished"]

    def finish(self, step: str, seconds: float, **info: Any) -> None:
        if step not in self.data["finished"]:
            self.data["finished"].append(step)
        self.data["seconds"][step] = round(seconds, 2)
        self.data["info"].update(info)
        if _is_main():
            write_json(self.path, self.data)

    def info(self, key: str, default: Any = None) -> Any:
        return self.data["info"].get(key, default)

    def run(self, step: str, fn: Callable[[], dict[str, Any] | None], *, main_only: bool = False) -> bool:
        """Run ``fn`` unless ``step`` is finished; ``fn`` returns info to record. True if it ran."""
        if self.done(step):
            logger.info("%s/%s: finished earlier, skipped", self.folder.name, step)
            return False
        start = time.perf_counter()
        info: dict[str, Any] | None = None
        if not main_only or _is_main():
            info = fn()
        _barrier()
        if main_only and not _is_main():  # pick up what the main process recorded
            self.__init__(self.folder)
            return True
        self.finish(step, time.perf_counter() - start, **(info or {}))
        return True


def _clean_stale(folder: Path) -> None:
    """Remove temporary outputs left by a killed step (``.name.*.tmp`` beside their final paths)."""
    if not folder.is_dir() or not _is_main():
        return
    for tmp in folder.glob(".*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


# -- items ---------------------------------------------------------------------------------------------
def _item_row(config_text: str, messages: list[Message], *, prompt_id: str = "", name: str = "",
              allow: dict[str, int] | None = None, mode: str = "", label: int = -1,
              categories: list[str] | None = None) -> dict[str, Any]:
    from csrm.thresholds import config_key

    config_id = config_key(config_text)
    prompt_id = prompt_id or stable_id(messages)
    return {"item_id": stable_id(config_id, prompt_id), "prompt_id": prompt_id, "config_id": config_id,
            "config": config_text, "config_name": name, "allow": allow, "mode": mode, "label": label,
            "categories": list(categories or []), "messages": messages}


def items_from_augmentation(cfg: AlignConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) items from the augmentation stage: splits ``train`` and ``validation``."""
    from augmentation import prompts_with_configs

    out = []
    for split in ("train", "validation"):
        pairs = prompts_with_configs(project_path(cfg.data.augment_recipe), split=split,
                                     configs_per_prompt=cfg.data.configs_per_prompt,
                                     overrides=cfg.data.augment_overrides)
        out.append([_item_row(s.config.text, as_messages(r.messages), prompt_id=r.prompt_id, name=s.config.name,
                              allow=s.config.allow, mode=s.mode, label=s.label, categories=list(r.categories))
                    for r, s in pairs])
    return out[0], out[1]


ALIGN_ITEM_FIELDS = ("id", "config", "prompt", "messages", "prompt_id", "label", "categories")


def items_from_file(path: str) -> list[dict]:
    """Items from JSONL: ``config`` (text, or ``{name, text, allow}``) and ``prompt`` or ``messages``, plus
    optional ``id``, ``prompt_id``, ``label``, ``categories``; checked by :mod:`csrm.validation` (unknown
    fields, categories and lone surrogates are errors naming file, line and field)."""
    from csrm.safety_config import SafetyConfig
    from csrm.text import check_strings
    from csrm.validation import check_fields, parse_config

    rows = []
    for line, obj in iter_jsonl(path):
        check_fields(obj, ALIGN_ITEM_FIELDS, path=path, line=line)
        if obj.get("config") is None:
            raise InputError("needs a config (text or {name, text, allow})", path=path, line=line, field="config")
        parsed = parse_config(obj["config"], path=path, line=line)
        config = parsed if isinstance(parsed, SafetyConfig) else SafetyConfig(text=parsed)
        prompt = obj.get("messages") if obj.get("messages") is not None else obj.get("prompt")
        if not prompt:
            raise InputError("needs a prompt or messages", path=path, line=line, field="prompt")
        try:
            messages = as_messages(prompt)
        except (ValueError, TypeError, AttributeError) as err:
            raise InputError(str(err), path=path, line=line, field="messages") from None
        check_strings(messages, "messages", path=path, line=line)
        rows.append(_item_row(config.render(), messages, prompt_id=str(obj.get("prompt_id") or ""),
                              name=config.name, allow=config.allow, label=int(obj.get("label", -1)),
                              categories=list(obj.get("categories") or [])))
    return rows


def _subsample(rows: list[dict], n: int, seed: int) -> list[dict]:
    rows = sorted(rows, key=lambda r: r["item_id"])
    random.Random(seed).shuffle(rows)
    return rows if n <= 0 else rows[:n]


def cosalign_data_dir(cfg: AlignConfig) -> Path:
    """``data.data_dir``, else the shared data folder ($CSRM_DATA_DIR or ../shared/data)."""
    from csrm.paths import data_dir

    return Path(cfg.data.data_dir) if cfg.data.data_dir else data_dir()


def items_from_cosalign_test(cfg: AlignConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) items in CoSAlign's construction (:func:`eval.benchmarks.cosalign_test.alignment_items`):
    ``train_items`` counts items, taken as whole contrast pairs (the same prompt under a config that allows
    it and one that does not); the held-out unseen-config items are drawn evenly from each (config,
    situation) stratum."""
    from eval.benchmarks.cosalign_test import alignment_items

    train_rows, eval_rows = alignment_items(cosalign_data_dir(cfg), seed=cfg.data.seed)

    def as_item(row: dict) -> dict:
        return _item_row(row["config"], as_messages(row["prompt"]), name=row["config_name"], allow=row["allow"],
                         mode=f"situation {row['situation']}", label=row["label"], categories=row["categories"])

    by_prompt: dict[str, list[dict]] = {}
    for row in train_rows:
        by_prompt.setdefault(row["prompt"], []).append(row)
    prompts = list(by_prompt)[:cfg.data.train_items // 2] if cfg.data.train_items > 0 else list(by_prompt)
    train = [as_item(row) for prompt in prompts for row in by_prompt[prompt]]
    strata: dict[tuple, list[dict]] = {}
    for row in eval_rows:
        strata.setdefault((row["config_name"], row["situation"]), []).append(row)
    per_stratum = -(-cfg.data.eval_items // len(strata)) if cfg.data.eval_items > 0 else None
    held_out = [as_item(row) for key in sorted(strata) for row in strata[key][:per_stratum]]
    return train, held_out


def prepare_items(cfg: AlignConfig, folder: Path) -> dict[str, Any]:
    """Write ``data/train.jsonl`` and ``data/eval.jsonl`` and return a summary (overlap counts included)."""
    if cfg.data.source == "cosalign_test":
        train, held_out = items_from_cosalign_test(cfg)
    elif cfg.data.source == "augmentation":
        train, held_out = items_from_augmentation(cfg)
    else:
        train = items_from_file(cfg.data.train_file)
        held_out = items_from_file(cfg.data.eval_file) if cfg.data.eval_file else []
    if cfg.data.source != "cosalign_test":  # that source draws its own (contrast pairs, strata)
        train = _subsample(train, cfg.data.train_items, cfg.data.seed)
        held_out = _subsample(held_out, cfg.data.eval_items, cfg.data.seed + 1)
    if not train:
        raise InputError("no training items", field="data")
    shared_prompts = {r["prompt_id"] for r in train} & {r["prompt_id"] for r in held_out}
    shared_configs = {r["config_id"] for r in train} & {r["config_id"] for r in held_out}
    if shared_prompts or shared_configs:
        logger.warning("held-out items share %d prompts and %d configs with training items",
                       len(shared_prompts), len(shared_configs))
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "eval.jsonl", held_out)
    return {"train_items": len(train), "eval_items": len(held_out), "shared_prompts": len(shared_prompts),
            "shared_configs": len(shared_configs), "train_configs": len({r["config_id"] for r in train}),
            "eval_configs": len({r["config_id"] for r in held_out})}


def read_items(path: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)] if path.is_file() else []


def prompt_messages(item: dict) -> list[Message]:
    """The conversation the policy answers: the config as system message (csrm.judge's layout)."""
    from csrm.judge import _prompt_messages

    return _prompt_messages(item["config"], item["messages"])


# -- scorer --------------------------------------------------------------------------------------------
DEFAULT_CSRM_PATHS = ("runs/csrm-minilm", "runs/train/latest")


def default_csrm_path(cfg: AlignConfig) -> str:
    """``judge.csrm``, else ``$CSRM_MODEL``, else the first existing of :data:`DEFAULT_CSRM_PATHS`
    (``runs/csrm-minilm`` is where ``configs/train/minilm_cpu.yaml`` saves)."""
    import os

    path = cfg.judge.csrm or os.environ.get("CSRM_MODEL") or ""
    if path:
        return path
    for candidate in DEFAULT_CSRM_PATHS:
        if Path(candidate).exists():
            return candidate
    raise InputError("no CSRM given and none found at " + ", ".join(DEFAULT_CSRM_PATHS) + ": train one with "
                     "`csrm train configs/train/minilm_cpu.yaml` or pass judge.csrm=PATH (or set $CSRM_MODEL)",
                     field="judge.csrm")


class ReplayScorer:
    """Answers :func:`csrm.judge.build_preference_dataset` from stored scores (configs already rendered)."""

    def __init__(self, results: dict[tuple, Any]):
        self.results = results

    @staticmethod
    def key(config: str, messages: list[Message], response: str | None) -> tuple:
        return config, json.dumps(messages, sort_keys=True), response

    def render(self, config: str) -> str:
        return config

    def threshold_for(self, config: str) -> float:
        return 0.5  # unused: stored results carry their own verdicts and thresholds

    def score_items(self, items, thresholds=None):
        return [self.results[self.key(i.config, i.messages, i.response)] for i in items]


# -- the loop ------------------------------------------------------------------------------------------
class AlignRun:
    """One ``csrm align`` run over an output folder (see the module doc)."""

    def __init__(self, cfg: AlignConfig, *, scorer: Any = None, restart: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self._scorer = scorer
        self.restart = restart
        self.timings: dict[str, dict[str, float]] = {}

    # -- shared resources ------------------------------------------------------------------------------
    @property
    def scorer(self):
        if self._scorer is None:
            from csrm.policy import pick_device
            from csrm.scoring import load

            self._scorer = load(default_csrm_path(self.cfg), device=pick_device(self.cfg.device),
                                max_rows=self.cfg.judge.max_rows, max_tokens=self.cfg.judge.max_tokens)
        return self._scorer

    def start_policy(self) -> str:
        from csrm.policy import resolve_policy

        return resolve_policy(self.cfg.policy.name_or_path, self.cfg.policy.gguf_file)

    def load_policy(self, path: str):
        from csrm.policy import load_policy

        p = self.cfg.policy
        return load_policy(path, dtype=p.dtype, device=self.cfg.device, chat_template=p.chat_template,
                           trust_remote_code=p.trust_remote_code)

    # -- entry -----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.restart and _is_main():
            discard_run(self.out)
        _barrier()
        self.out.mkdir(parents=True, exist_ok=True)
        check_fingerprint(self.out / FINGERPRINT_FILE, self.fingerprint(), partial=self.out / "data" / STATE_FILE,
                          what=f"the run in {self.out}", restart_hint=RESTART_HINT, write=_is_main())
        self._record_config()
        data_state = StepState(self.out / "data")
        data_state.run("items", lambda: prepare_items(cfg, self.out / "data"), main_only=True)
        self.train_items = read_items(self.out / "data" / "train.jsonl")
        self.eval_items = read_items(self.out / "data" / "eval.jsonl")
        policy = self.start_policy() if _is_main() else None
        _barrier()
        policy = policy or self.start_policy()
        baseline = None
        if cfg.eval.enabled and self.eval_items:
            folder = self.out / "baseline"
            state = StepState(folder)
            state.run("eval", lambda: self.step_eval(folder, policy), main_only=True)
            baseline = self._read_json(folder / "eval.json")
            self.timings["baseline"] = state.data["seconds"]
        last_eval = None
        for index in range(1, cfg.rounds + 1):
            policy, round_eval = self.run_round(index, policy, last=index == cfg.rounds)
            last_eval = round_eval or last_eval
        return self._report(baseline, last_eval, policy)

    def fingerprint(self) -> dict[str, Any]:
        """What the finished steps depend on (:mod:`csrm.fingerprint`): the settings of data, sampling,
        judging, SFT and DPO (not ``rounds``, ``eval.*``, logging or batch sizes of the judge), the judge
        model's and the starting policy's digests, and the item files (or augmentation recipe)."""
        from csrm.fingerprint import file_digest, model_digest, tensors_digest

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
            folder = cosalign_data_dir(self.cfg) / "cosalign_test"
            files = [str(folder / f"cosalign_test_{s}.jsonl") for s in ("seen", "unseen")]
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
        if _is_main():
            write_json(path, current)

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def run_round(self, index: int, start: str, *, last: bool) -> tuple[str, dict | None]:
        """Run (or resume) round ``index`` from policy ``start``; returns (its policy, its eval or None)."""
        cfg, folder = self.cfg, self.out / f"round_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        _clean_stale(folder)
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
            round_eval = self._read_json(folder / "eval.json")
        # a round that is not evaluated leaves "eval" unfinished, so a later run with fewer rounds (or
        # eval.every_round) still evaluates it on resume
        self.timings[folder.name] = state.data["seconds"]
        if _is_main():
            self._write_round_metrics(folder, state, round_eval)
        return policy, round_eval

    # -- steps -----------------------------------------------------------------------------------------
    def step_generate(self, folder: Path, policy_path: str, seed: int) -> dict[str, Any]:
        from csrm.cosa_score import is_refusal
        from csrm.policy import SamplingParams

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
        from csrm.policy import generate, generate_vllm, load_tokenizer, vllm_available

        backend = self.cfg.sampling.backend
        if backend == "vllm" or (backend == "auto" and vllm_available() and self.cfg.device != "cpu"):
            p = self.cfg.policy
            tokenizer = load_tokenizer(policy_path, chat_template=p.chat_template,
                                       trust_remote_code=p.trust_remote_code)
            return generate_vllm(policy_path, tokenizer, conversations, params, dtype=p.dtype)
        model, tokenizer = self.load_policy(policy_path)
        try:
            return generate(model, tokenizer, conversations, params, desc=desc)
        finally:
            del model
            _free_memory()

    def step_score(self, folder: Path) -> dict[str, Any]:
        from csrm.score_types import ScoreItem

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
        from csrm.judge import JudgeInput, build_preference_dataset
        from csrm.score_types import ScoreResult

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
            dataset.save_to_disk(str(tmp))
        return pair_signal(dataset, rows, scores, refusal=self.cfg.eval.refusal_anchor)

    def _load_pairs(self, folder: Path):
        from datasets import load_from_disk

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
        if _is_main():
            write_json(folder / "dpo_metrics.json", result)
        return {"policy": str(folder / "policy"),
                **{k: v for k, v in result.items() if k != "log_history"}}

    def step_eval(self, folder: Path, policy_path: str) -> dict[str, Any]:
        from csrm.cosa_score import CoSASettings, EvalItem, evaluate_answers
        from csrm.policy import SamplingParams

        e = self.cfg.eval
        params = SamplingParams(n=1, max_new_tokens=e.max_new_tokens, temperature=self.cfg.sampling.temperature,
                                top_p=self.cfg.sampling.top_p, do_sample=e.do_sample, batch_size=e.batch_size,
                                seed=self.cfg.seed)
        conversations = [prompt_messages(item) for item in self.eval_items]
        answers = [group[0] for group in self._sample(policy_path, conversations, params,
                                                      desc=f"{folder.name} eval")]
        items = [EvalItem(i["config"], i["messages"], i["config_id"], i["prompt_id"], i["item_id"],
                          int(i.get("label", -1))) for i in self.eval_items]
        settings = CoSASettings(e.helpfulness_config, e.reward_scale, e.helpful_threshold, e.refusal_anchor)
        result = evaluate_answers(self.scorer, items, answers, settings)
        result["policy"] = policy_path
        result["independent"] = judge_independently(e.judges, items, answers, settings, result["judgements"],
                                                    dev=self.dev_requests(), device=self.cfg.device)
        write_json(folder / "eval.json", result)
        overall = result["metrics"]["overall"]
        self._log_cosa(folder, result["metrics"])
        return {"cosa_score": overall.get("cosa_score"), "violation_rate": overall.get("violation_rate"),
                **{f"cosa_score[{name}]": r["metrics"]["overall"].get("cosa_score")
                   for name, r in result["independent"].items()}}

    def dev_requests(self, limit: int = 200) -> list[tuple[Any, int]]:
        """Labelled training requests (config, prompt, no response) on which uncalibrated independent judges
        fit their threshold: training items are never evaluated, so nothing reported is fitted on."""
        from csrm.score_types import ScoreItem

        rows = [i for i in self.train_items if i.get("label", -1) in (0, 1)][:limit]
        return [(ScoreItem(i["config"], i["messages"], None), int(i["label"])) for i in rows]

    def _log_cosa(self, folder: Path, metrics: dict[str, Any]) -> None:
        """CoSA-Score of this policy to wandb when ``report_to`` includes it: the overall rates, a per-config
        table and a per-config bar chart (``cosa_by_config.png``, also kept beside ``eval.json``)."""
        from csrm.tracking import log_results, wants_wandb

        if not wants_wandb(self.cfg.report_to):
            return
        from csrm.cosa_score import METRICS
        from csrm.plots import plot_bars

        names = {i["config_id"]: f"{i.get('config_name') or 'config'} {i['config_id'][:6]}" for i in self.eval_items}
        per_config = metrics["per_config"]
        plot = plot_bars(folder / "cosa_by_config.png",
                         {_short(names.get(c, c)): m["cosa_score"] for c, m in per_config.items()},
                         ylabel="CoSA-Score", title=f"{folder.name}: CoSA-Score per config", xlim=(-1, 1))
        rows = [[names.get(c, c), m.get("n"), *(m.get(k) for k in METRICS)] for c, m in per_config.items()]
        log_results(self.cfg.report_to, job_type="cosa_score", name=f"{self.out.name} {folder.name}",
                    metrics={folder.name: metrics["overall"]}, images={"by_config": plot},
                    tables={"per_config": (["config", "n", *METRICS], rows)}, config=self.cfg.to_dict())

    # -- reports ---------------------------------------------------------------------------------------
    def _write_round_metrics(self, folder: Path, state: StepState, round_eval: dict | None) -> None:
        metrics = {"round": folder.name, "seconds": state.data["seconds"], **state.data["info"]}
        if round_eval is not None:
            metrics["eval"] = round_eval["metrics"]["overall"]
        write_json(folder / "metrics.json", metrics)

    def _report(self, baseline: dict | None, final: dict | None, policy: str) -> dict[str, Any]:
        from csrm.cosa_score import compare, render_markdown

        rounds = [self._read_json(self.out / f"round_{i}" / "metrics.json") or {} for i in range(1, self.cfg.rounds + 1)]
        report: dict[str, Any] = {"final_policy": policy, "rounds": rounds,
                                  "seconds": {k: v for k, v in self._all_timings().items()}}
        extra = ""
        if baseline is not None and final is not None:
            comparison = compare(baseline["metrics"], final["metrics"])
            report["comparison"] = comparison
            names = {i["config_id"]: f"{i.get('config_name') or 'config'} {i['config_id'][:6]}" for i in self.eval_items}
            lines = ["## Rounds", "", "Compliance pairs: the chosen response complies and the rejected one violates "
                     "(by the training judge's verdict); refusal chosen / rejected: pairs with the refusal candidate.",
                     "", "| round | pairs | compliance pairs | refusal chosen | refusal rejected | logp margin before "
                     "| after | DPO loss |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for m in rounds:
                lines.append(f"| {m.get('round')} | {m.get('pairs', 0)} | {m.get('compliance_pairs', 0)} "
                             f"| {m.get('refusal_chosen_pairs', 0)} | {m.get('refusal_rejected_pairs', 0)} "
                             f"| {_fmt(m.get('logp_margin_before'))} "
                             f"| {_fmt(m.get('logp_margin_after'))} | {_fmt(m.get('train_loss'))} |")
            lines += ["", "## Wall time (s)", "", "| stage | " + " | ".join(STEPS) + " |",
                      "|---|" + "---:|" * len(STEPS)]
            for stage, seconds in report["seconds"].items():
                lines.append(f"| {stage} | " + " | ".join(_fmt(seconds.get(s), 1) for s in STEPS) + " |")
            report["answer_profile"] = {"before": answer_profile(baseline["judgements"]),
                                        "after": answer_profile(final["judgements"])}
            lines += judges_table(baseline, final) + profile_table(report["answer_profile"])
            report["judges"] = {name: compare(baseline["independent"][name]["metrics"],
                                              final["independent"][name]["metrics"])["overall"]
                                for name in final.get("independent", {}) if name in baseline.get("independent", {})}
            extra = "\n".join(lines)
            markdown = render_markdown(comparison, config_names={k: _short(v) for k, v in names.items()}, extra=extra)
            if _is_main():
                (self.out / "report.md").write_text(markdown, encoding="utf-8")
        if _is_main():
            write_json(self.out / "report.json", report)
        return report

    def _all_timings(self) -> dict[str, dict[str, float]]:
        out = {}
        for name in ["baseline"] + [f"round_{i}" for i in range(1, self.cfg.rounds + 1)]:
            state = self.out / name / STATE_FILE
            if state.is_file():
                out[name] = json.loads(state.read_text(encoding="utf-8"))["seconds"]
        return out


JUDGE_COLUMNS = (("cosa_score", "CoSA-Score"), ("violation_rate_disallowed", "violations on disallowed"),
                 ("refusal_rate_allowed", "refusals on allowed"), ("helpful_compliant_rate", "helpful+compliant"))


def judges_table(baseline: dict, final: dict) -> list[str]:
    """Before -> after of the training judge and of every independent judge, side by side (Markdown)."""
    header = "| judge | " + " | ".join(f"{title} before → after" for _, title in JUDGE_COLUMNS) + " | agreement |"
    lines = ["", "## Judged independently", "", "The training judge built the pairs; the others never did. "
             "Agreement = share of answers (before, after) on whose verdict a judge agrees with the training judge.",
             "", header, "|---|" + "---:|" * (len(JUDGE_COLUMNS) + 1)]
    rows = [("training judge (built the pairs)", baseline["metrics"], final["metrics"], None)]
    for name, after in final.get("independent", {}).items():
        before = baseline.get("independent", {}).get(name)
        if before is not None:
            rows.append((name, before["metrics"], after["metrics"], (before["agreement"], after["agreement"])))
    for name, before, after, agreement in rows:
        cells = []
        for key, _ in JUDGE_COLUMNS:
            b, a = before["overall"].get(key), after["overall"].get(key)
            delta = f" ({a - b:+.3f})" if a is not None and b is not None else ""
            cells.append(f"{_fmt(b)} → {_fmt(a)}{delta}")
        agree = "–" if agreement is None else f"{agreement[0]:.2f}, {agreement[1]:.2f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {agree} |")
    for name, after in final.get("independent", {}).items():
        if "threshold" in after:
            lines.append(f"\n{name}: verdict threshold {after['threshold']:.3f} on P(violation), fitted on "
                         f"{after['dev_n']} labelled training requests (its AUROC there: {after['dev_auroc']:.3f}).")
    return lines


def profile_table(profiles: dict[str, dict]) -> list[str]:
    """The reward-hacking check (:func:`csrm.align_audit.answer_profile`) before and after, as Markdown."""
    lines = ["", "## Reward-hacking check: top-rewarded answers vs all", "",
             "| answers | n | mean chars | refusal rate | repetition rate | most common opening (share) |",
             "|---|---:|---:|---:|---:|---|"]
    for when, profile in profiles.items():
        for part in ("all", "top"):
            p = profile[part]
            lines.append(f"| {when}, {'top 10% by reward' if part == 'top' else 'all'} | {p['n']} "
                         f"| {p['mean_chars']:.0f} | {p['refusal_rate']:.2f} | {p['repetition_rate']:.2f} "
                         f"| \"{p['top_opening']}\" ({p['top_opening_share']:.2f}) |")
    return lines


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- training (SFT, DPO) -------------------------------------------------------------------------------
def _use_cpu(cfg: AlignConfig) -> bool:
    import torch

    return cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())


def _trainer_args(cfg: AlignConfig, cls: type, output_dir: Path, *, learning_rate: float, epochs: float,
                  batch_size: int, grad_accum: int, seed: int, **extra: Any):
    """TRL config with this project's conventions (no checkpoints, explicit CPU/bf16, optional DeepSpeed)."""
    import dataclasses

    checkpointing = bool(extra.pop("checkpointing", False))
    if any(f.name == "activation_checkpointing" for f in dataclasses.fields(cls)):  # transformers >= 5.x rename
        extra.update(activation_checkpointing=checkpointing, gradient_checkpointing=None)
    else:
        extra.update(gradient_checkpointing=checkpointing)
    return cls(output_dir=str(output_dir), learning_rate=learning_rate, num_train_epochs=epochs,
               per_device_train_batch_size=batch_size, gradient_accumulation_steps=grad_accum,
               logging_steps=cfg.logging_steps, save_strategy="no", report_to=cfg.report_to, seed=seed,
               use_cpu=_use_cpu(cfg), bf16=cfg.bf16, fp16=False, deepspeed=cfg.deepspeed or None,
               dataloader_num_workers=0, **extra)


def _lora_config(cfg: AlignConfig, model=None):
    """peft LoraConfig from the recipe; ``last_layers`` restricts it to the model's top layers."""
    lora = cfg.dpo.lora
    if not lora.enabled:
        return None
    from peft import LoraConfig

    targets: Any = lora.target_modules
    extra: dict[str, Any] = {}
    if lora.last_layers > 0 and model is not None:
        layers = int(model.config.get_text_config().num_hidden_layers)
        extra["layers_to_transform"] = list(range(max(0, layers - lora.last_layers), layers))
        if targets == ["all-linear"]:  # peft needs explicit names with layers_to_transform
            targets = sorted(_linear_names(model))
    elif targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      task_type="CAUSAL_LM", **extra)


def _linear_names(model) -> set[str]:
    """Leaf names of the linear layers inside the transformer blocks (not the LM head or embeddings)."""
    import torch

    output = model.get_output_embeddings()
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not output and ".layers." in f".{name}"}


def _load_for_training(cfg: AlignConfig, path: str):
    from transformers import AutoModelForCausalLM

    from csrm.policy import DTYPES, load_tokenizer

    p = cfg.policy
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[p.dtype], trust_remote_code=p.trust_remote_code)
    tokenizer = load_tokenizer(path, chat_template=p.chat_template, trust_remote_code=p.trust_remote_code)
    return model, tokenizer


def _save_trained(trainer, tokenizer, dest: Path, *, base: str, cfg: AlignConfig) -> None:
    """Save the trained policy as a plain checkpoint (LoRA merged), atomically, from the main process."""
    from csrm.policy import save_policy

    if not trainer.is_deepspeed_enabled:
        if _is_main():
            save_policy(trainer.model, tokenizer, dest)
        _barrier()
        return
    staging = dest.parent / f".{dest.name}.deepspeed.tmp"
    trainer.save_model(str(staging))  # gathers ZeRO-3 shards (needs stage3_gather_16bit_weights_on_model_save)
    _release_deepspeed()  # plain from_pretrained from here on (merging, and the next round's sampling)
    if _is_main():
        if cfg.dpo.lora.enabled:
            from peft import PeftModel

            model, _ = _load_for_training(cfg, base)
            save_policy(PeftModel.from_pretrained(model, str(staging)), tokenizer, dest)
            shutil.rmtree(staging, ignore_errors=True)
        else:
            tokenizer.save_pretrained(str(staging))
            (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; the policy folder needs none
            with atomic_path(dest, is_dir=True) as tmp:
                shutil.rmtree(tmp)
                staging.rename(tmp)
    _barrier()


def _release_deepspeed() -> None:
    """Forget the trainer's global ZeRO-3 config: while it is set, every ``from_pretrained`` (the next round's
    sampling policy, the evaluation policy) would be partitioned by ``zero.Init``."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def _train_summary(trainer, output) -> dict[str, Any]:
    history = [dict(h) for h in trainer.state.log_history]
    logs = [h for h in history if "loss" in h]
    summary: dict[str, Any] = {"train_loss": float(output.training_loss), "steps": int(trainer.state.global_step),
                               "log_history": history}
    if logs:
        for key in ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"):
            if key in logs[-1]:
                summary["last_" + key.replace("/", "_")] = float(logs[-1][key])
    return summary


def run_sft(cfg: AlignConfig, pairs, start: str, dest: Path, *, seed: int) -> dict[str, Any]:
    """SFT (trl.SFTTrainer, completion-only loss) on the best chosen response of each (config, prompt)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    best: dict[str, dict] = {}
    for row in pairs:
        key = row["prompt_id"]
        if key not in best or row["chosen_reward"] > best[key]["chosen_reward"]:
            best[key] = row
    data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["chosen"]} for r in best.values()])
    s = cfg.sft
    args = _trainer_args(cfg, SFTConfig, dest.parent / "_sft_trainer", learning_rate=s.learning_rate,
                         epochs=s.epochs, batch_size=s.batch_size, grad_accum=s.grad_accum, seed=seed,
                         max_length=s.max_length, packing=False, checkpointing=cfg.dpo.gradient_checkpointing)
    model, tokenizer = _load_for_training(cfg, start)  # after the args: ZeRO-3 shards at load
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=_lora_config(cfg, model))
    output = trainer.train()
    _save_trained(trainer, tokenizer, dest, base=start, cfg=cfg)
    summary = _train_summary(trainer, output)
    shutil.rmtree(dest.parent / "_sft_trainer", ignore_errors=True)
    return {"sft_examples": len(data), "sft_loss": summary["train_loss"], "sft_steps": summary["steps"]}


def pair_margins(model, tokenizer, pairs, *, max_length: int | None = None, batch_size: int = 8) -> list[float]:
    """``logp(chosen) - logp(rejected)`` under ``model`` for each pair (conversational TRL rows)."""
    from csrm.policy import completion_logps

    prompts = [row["prompt"] for row in pairs]
    chosen = completion_logps(model, tokenizer, prompts, [row["chosen"][0]["content"] for row in pairs],
                              batch_size=batch_size, max_length=max_length)
    rejected = completion_logps(model, tokenizer, prompts, [row["rejected"][0]["content"] for row in pairs],
                                batch_size=batch_size, max_length=max_length)
    return [c - r for c, r in zip(chosen, rejected, strict=True)]


def run_dpo(cfg: AlignConfig, pairs, start: str, dest: Path, *, seed: int) -> dict[str, Any]:
    """trl.DPOTrainer from ``start`` with a frozen copy of ``start`` as the reference; saves to ``dest``.

    Returns the training summary plus the mean ``logp(chosen) - logp(rejected)`` on (up to
    ``dpo.margin_pairs`` of) the pairs before and after training, and the implied DPO reward margin
    ``beta * (after - before)`` (the reference is the starting policy).
    """
    from trl import DPOConfig, DPOTrainer

    d = cfg.dpo
    args = _trainer_args(cfg, DPOConfig, dest.parent / "_dpo_trainer", learning_rate=d.learning_rate,
                         epochs=d.epochs, batch_size=d.batch_size, grad_accum=d.grad_accum, seed=seed,
                         beta=d.beta, max_length=d.max_length, loss_type=[d.loss_type],
                         checkpointing=d.gradient_checkpointing, warmup_steps=d.warmup_ratio,
                         weight_decay=d.weight_decay)
    model, tokenizer = _load_for_training(cfg, start)  # after the args: ZeRO-3 shards at load
    ref_model, _ = _load_for_training(cfg, start)
    ref_model.requires_grad_(False).eval()
    measure = not args.deepspeed and _is_main()
    subset = pairs.select(range(min(len(pairs), d.margin_pairs or len(pairs))))
    before: list[float] = []
    if measure:
        ref_model.to(args.device)
        before = pair_margins(ref_model, tokenizer, subset, max_length=d.max_length)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=pairs,
                         processing_class=tokenizer, peft_config=_lora_config(cfg, model))
    output = trainer.train()
    summary = _train_summary(trainer, output)
    if measure:
        after = pair_margins(trainer.model, tokenizer, subset, max_length=d.max_length)
        mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
        summary.update(logp_margin_before=mean_before, logp_margin_after=mean_after,
                       implicit_reward_margin=d.beta * (mean_after - mean_before),
                       margin_improved_fraction=sum(a > b for a, b in zip(after, before, strict=True)) / len(after),
                       margin_pairs=len(after))
    _save_trained(trainer, tokenizer, dest, base=start, cfg=cfg)
    shutil.rmtree(dest.parent / "_dpo_trainer", ignore_errors=True)
    summary["dpo_pairs"] = len(pairs)
    del trainer, model, ref_model
    _free_memory()
    return summary


def run_align(cfg: AlignConfig, *, scorer: Any = None, restart: bool = False) -> dict[str, Any]:
    """Run or resume the loop for ``cfg``; returns the report (also written to ``out_dir/report.json``).
    A resume with settings, judge, policy or items other than the run's fingerprint raises
    :class:`InputError`; ``restart`` discards the earlier run's outputs first."""
    return AlignRun(cfg, scorer=scorer, restart=restart).run()


# -- command line --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csrm align", description="CoSAlign loop: sample from a policy, judge with the CSRM, train with DPO.",
        epilog="Re-running the same command resumes at the last finished step. Keys: csrm align --keys")
    parser.add_argument("recipe", nargs="?", help="YAML recipe (configs/align/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, dotted (dpo.beta=0.2 rounds=1)")
    parser.add_argument("--keys", action="store_true", help="list every recipe key with its default and help")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--restart", action="store_true",
                        help="discard the finished steps of an earlier run in out_dir (needed when the judge, "
                             "policy, items or settings changed since) and start over")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.keys:
        print(AlignConfig.help())
        return 0
    recipe, overrides = args.recipe, list(args.overrides)
    if recipe and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        recipe, overrides = None, [recipe, *overrides]
    cfg = AlignConfig.load(recipe, overrides)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run_align(cfg, restart=args.restart)
    comparison = report.get("comparison", {}).get("overall", {})
    if comparison and _is_main():
        print(f"CoSA-Score {comparison['cosa_score']['before']:.3f} -> {comparison['cosa_score']['after']:.3f}; "
              f"violation rate {comparison['violation_rate']['before']:.3f} -> "
              f"{comparison['violation_rate']['after']:.3f}; report: {Path(cfg.out_dir) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
