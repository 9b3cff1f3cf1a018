"""Score items with a trained rule judge: narrow, cross-encode, OR, calibrate, and name the evidence.

For one item (a policy and a transcript):

1. the policy is split into rules and the transcript into turns (:mod:`csrm.base.rule_text`); every Agent
   turn is judged (a violation can sit in any of them, not only the last), each cut into windows;
2. candidate narrowing keeps, per window, the rules worth reading (:mod:`csrm.model.rule.candidates`);
3. the cross-encoder gives one logit per (rule, window) pair (:mod:`csrm.model.rule.modeling`);
4. the OR (:mod:`csrm.model.rule.aggregation`) gives the item's score and the pair that drove it, the
   calibration maps it to P(violation), and the saved dev-tuned threshold gives the verdict.

A :class:`~csrm.base.score_types.ScoreItem` carries the conversation as messages and the last Agent turn as
``response``; its turns are the messages plus the response. Without a response (request screening) the last
User turn is judged in place of an Agent turn ("would an answer that does what is asked break a rule?").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from csrm.base import config as config_system
from csrm.base.errors import InputError
from csrm.base.rule_text import Rule, Turn, split_rules
from csrm.base.score_types import Evidence, ScoreItem, ScoreResult
from csrm.base.text import windows as cut_windows
from csrm.model.rule.aggregation import Calibration, combine
from csrm.model.rule.args import FAMILY, RuleJudgeArgs
from csrm.model.rule.candidates import Embed, SentenceEmbedder, select
from csrm.model.rule.data import preceding_user
from csrm.model.rule.modeling import Pair, PairEncoder, load_backbone, pair_logits, quantize_int8

META_FILE = "rule_judge.json"
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
        self.float_model = model.eval()
        self.model = quantize_int8(self.float_model) if args.int8 else self.float_model
        self.encoder, self.args = encoder, args
        self.calibration, self.threshold, self.embed = calibration or Calibration(), threshold, embed

    @classmethod
    def from_pretrained(cls, path: str | Path, *, narrowing: bool = True, **overrides) -> RulePredictor:
        """Load a judge saved by :func:`save` (``rule_judge.json`` beside the transformers weights);
        ``overrides`` replace scoring fields of the saved args (e.g. ``top_k=4``)."""
        meta_path = Path(path) / META_FILE
        if not meta_path.is_file():
            raise InputError(f"not a rule judge folder (no {META_FILE})", path=str(path))
        meta = json.loads(meta_path.read_text())
        if meta.get("family") != FAMILY:
            raise InputError(f"family {meta.get('family')!r} is not {FAMILY!r}", path=str(meta_path),
                             field="family")
        args = config_system.build(RuleJudgeArgs, {**meta["args"], **overrides}, path=str(meta_path))
        torch.set_num_threads(args.threads)
        tokenizer, model = load_backbone(str(path))
        encoder = PairEncoder(tokenizer, max_length=args.max_length, rule_max_tokens=args.rule_max_tokens,
                              context_max_tokens=args.context_max_tokens)
        embed = SentenceEmbedder(meta.get("candidate_model", "minilm")) if narrowing else None
        return cls(model, encoder, args, calibration=Calibration(**meta["calibration"]),
                   threshold=float(meta["threshold"]), embed=embed)

    # -- pairs -----------------------------------------------------------------------------------------------
    def pairs_for(self, rules: list[Rule], turns: list[Turn]) -> tuple[list[Pair], int]:
        """(pairs the cross-encoder judges, pair count without narrowing) for one item."""
        judged = [i for i, t in enumerate(turns) if t.role == "assistant"]
        if not judged and turns:  # request screening: judge the last user turn
            judged = [max(i for i, t in enumerate(turns) if t.role == "user")] if any(
                t.role == "user" for t in turns) else []
        units = []  # (turn index, window index, context, window)
        for t in judged:
            context = preceding_user(turns, t) if turns[t].role == "assistant" else ""
            for w, text in enumerate(cut_windows(turns[t].text, self.args.window_chars) or [""]):
                units.append((t, w, context, text))
        texts = [r.text for r in rules]
        chosen = select(texts, [u[3] for u in units], top_k=self.args.top_k, embed=self.embed,
                        always_rules=self.args.always_rules, contexts=[u[2] for u in units])
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
        for (rules, _), (pairs, total) in zip(inputs, per_item, strict=True):
            z = logits[start: start + len(pairs)]
            start += len(pairs)
            score, top = combine(z, method=self.args.aggregation, tau=self.args.tau)
            p = self.calibration(score) if math.isfinite(score) else 0.0
            evidence = None
            if top >= 0:
                pair = pairs[top]
                rule = rules[pair.rule_index]
                evidence = Evidence(rule_number=rule.number, rule_text=rule.text, turn_index=pair.turn_index,
                                    p_violation=self.calibration(z[top]))
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
    """Weights and tokenizer (transformers' format) plus ``rule_judge.json``: family, args, calibration,
    threshold and whatever the trainer measured (``extra``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    encoder.tokenizer.save_pretrained(str(path))
    meta = {"family": FAMILY, "args": config_system.to_dict(args), "candidate_model": "minilm",
            "calibration": {"scale": calibration.scale, "bias": calibration.bias}, "threshold": threshold,
            **(extra or {})}
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
