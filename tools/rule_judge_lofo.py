"""Leave-one-rule-family-out for the rule judge (issue 28): train without one family, test on it.

``python -m tools.rule_judge_lofo --data DIR/rules --out-dir runs/lofo [key=value ...]``

For each ``metadata.family`` of the test split: train with ``exclude_families=[family]`` (its rows are left out
of train and of the dev rows used for calibration), then score that family's test rows: AUROC, F1 at the
dev-tuned threshold, and the lengths-only probe on the same rows (fitted on the other families' dev rows,
since the held-out family is unseen). Overrides (``max_train_pairs=1000``) set the reduced budget for every
fold. Prints one JSON row per fold and writes ``OUT_DIR/lofo.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from csrm.base import config as config_system
from csrm.model.rule.args import RuleJudgeArgs
from csrm.model.rule.data import read_examples
from csrm.model.rule.predictor import RulePredictor
from csrm.model.rule.trainer import train
from tools.rule_judge_eval import _lengths, sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--max-test", type=int, default=None, help="score a random subset of the held-out "
                        "family's test rows")
    parser.add_argument("--families", nargs="*", default=None, help="folds to run (default: every family)")
    opts, overrides = parser.parse_known_args(argv)
    data, out_dir = Path(opts.data), Path(opts.out_dir)
    test, dev = read_examples(data / "test.jsonl"), read_examples(data / "dev.jsonl")
    families = opts.families or sorted({ex.family for ex in test})
    rows = []
    for family in families:
        started = time.perf_counter()
        args = config_system.load(RuleJudgeArgs, None, [*overrides, f"dataset_path={data}",
                                                        f"output_dir={out_dir / family}"])
        args.exclude_families = [family]
        measured = train(args, progress=False)
        judge = RulePredictor.from_pretrained(out_dir / family)
        held = sample([ex for ex in test if ex.family == family], opts.max_test)
        p = [j.p_violation for j in judge.judge_many([(ex.rules, ex.turns) for ex in held])]
        y = [ex.label for ex in held]
        seen_dev = [ex for ex in dev if ex.family != family]
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
            [_lengths(ex) for ex in seen_dev], [ex.label for ex in seen_dev])
        p_probe = probe.predict_proba([_lengths(ex) for ex in held])[:, 1]
        row = {"held_out": family, "n_test": len(held), "auroc": float(roc_auc_score(y, p)),
               "f1": float(f1_score(y, [q >= judge.threshold for q in p])),
               "lengths_probe_auroc": float(roc_auc_score(y, p_probe)),
               "train_pairs": measured["positives"] + measured["hard_negatives"] + measured["random_negatives"],
               "fit_seconds": measured["fit_seconds"], "peak_rss_gb": measured["peak_rss_gb"],
               "wall_seconds": round(time.perf_counter() - started, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "lofo.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
