"""Self-mined hard negatives: the non-violating pairs a trained judge fires on most, in items as users send them.

An item's verdict is the OR (the max) over its narrowed (rule, window) pairs, so a PASS item is decided by its
single worst false alarm. The first training pass samples negatives by heuristics (pairs that share the
violated rule or the violating turn, random unrelated rules), and those rarely contain the pairs the judge
itself fires on: on generated data its pair-level AUROC is ~0.96 while its item-level AUROC stays ~0.70 (a few
confident false pairs among ~45 per item decide; docs/results.md, 2026-12-06). Mining asks the judge: score
every pair of ``mining_items`` training rows exactly as :meth:`RulePredictor.pairs_for` builds them for a user
(candidate narrowing, windows, context), and keep the highest-scoring non-violating ones, at most
``per_item`` per row so that a few rows with many similar rules do not fill the set. The trainer then trains
one more pass on them beside a fresh sample of ordinary pairs (:mod:`csrm.model.rule.trainer`).

Pairs a pair judge cannot read are left out here as in training (:func:`csrm.model.rule.trainer.example_pairs`):
case-dependent rules with an uncased tokenizer and history-dependent pairs.
"""

from __future__ import annotations

import random
import time

import numpy as np

from csrm.model.rule.data import RuleExample
from csrm.model.rule.modeling import Pair, pair_logits
from csrm.model.rule.predictor import RulePredictor


def mine_negatives(predictor: RulePredictor, examples: list[RuleExample], *, items: int, count: int,
                   per_item: int = 2, seed: int = 0, uncased: bool = False
                   ) -> tuple[list[tuple[Pair, int]], dict]:
    """(up to ``count`` (pair, 0) hard negatives, what mining measured) from ``items`` random rows of
    ``examples`` scored by ``predictor`` (module doc)."""
    started = time.perf_counter()
    rows = random.Random(seed).sample(examples, min(items, len(examples)))
    pairs: list[Pair] = []
    owner, labels = [], []
    for i, ex in enumerate(rows):
        for pair in predictor.pairs_for(ex.rules, ex.turns)[0]:
            number = ex.rules[pair.rule_index].number
            if (uncased and number in ex.case_dependent) or (number, pair.turn_index) in ex.history_dependent:
                continue
            pairs.append(pair)
            owner.append(i)
            labels.append(int((number, pair.turn_index) in ex.violations))
    logits = np.asarray(pair_logits(predictor.model, predictor.encoder, pairs,
                                    batch_pairs=predictor.args.batch_pairs))
    labels_arr = np.asarray(labels)
    taken, per_row = [], [0] * len(rows)
    for k in np.argsort(-logits, kind="stable"):
        if labels_arr[k] or per_row[owner[k]] >= per_item:
            continue
        per_row[owner[k]] += 1
        taken.append(int(k))
        if len(taken) >= count:
            break
    negatives = labels_arr == 0
    stats = {"mining_rows": len(rows), "mining_pairs": len(pairs),
             "mining_false_alarms": int((logits[negatives] > 0).sum()),
             "mined_negatives": len(taken),
             "mined_lowest_logit": round(float(logits[taken[-1]]), 3) if taken else None,
             "mining_seconds": round(time.perf_counter() - started, 1)}
    return [(pairs[k], 0) for k in taken], stats
