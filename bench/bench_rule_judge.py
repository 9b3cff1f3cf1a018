"""Cost of the rule judge per DynaBench item against the clause scorer, in one run (issue 28: <= 3x).

    python bench/bench_rule_judge.py --model RULE_JUDGE_DIR [--items 48] [--repeats 1] [--threads 1]

Items: the first ``--items`` DynaBench (Aug) dev-half items in the loader's order (``$CSRM_DATA_DIR``).
Methods, timed interleaved (``common.interleaved``) on the same items:

- ``clause``: today's clause scorer (:class:`csrm.scoring.scorer.Scorer` over a clause model) on the bundled MiniLM. Its weights are the backbone's
  and fresh heads: the cost of scoring does not depend on trained values, so no shipped model is needed;
- ``rule``: the rule judge (``RulePredictor``) with candidate narrowing (its saved settings);
- ``rule-all-pairs`` (reference, not in the ratio): the same judge reading every (rule, window) pair.

The ratio is rule seconds / clause seconds (lower is better; the target is <= 3). The frozen narrowing
encoder's rule-embedding cache is emptied before each repeat, so every policy is embedded afresh.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(repeats=1, warmup=0)
    parser.add_argument("--model", required=True, help="a saved rule judge (csrm train, architecture: rule)")
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--all-pairs", action="store_true", help="also time rule-all-pairs (slow)")
    args = parser.parse_args(argv)
    threads = common.set_threads(args.threads)

    from transformers import AutoTokenizer

    from csrm.base.paths import data_dir, resolve_model_name
    from csrm.model.clause.modeling import ClauseCSRMModel
    from csrm.model.rule.predictor import RulePredictor, item_turns
    from csrm.scoring.scorer import Scorer
    from eval.benchmarks import load_benchmark

    items = [it.item for it in load_benchmark("dynabench", data_dir(), use_hub=False).items[: args.items]]
    tok = AutoTokenizer.from_pretrained(resolve_model_name("minilm"))
    clause = Scorer(ClauseCSRMModel.from_backbone("minilm", tokenizer=tok), tok, device="cpu")
    rule = RulePredictor.from_pretrained(args.model, threads=threads)  # the saved args would set 2 threads
    rule_all = RulePredictor.from_pretrained(args.model, narrowing=False, threads=threads)

    def run_rule(judge):
        if judge.embed is not None:
            judge.embed._cache.clear()
        return judge.score_items(items)

    def run_clause():
        clause.clear_cache()  # every clause and window encoded afresh, as a first look at each policy
        return clause.score_items(items)

    methods = {"clause": run_clause, "rule": lambda: run_rule(rule)}
    if args.all_pairs:
        methods["rule-all-pairs"] = lambda: run_rule(rule_all)
    times = common.interleaved(methods, repeats=args.repeats, warmup=args.warmup)
    from csrm.base.rule_text import split_rules

    counted = [rule.pairs_for(split_rules(it.config), item_turns(it)) for it in items]
    per_item = {name: common.median(t) / len(items) for name, t in times.items()}
    ratio = per_item["rule"] / per_item["clause"]
    payload = {"items": len(items), "threads": threads, "seconds_per_item": per_item,
               "pairs_read": sum(len(p) for p, _ in counted), "pairs_without_narrowing": sum(t for _, t in counted),
               "times": times, "ratio": ratio}
    print(common.table([{"method": n, "s/item": s} for n, s in per_item.items()]))
    common.write_results("bench_rule_judge", payload, args.out, script=__file__, argv=argv)
    print(common.ratio_line("rule_over_clause_seconds_per_item", ratio, 3.0, higher_is_better=False))
    return payload


if __name__ == "__main__":
    main()
