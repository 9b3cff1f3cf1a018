"""Evaluate a trained rule judge: ``python -m tools.rule_judge_eval MODEL --data DIR/rules [--out report.json]``.

Prints (and writes as JSON) every number of issue 28 this judge can give without the registry:

- **generated test split** (``DIR/rules/test.jsonl``): AUROC, F1 at the saved dev-tuned threshold, per family,
  and the lengths-only probe (logistic regression on log policy chars, turns, log Agent chars; fitted on
  dev.jsonl, scored on test.jsonl), plus the **recall of candidate narrowing** (violated (rule, turn) pairs
  whose rule survives narrowing for some window of that turn);
- **DynaBench (Aug) dev half** through ``eval``'s own harness (20% dev slice tunes the threshold, the other
  80% is scored): AUROC, F1 at the dev-tuned threshold, the lengths-only probe (``eval.surface``) on the same
  slices, the **named-rule accuracy** (FAIL items whose evidence names a rule in ``rules_violated``), the
  rule-level narrowing recall, pairs read with and without narrowing, and seconds per item;
- **pair reading with matched negatives** (``pair_reading``, :func:`pair_reading`): on the generated test
  split, the pair logits of violating (rule, Agent window) pairs against four negative sets, one negative per
  positive: the **same rule text** against a window that keeps it (a judge that reads only the rule scores 0.5
  here), the **same window** against a rule it keeps (a judge that reads only the turn scores 0.5), and any
  non-violating pair drawn at random, and the **same question**: the same rule and the same User turn answered,
  with a window that keeps the rule (a judge that reads the rule and the question but not the answer scores 0.5
  here; drawn only where the data hold such a pair, and scored against those positives only). Beside each,
  TF-IDF probes that see only the rule or only the turn (fitted on dev pairs): an AUROC the probe matches is not
  evidence of reading;
- the **length test**: for generated test FAIL rows, a benign Agent turn of the same transcript repeated to
  20,000 characters (|change of p_comply|) and the violating turn's text inserted in its middle (flagged?);
- **where DynaBench's false alarms come from** (``alarms``, :func:`rule_alarms`): the rule texts whose pair
  logits are highest over the PASS items (mean logit, share of pairs above 0), and in FAIL items the best
  logit on a violated rule against the best on the other rules (where the other rules score higher, an OR
  over the rules cannot separate FAIL from PASS items).

Evaluate only: nothing here trains on DynaBench.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from csrm.base.rule_text import Turn
from csrm.model.rule.data import RuleExample, read_examples
from csrm.model.rule.limits import Limit
from csrm.model.rule.modeling import Pair, pair_logits
from csrm.model.rule.predictor import RulePredictor
from csrm.model.rule.trainer import example_pairs, is_uncased

LENGTH_CHARS = 20_000


def _auroc(y, p) -> float | None:
    return float(roc_auc_score(y, p)) if len(set(y)) == 2 else None


def _lengths(ex: RuleExample) -> list[float]:
    agent = sum(len(ex.turns[i].text) for i in ex.agent_indices)
    policy = sum(len(r.text) for r in ex.rules)
    return [math.log1p(policy), float(len(ex.turns)), math.log1p(agent), float(len(ex.rules))]


def narrowing_recall(judge: RulePredictor, examples: list[RuleExample]) -> dict[str, float]:
    """Share of violated (rule, turn) pairs that are judged: read by the cross-encoder for at least one window
    of that turn (the condition gate and candidate narrowing together), or counted by code (length limits)."""
    kept = total = 0
    for ex in examples:
        if not ex.violations:
            continue
        read = {(p.rule_index, p.turn_index) for p in judge.pairs_for(ex.rules, ex.turns)[0]}
        counted = set(judge.checked_by_code(ex.rules))
        for rule_number, t in ex.violations:
            index = next(i for i, r in enumerate(ex.rules) if r.number == rule_number)
            kept += (index, t) in read or index in counted
            total += 1
    return {"recall": kept / max(1, total), "violations": total}


def sample(examples: list[RuleExample], n: int | None, seed: int = 0) -> list[RuleExample]:
    """A deterministic random subset of ``n`` examples (all when ``n`` is None or larger), order kept."""
    if n is None or n >= len(examples):
        return examples
    keep = set(random.Random(seed).sample(range(len(examples)), n))
    return [ex for i, ex in enumerate(examples) if i in keep]


def generated(judge: RulePredictor, data: Path, max_test: int | None = None) -> dict:
    dev, test = read_examples(data / "dev.jsonl"), sample(read_examples(data / "test.jsonl"), max_test)
    started = time.perf_counter()
    judged = judge.judge_many([(ex.rules, ex.turns) for ex in test])
    seconds = time.perf_counter() - started
    y = [ex.label for ex in test]
    p = [j.p_violation for j in judged]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        [_lengths(ex) for ex in dev], [ex.label for ex in dev])
    p_probe = probe.predict_proba([_lengths(ex) for ex in test])[:, 1]
    families = {}
    for fam in sorted({ex.family for ex in test}):
        idx = [i for i, ex in enumerate(test) if ex.family == fam]
        families[fam] = {"n": len(idx), "auroc": _auroc([y[i] for i in idx], [p[i] for i in idx]),
                         "lengths_probe_auroc": _auroc([y[i] for i in idx], [p_probe[i] for i in idx])}
    named = [j.evidence is not None and (j.evidence.rule_number, j.evidence.turn_index) in ex.violations
             for ex, j in zip(test, judged, strict=True) if ex.label == 1]
    return {"n": len(test), "auroc": _auroc(y, p), "f1": float(f1_score(y, [q >= judge.threshold for q in p])),
            "lengths_probe_auroc": _auroc(y, p_probe), "families": families,
            "named_rule_and_turn": float(np.mean(named)) if named else None,
            "narrowing": narrowing_recall(judge, test), "seconds": round(seconds, 1)}


NEGATIVE_SETS = ("same_rule", "same_turn", "same_question", "any")


def matched_pairs(examples: list[RuleExample], *, n_positive: int = 600, seed: int = 0, uncased: bool = True,
                  window_chars: int = 400) -> tuple[list[tuple[Pair, str]], dict[str, list[tuple[Pair, str]]]]:
    """(positives, negatives per set of :data:`NEGATIVE_SETS`), each pair with its row's family: up to
    ``n_positive`` violating pairs, and for each one negative of each set drawn from the same examples' labelled
    pairs (module doc). Pairs a pair judge cannot read are left out as in training (:func:`~csrm.model.rule.trainer.example_pairs`)."""
    rng = random.Random(seed)
    labelled = [(pair, label, ex.family) for ex in examples
                for pair, label in example_pairs(ex, window_chars, uncased=uncased)]
    positives = [(pair, family) for pair, label, family in labelled if label]
    rng.shuffle(positives)
    positives = positives[:n_positive]
    negatives = [pair for pair, label, _ in labelled if not label]
    by_rule: dict[str, list[Pair]] = {}
    by_window: dict[str, list[Pair]] = {}
    by_question: dict[tuple[str, str], list[Pair]] = {}
    for pair in negatives:
        by_rule.setdefault(pair.rule, []).append(pair)
        by_window.setdefault(pair.window, []).append(pair)
        by_question.setdefault((pair.rule, pair.context), []).append(pair)
    drawn: dict[str, list[tuple[Pair, str]]] = {name: [] for name in NEGATIVE_SETS}
    later = random.Random(seed + 1)  # the set added last draws apart, so the earlier sets' draws stay as they were
    for pair, family in positives:
        for name, pool, draw in (("same_rule", by_rule.get(pair.rule), rng),
                                 ("same_turn", by_window.get(pair.window), rng),
                                 ("same_question", by_question.get((pair.rule, pair.context)), later),
                                 ("any", negatives, rng)):
            if pool:
                drawn[name].append((pool[draw.randrange(len(pool))], family))
    return positives, drawn


def _surface_probe(train: list[tuple[Pair, int]], part: str):
    """Logistic regression on TF-IDF of one part of a pair ('rule' or the judged 'turn' with its context)."""
    text = (lambda p: p.rule) if part == "rule" else (lambda p: f"{p.context} || {p.window}")
    probe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(max_iter=2000))
    probe.fit([text(p) for p, _ in train], [y for _, y in train])
    return lambda pairs: probe.predict_proba([text(p) for p in pairs])[:, 1]


def pair_reading(judge: RulePredictor, data: Path, n_positive: int = 600) -> dict:
    """Pair-level AUROC on the test split against matched negatives, beside rule-only and turn-only probes fitted
    on the dev split's pairs (module doc)."""
    read_as = {"uncased": is_uncased(judge.encoder.tokenizer), "window_chars": judge.args.window_chars}
    positives, negatives = matched_pairs(read_examples(data / "test.jsonl"), n_positive=n_positive, **read_as)
    dev_pos, dev_neg = matched_pairs(read_examples(data / "dev.jsonl"), n_positive=n_positive, seed=1, **read_as)
    dev_pairs = [(p, 1) for p, _ in dev_pos] + [(p, 0) for p, _ in dev_neg["any"] + dev_neg["same_rule"]]
    judged = [p for p, _ in positives] + [p for name in NEGATIVE_SETS for p, _ in negatives[name]]
    unique = list(dict.fromkeys(judged))
    started = time.perf_counter()
    logit = dict(zip(unique, pair_logits(judge.model, judge.encoder, unique, batch_pairs=judge.args.batch_pairs),
                     strict=True))
    seconds = time.perf_counter() - started
    scorers = {"judge": lambda pairs: [logit[p] for p in pairs],
               "rule_only_probe": _surface_probe(dev_pairs, "rule"),
               "turn_only_probe": _surface_probe(dev_pairs, "turn")}
    out: dict = {"positives": len(positives), "negatives": {name: len(negatives[name]) for name in NEGATIVE_SETS}}
    for name in NEGATIVE_SETS:
        pos = [p for p, _ in positives]
        if name == "same_question":  # only the positives it has a negative for: then a question reader gets 0.5
            asked = {(n.rule, n.context) for n, _ in negatives[name]}
            pos = [p for p in pos if (p.rule, p.context) in asked]
        pairs = pos + [p for p, _ in negatives[name]]
        y = [1] * len(pos) + [0] * len(negatives[name])
        out[name] = {scorer: _auroc(y, [float(v) for v in score(pairs)]) for scorer, score in scorers.items()}
    out["same_rule_by_family"] = {}
    for family in sorted({f for _, f in positives}):
        pos = [p for p, f in positives if f == family]
        neg = [p for p, f in negatives["same_rule"] if f == family]
        out["same_rule_by_family"][family] = _auroc([1] * len(pos) + [0] * len(neg), [logit[p] for p in pos + neg])
    out["seconds"] = round(seconds, 1)
    return out


def length_test(judge: RulePredictor, data: Path, n: int = 12) -> dict:
    """The length rows of issue 28 on generated test FAIL transcripts (module doc). Rules that limit the
    length itself ("at most 300 words": counted, :mod:`csrm.model.rule.limits`) are dropped from the policy
    first: a 20,000-character answer rightly breaks them, and the test asks about drift under the others.
    The judge reads a verbatim repeat once (:func:`csrm.model.rule.modeling.turn_windows`), so the repeated
    turn is read as itself plus the cut-off copy at its end; :mod:`eval.rule_length` also measures a long
    answer without repeats."""
    rows = [ex for ex in read_examples(data / "test.jsonl") if ex.label == 1 and ex.contrast == "original"]
    deltas, flagged = [], []
    for ex in rows[:n]:
        limits = {ex.rules[i].number for i, check in judge.checked_by_code(ex.rules).items() if isinstance(check, Limit)}
        if any(rule in limits for rule, _ in ex.violations):
            continue
        ex = replace(ex, rules=[r for r in ex.rules if r.number not in limits])
        (_, bad), *_ = sorted(ex.violations, key=lambda v: v[1])
        clean = [i for i in ex.agent_indices if all(t != i for _, t in ex.violations)]
        if not clean or bad == 0:
            continue
        benign = ex.turns[clean[0]].text
        context = [ex.turns[bad - 1]]
        long_text = (benign + " ") * (LENGTH_CHARS // (len(benign) + 1) + 1)
        long_text = long_text[:LENGTH_CHARS]
        middle = long_text.rfind(" ", 0, len(long_text) // 2)
        inserted = long_text[:middle] + " " + ex.turns[bad].text + long_text[middle:]
        short_j, long_j, bad_j = judge.judge_many([(ex.rules, context + [Turn("assistant", text)])
                                                   for text in (benign, long_text, inserted)])
        deltas.append(abs(short_j.p_violation - long_j.p_violation))
        flagged.append(bad_j.p_violation >= judge.threshold)
    return {"n": len(deltas), "mean_abs_delta_p_comply": float(np.mean(deltas)) if deltas else None,
            "max_abs_delta_p_comply": float(np.max(deltas)) if deltas else None,
            "violation_flagged_share": float(np.mean(flagged)) if flagged else None}


def rule_alarms(judge: RulePredictor, examples: list[RuleExample], *, top: int = 10, min_pairs: int = 20) -> dict:
    """Per rule text, the pair logits it gets over the PASS examples (the pairs the judge reads, narrowing
    included): the ``top`` texts with at least ``min_pairs`` pairs by mean logit, and how many texts are above 0
    on at least 90% of their pairs; and over FAIL examples with ``rules_violated`` and other rules read, the mean
    best logit on a violated rule and on the others."""
    per_item = [judge.pairs_for(ex.rules, ex.turns)[0] for ex in examples]
    flat = [p for pairs in per_item for p in pairs]
    logits = pair_logits(judge.model, judge.encoder, flat, batch_pairs=judge.args.batch_pairs)
    by_rule: dict[str, list[float]] = {}
    violated_best, other_best, start = [], [], 0
    for ex, pairs in zip(examples, per_item, strict=True):
        z = logits[start: start + len(pairs)]
        start += len(pairs)
        if ex.label == 0:
            for pair, value in zip(pairs, z, strict=True):
                by_rule.setdefault(pair.rule, []).append(value)
            continue
        hit = set(ex.rules_violated)
        on = [v for pair, v in zip(pairs, z, strict=True) if ex.rules[pair.rule_index].number in hit]
        off = [v for pair, v in zip(pairs, z, strict=True) if ex.rules[pair.rule_index].number not in hit]
        if on and off:
            violated_best.append(max(on))
            other_best.append(max(off))
    counted = {text: values for text, values in by_rule.items() if len(values) >= min_pairs}
    ranked = sorted(counted.items(), key=lambda kv: -float(np.mean(kv[1])))[:top]
    return {"pass_items": sum(ex.label == 0 for ex in examples), "rules_counted": len(counted),
            "rules_above_0_on_90pct_of_pass_pairs": int(sum(np.mean(np.asarray(v) > 0) >= 0.9
                                                            for v in counted.values())),
            "top_rules_on_pass_items": [{"rule": text[:160], "pairs": len(v), "mean_logit": round(float(np.mean(v)), 3),
                                         "share_above_0": round(float(np.mean(np.asarray(v) > 0)), 3)}
                                        for text, v in ranked],
            "fail_items_compared": len(violated_best),
            "fail_best_logit_violated_rule": round(float(np.mean(violated_best)), 3) if violated_best else None,
            "fail_best_logit_other_rules": round(float(np.mean(other_best)), 3) if other_best else None}


def dynabench_examples(data_dir: str | None) -> list[RuleExample]:
    """DynaBench (Aug) dev half as :class:`RuleExample` (item labels and ``rules_violated``; no pair labels)."""
    from csrm.base.rule_text import split_rules
    from csrm.model.rule.predictor import item_turns
    from eval.benchmarks import load_benchmark

    bench = load_benchmark("dynabench", data_dir, use_hub=False, dev_fraction=0.2)
    return [RuleExample(rules=split_rules(it.item.config), turns=item_turns(it.item), label=int(it.label_violation),
                        violations=None,
                        rules_violated=list((it.extra.get("metadata") or {}).get("rules_violated") or []))
            for it in bench.items]


def dynabench(judge: RulePredictor, data_dir: str | None) -> dict:
    """DynaBench (Aug) dev half: scored once through ``eval``'s harness, then the rule-reading block of
    ``eval.rule_reading`` (swap, removal, within-transcript pairs, AUROC, F1 dev-tuned, named rule, length;
    beside the config-blanked and lengths-only columns) reusing those scores, plus narrowing recall and cost."""
    from csrm.base.rule_text import split_rules
    from csrm.model.rule.predictor import item_turns
    from eval.benchmarks import load_benchmark
    from eval.harness import evaluate
    from eval.rule_reading import benchmark_block

    bench = load_benchmark("dynabench", data_dir, use_hub=False, dev_fraction=0.2)
    started = time.perf_counter()
    run = evaluate(judge, {"dynabench": bench}, model="rule-judge")
    seconds = time.perf_counter() - started
    scored = run.runs["dynabench"].scored
    out = {"n_items": len(bench.items), "seconds_per_item": round(seconds / len(bench.items), 3)}
    read = total = kept = n_fail = 0
    for s in scored:  # narrowing: pairs read, and whether a violated rule is judged (read or checked by code)
        rules, turns = split_rules(s.item.item.config), item_turns(s.item.item)
        pairs, without = judge.pairs_for(rules, turns)
        read, total = read + len(pairs), total + without
        violated = set((s.item.extra["metadata"] or {}).get("rules_violated", []))
        if s.item.label_violation == 1 and violated:
            n_fail += 1
            judged = {p.rule_index for p in pairs} | set(judge.checked_by_code(rules))
            kept += any(rules[i].number in violated for i in judged)
    out.update({"pairs_read": read, "pairs_without_narrowing": total,
                "narrowing_rule_recall": kept / max(1, n_fail), "narrowing_fail_items": n_fail})
    block_started = time.perf_counter()
    out["rule_reading"] = benchmark_block(judge, bench.items, [s.result for s in scored], source=bench.source)
    out["rule_reading_seconds"] = round(time.perf_counter() - block_started, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--data", help="generated rule data folder (train/dev/test.jsonl)")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default $CSRM_DATA_DIR)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["generated", "pair_reading", "length",
                                                                        "dynabench", "alarms"])
    parser.add_argument("--max-test", type=int, default=None, help="score a random subset of this many "
                        "generated test rows (2 shared cores); default all")
    parser.add_argument("--out", default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="scoring fields of the saved judge to replace, e.g. condition_gate=false top_k=8")
    opts = parser.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in opts.set)}
    judge = RulePredictor.from_pretrained(opts.model, **overrides)
    report: dict = {"model": opts.model, "overrides": overrides}
    for name, fn in (("generated", lambda: generated(judge, Path(opts.data), opts.max_test)),
                     ("pair_reading", lambda: pair_reading(judge, Path(opts.data))),
                     ("length", lambda: length_test(judge, Path(opts.data))),
                     ("dynabench", lambda: dynabench(judge, opts.data_dir)),
                     ("alarms", lambda: rule_alarms(judge, dynabench_examples(opts.data_dir)))):
        if name in opts.skip or (name in ("generated", "pair_reading", "length") and not opts.data):
            continue
        started = time.perf_counter()
        report[name] = {**fn(), "wall_seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps({name: report[name]}, indent=1), flush=True)
    if opts.out:
        Path(opts.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
