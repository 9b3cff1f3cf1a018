"""Score items with a trained rule judge: narrow, cross-encode, OR, calibrate, and name the evidence.

For one item (a policy and a transcript):

1. the policy is split into rules and the transcript into turns (:mod:`csrm.base.rule_text`); every Agent
   turn is judged (a violation can sit in any of them, not only the last), each cut into windows;
2. rules whose topic condition has not been raised by the user yet are left out
   (:mod:`csrm.model.rule.conditions`), and candidate narrowing keeps, per window, the rules worth reading
   among the rest (:mod:`csrm.model.rule.candidates`); rules that are only a length limit, an emoji ban, a
   rule about letter case, one of IFEval's format instructions or a repetition trigger ("if the user repeats the
   same message 3 times, respond with ...", checked over the conversation) are checked by code instead
   (:mod:`csrm.model.rule.code_checks`), and a turn that holds the word a conditional rule requires is not read
   against it;
3. the cross-encoder gives one logit per (rule, window) pair (:mod:`csrm.model.rule.modeling`), and each Agent
   turn that breaks a rule checked by code adds the logit :data:`COUNTED_VIOLATION`;
4. the OR (:mod:`csrm.model.rule.aggregation`) gives the item's score and the pair that drove it, the
   calibration maps it to P(violation), and the saved dev-tuned threshold gives the verdict.

A :class:`~csrm.base.score_types.ScoreItem` carries the conversation as messages and the last Agent turn as
``response``; its turns are the messages plus the response. Without a response (request screening) the last
User turn is judged in place of an Agent turn ("would an answer that does what is asked break a rule?").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from csrm.base import config as config_system
from csrm.base.errors import InputError
from csrm.base.rule_text import Rule, Turn, split_rules
from csrm.base.score_types import Evidence, ScoreItem, ScoreResult
from csrm.model.rule.aggregation import Calibration, combine
from csrm.model.rule.args import FAMILY, RuleJudgeArgs
from csrm.model.rule.candidates import select
from csrm.model.rule.code_checks import CodeCheck, parse_kept
from csrm.model.rule.code_checks import parse as parse_code_check
from csrm.model.rule.conditions import cannot_apply
from csrm.model.rule.data import preceding_user
from csrm.model.rule.letter_case import CaseRule
from csrm.model.rule.modeling import Pair, PairEncoder, pair_logits, turn_windows
from csrm.model.rule.repetition import RepetitionTrigger
from csrm.model.rule.saved import MODEL_TYPE, RuleJudgeModel
from csrm.model.sentence_embedder import Embed, SentenceEmbedder

META_FILE = "rule_judge.json"
# Judges saved before int8 scoring was removed carry this field; they load and score in float32 (their
# calibration was fitted on int8 logits, which differ by up to ~1.6 from the float ones).
LEGACY_INT8 = "int8"
# the pair logit given to an Agent turn that breaks a length limit, counted by code (csrm.model.rule.limits):
# above every logit the shipped judges give (<= ~5.5), so a counted violation drives the OR
COUNTED_VIOLATION = 8.0
_ROLES = {"user": "user", "assistant": "assistant"}


@dataclass
class Judgement:
    """One item's verdict: the OR score (a logit), P(violation), the driving pair's evidence, pair counts."""

    score: float
    p_violation: float
    evidence: Evidence | None
    pairs: int
    pairs_without_narrowing: int


def item_turns(item: ScoreItem) -> list[Turn]:
    """The turns of a ScoreItem: its user/assistant messages, then the response as an Agent turn."""
    turns = [Turn(_ROLES[m["role"]], str(m.get("content") or "")) for m in item.messages if m.get("role") in _ROLES]
    if item.response is not None:
        turns.append(Turn("assistant", item.response))
    return turns


class RulePredictor:
    """A trained rule judge (module doc). ``embed`` ``None`` turns candidate narrowing off."""

    def __init__(self, model: torch.nn.Module, encoder: PairEncoder, args: RuleJudgeArgs, *,
                 calibration: Calibration | None = None, threshold: float = 0.5, embed: Embed | None = None):
        self.model = model.eval()
        self.encoder, self.args = encoder, args
        self.calibration, self.threshold, self.embed = calibration or Calibration(), threshold, embed
        # the frozen encoder that counts repeated User turns (csrm.model.rule.repetition), loaded on first use:
        # the narrowing one when there is one
        self.similar: Embed = embed if embed is not None else SentenceEmbedder()

    @classmethod
    def from_pretrained(cls, path: str | Path, *, narrowing: bool = True, **overrides) -> RulePredictor:
        """Load a judge saved by :func:`save` (``rule_judge.json`` beside the weights, which
        :class:`~csrm.model.rule.saved.RuleJudgeModel` holds); ``overrides`` replace scoring fields of the saved
        args (e.g. ``top_k=4``)."""
        meta_path = Path(path) / META_FILE
        if not meta_path.is_file():
            raise InputError(f"not a rule judge folder (no {META_FILE})", path=str(path))
        meta = json.loads(meta_path.read_text())
        config = json.loads((Path(path) / "config.json").read_text())
        if config.get("model_type") == MODEL_TYPE:
            model = RuleJudgeModel.from_pretrained(str(path)).judge
        else:  # saved before the family was registered: the pair classifier alone (not loadable by csrm.load)
            model = AutoModelForSequenceClassification.from_pretrained(str(path))
        return cls.from_parts(model, AutoTokenizer.from_pretrained(str(path)), meta, narrowing=narrowing,
                              where=str(meta_path), **overrides)

    @classmethod
    def from_parts(cls, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, meta: dict, *,
                   narrowing: bool = True, where: str | None = None, **overrides) -> RulePredictor:
        """A judge from its pair model, tokenizer and saved metadata (``rule_judge.json``'s content: family,
        args, calibration, threshold, candidate model)."""
        if meta.get("family") != FAMILY:
            raise InputError(f"family {meta.get('family')!r} is not {FAMILY!r}", path=where, field="family")
        saved = {k: v for k, v in meta["args"].items() if k != LEGACY_INT8}
        args = config_system.build(RuleJudgeArgs, {**saved, **overrides}, path=where)
        torch.set_num_threads(args.threads)
        encoder = PairEncoder(tokenizer, max_length=args.max_length, rule_max_tokens=args.rule_max_tokens,
                              context_max_tokens=args.context_max_tokens)
        embed = SentenceEmbedder(meta.get("candidate_model", "minilm")) if narrowing else None
        return cls(model, encoder, args, calibration=Calibration(**meta["calibration"]),
                   threshold=float(meta["threshold"]), embed=embed)

    # -- pairs -----------------------------------------------------------------------------------------------
    @staticmethod
    def _judged(turns: list[Turn]) -> list[int]:
        judged = [i for i, t in enumerate(turns) if t.role == "assistant"]
        if not judged and turns:  # request screening: judge the last user turn
            judged = [max(i for i, t in enumerate(turns) if t.role == "user")] if any(
                t.role == "user" for t in turns) else []
        return judged

    def checked_by_code(self, rules: list[Rule]) -> dict[int, CodeCheck | RepetitionTrigger]:
        """The rules checked by code instead of read by the cross-encoder (:mod:`csrm.model.rule.code_checks`;
        the setting that turns them off keeps its first name, ``count_limits``, so saved judges still load)."""
        if not self.args.count_limits:
            return {}
        return {i: check for i, r in enumerate(rules) if (check := parse_code_check(r.text)) is not None}

    def kept_by_code(self, rules: list[Rule], turn: Turn) -> set[int]:
        """The rules that code sees ``turn`` keep although their condition is left to the cross-encoder: a
        required word under a condition, present in the Agent turn (:func:`~csrm.model.rule.code_checks.parse_kept`)."""
        if not self.args.count_limits or turn.role != "assistant":
            return set()
        return {i for i, r in enumerate(rules) if (check := parse_kept(r.text)) is not None and check.kept_by(turn.text)}

    def counted_violations(self, rules: list[Rule], turns: list[Turn]) -> list[tuple[int, int, str]]:
        """(rule index, turn index, what was found) of every Agent turn that breaks a rule of the policy checked
        by code, in turn order: per-turn checks read each Agent turn, a repetition trigger the whole conversation."""
        judged = [t for t in self._judged(turns) if turns[t].role == "assistant"]
        out = []
        for i, check in self.checked_by_code(rules).items():
            if isinstance(check, RepetitionTrigger):
                out += [(i, t, reason) for t, reason in check.breaches(turns, self.similar)]
            else:  # a rule on how "a conversation" starts holds its first Agent turn only
                read = judged[:1] if isinstance(check, CaseRule) and check.conversation else judged
                out += [(i, t, check.describe(turns[t].text)) for t in read if check.broken_by(turns[t].text)]
        return sorted(out, key=lambda v: (v[1], v[0]))

    def pairs_for(self, rules: list[Rule], turns: list[Turn]) -> tuple[list[Pair], int]:
        """(pairs the cross-encoder judges, pair count without narrowing) for one item. Rules counted by
        code (:meth:`checked_by_code`) are not among them."""
        judged = self._judged(turns)
        counted = set(self.checked_by_code(rules))
        texts = [r.text for r in rules]
        units, excluded = [], []  # (turn index, window index, context, window); rules that cannot apply yet
        for t in judged:
            context = preceding_user(turns, t) if turns[t].role == "assistant" else ""
            said = " ".join(turn.text for turn in turns[: t + 1] if turn.role == "user")
            gone = counted | self.kept_by_code(rules, turns[t]) | (
                {i for i, text in enumerate(texts) if cannot_apply(text, said)} if self.args.condition_gate else set())
            for w, text in enumerate(turn_windows(turns[t].text, self.args.window_chars)):
                units.append((t, w, context, text))
                excluded.append(gone)
        chosen = select(texts, [u[3] for u in units], top_k=self.args.top_k, embed=self.embed,
                        always_rules=self.args.always_rules, contexts=[u[2] for u in units], excluded=excluded)
        pairs = [Pair(texts[r], context, text, rule_index=r, turn_index=t, window_index=w)
                 for (t, w, context, text), keep in zip(units, chosen, strict=True) for r in keep]
        return pairs, len(units) * len(rules)

    # -- scoring ---------------------------------------------------------------------------------------------
    def judge_many(self, inputs: list[tuple[list[Rule], list[Turn]]]) -> list[Judgement]:
        """Judge several (rules, turns) items with one batched cross-encoder pass over all their pairs."""
        per_item = [self.pairs_for(rules, turns) for rules, turns in inputs]
        flat = [p for pairs, _ in per_item for p in pairs]
        logits = pair_logits(self.model, self.encoder, flat, batch_pairs=self.args.batch_pairs)
        out, start = [], 0
        for (rules, turns), (pairs, total) in zip(inputs, per_item, strict=True):
            counted = self.counted_violations(rules, turns)
            z = list(logits[start: start + len(pairs)]) + [COUNTED_VIOLATION] * len(counted)
            where = [(p.rule_index, p.turn_index) for p in pairs] + [(i, t) for i, t, _ in counted]
            start += len(pairs)
            score, top = combine(z, method=self.args.aggregation, tau=self.args.tau)
            p = self.calibration(score) if math.isfinite(score) else 0.0
            evidence = None
            if top >= 0:
                rule_index, turn_index = where[top]
                rule = rules[rule_index]
                reason = counted[top - len(pairs)][2] if top >= len(pairs) else ""  # a counted violation: what was counted
                evidence = Evidence(rule_number=rule.number, rule_text=rule.text, turn_index=turn_index,
                                    p_violation=self.calibration(z[top]), reason=reason)
            out.append(Judgement(score, p, evidence, len(pairs), total))
        return out

    def judge(self, policy: str, turns: list[Turn]) -> Judgement:
        return self.judge_many([(split_rules(policy), turns)])[0]

    def score_items(self, items: list[ScoreItem], *, chunk: int = 16) -> list[ScoreResult]:
        """The Scorer protocol: one ScoreResult per item, with evidence (module doc)."""
        results = []
        for start in range(0, len(items), chunk):
            part = items[start: start + chunk]
            for judgement in self.judge_many([(split_rules(it.config), item_turns(it)) for it in part]):
                p = min(max(judgement.p_violation, 1e-6), 1 - 1e-6)
                results.append(ScoreResult(p_comply=1.0 - p, reward=math.log((1.0 - p) / p),
                                           complies=p < self.threshold, threshold=self.threshold,
                                           evidence=judgement.evidence))
        return results


def save(path: str | Path, model: torch.nn.Module, encoder: PairEncoder, args: RuleJudgeArgs, *,
         calibration: Calibration, threshold: float, extra: dict | None = None) -> None:
    """The judge as a saved CSRM (``config.json`` with ``model_type: csrm_rule``: the pair model inside
    :class:`~csrm.model.rule.saved.RuleJudgeModel`, the metadata in its config), the tokenizer, and the same
    metadata as ``rule_judge.json`` (family, args, calibration, threshold, what the trainer measured) to read."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"family": FAMILY, "args": config_system.to_dict(args), "candidate_model": "minilm",
            "calibration": {"scale": calibration.scale, "bias": calibration.bias}, "threshold": threshold,
            **(extra or {})}
    RuleJudgeModel.wrap(model, meta=meta, threshold=threshold).save_pretrained(str(path))
    encoder.tokenizer.save_pretrained(str(path))
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


class RuleFamilyPredictor:
    """The rule judge behind ``csrm.load`` and :class:`csrm.scoring.scorer.Scorer` (the predictor protocol of
    :mod:`csrm.model.registry`): ``forward`` yields ``(indices, p_comply, rewards, fields)`` per chunk of items,
    ``fields`` carrying each result's ``evidence`` (the rule and turn that drove the verdict).

    Float32 on ``device`` (default: a GPU when present, as the clause family; else the CPU with 2 threads by
    default; the candidate encoder stays on the CPU); ``num_threads`` sets the judge's ``threads``, ``narrowing``
    turns candidate narrowing off, and further keywords replace saved scoring args (``top_k=8``). The
    cross-encoder's batching options have no meaning here and are refused unless unset.
    """

    def __init__(self, model: RuleJudgeModel, tokenizer: PreTrainedTokenizerBase, *, narrowing: bool = True,
                 device: str | torch.device | None = None, num_threads: int | None = None,
                 max_tokens: int | None = None, max_rows: int | None = None, bf16: bool | None = None,
                 prefix_cache: bool | None = None, chunk: int = 16, **overrides: Any):
        from csrm.model.registry import refuse_unsupported

        refuse_unsupported(FAMILY, {"max_tokens": max_tokens, "max_rows": max_rows, "bf16": bf16,
                                    "prefix_cache": prefix_cache})
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = model.to(self.device)
        meta = dict(model.config.rule_judge or {})
        if num_threads:
            overrides["threads"] = num_threads
        self.judge = RulePredictor.from_parts(model.judge, tokenizer, meta, narrowing=narrowing,
                                              where="config.json", **overrides)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_tokens, self.bf16, self.prefix_cache = None, False, False
        self.chunk = chunk

    @classmethod
    def from_pretrained(cls, path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None,
                        **options: Any) -> RuleFamilyPredictor:
        """A saved rule judge (folder or hub id); ``dtype`` must be unset (scoring is float32 on the CPU)."""
        from csrm.model.registry import refuse_unsupported

        refuse_unsupported(FAMILY, {"dtype": dtype})
        try:
            model = RuleJudgeModel.from_pretrained(str(path), trust_remote_code=trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        except OSError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"cannot load a CSRM from here: {first}", path=str(path)) from None
        return cls(model, tokenizer, **options)

    def _judgements(self, items: Sequence[ScoreItem]) -> Iterator[tuple[list[int], list[Judgement]]]:
        for start in range(0, len(items), self.chunk):
            part = items[start: start + self.chunk]
            yield (list(range(start, start + len(part))),
                   self.judge.judge_many([(split_rules(it.config), item_turns(it)) for it in part]))

    def forward(self, items: Sequence[ScoreItem]) -> Iterator[tuple[list[int], list[float], list[float], list[dict]]]:
        """Per chunk: (item indices, p_comply, rewards = log-odds of complying, one ``{"evidence": ...}`` each)."""
        for indices, judgements in self._judgements(items):
            p = [min(max(j.p_violation, 1e-6), 1 - 1e-6) for j in judgements]
            yield (indices, [1.0 - q for q in p], [math.log((1.0 - q) / q) for q in p],
                   [{"evidence": j.evidence} for j in judgements])

    def raw_outputs(self, items: Sequence[ScoreItem]) -> tuple[np.ndarray, np.ndarray]:
        """(compliance logits before calibration = minus the OR over pair logits, rewards) in input order."""
        logits, rewards = [], []
        for _, judgements in self._judgements(list(items)):
            for j in judgements:
                logits.append(-j.score)
                q = min(max(j.p_violation, 1e-6), 1 - 1e-6)
                rewards.append(math.log((1.0 - q) / q))
        return np.asarray(logits, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
