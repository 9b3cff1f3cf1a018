"""Scoring throughput: the csrm scorer vs. the naive Hugging Face ways, on the same MiniLM CSRM and items.

    python bench/bench_scoring.py [--items 2000] [--max-length 512] [--threads 1] [--slices 8] [--repeats 1]

Methods (all fp32, ``torch.inference_mode``, all include tokenization, all give the same scores):

- ``csrm``: :meth:`Scorer.score_items` (segments tokenized once per distinct text, items sorted by length and
  packed into batches under a token budget, nothing padded beyond a batch's longest row);
- ``padded-32``: the usual loop: batches of 32 in input order, every batch padded to ``max_length``;
- ``per-example``: one forward per item (no padding at all, but one small forward each); slow, so by default
  it scores only ``--per-example-items`` of the items (its speed is items/s over those).

Every method uses the CSRM formatter's token ids (so its template and truncation rule), which makes the scores
comparable: the benchmark asserts they agree within ``--tolerance`` and reports the largest difference. The heads
are random (speed only), drawn N(0, 1) so the scores spread over (0, 1) and the check means something.

Timing: the items are cut into ``--slices`` slices; per slice the methods run in turn (order rotating), so load
from other users hits each method alike; a method's time is the sum over slices (median over ``--repeats``).
The ratio line is csrm's speed-up over ``padded-32`` (target >= 3x).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 3.0


def build_model(max_length: int, random_init: bool, seed: int = 0):
    import torch

    from csrm.base.paths import resolve_model_name
    from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer

    if random_init:  # MiniLM's architecture without its weights (same speed)
        from transformers import AutoConfig

        model = CSRMModel.from_backbone_config(AutoConfig.from_pretrained(resolve_model_name("minilm")),
                                               max_length=max_length)
    else:
        model = CSRMModel.from_backbone("minilm", max_length=max_length)
    torch.manual_seed(seed)
    with torch.no_grad():
        for head in (model.compliance_head, model.reward_head):
            head.weight.normal_(0.0, 1.0)
    return model.eval(), load_tokenizer("minilm", decoder=False)


def padded_loop(scorer, items, batch_size: int, max_length: int) -> tuple[list[float], list[float]]:
    """The naive batch loop: input order, fixed batch size, every batch padded to ``max_length``."""
    import torch

    from csrm.model.formatting import pad_batch

    model, formatter = scorer.model, scorer.predictor.formatter
    probs: list[float] = []
    rewards: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            encoded = formatter.encode_batch([i.config for i in chunk], [i.messages for i in chunk],
                                             [i.response for i in chunk])
            inputs = pad_batch([e.input_ids for e in encoded], scorer.predictor.pad_id, pad_to_multiple_of=max_length)
            out = model(**inputs)
            probs += model.calibrated_probability(out.compliance_logits).tolist()
            rewards += out.rewards.tolist()
    return probs, rewards


def per_example(scorer, items) -> tuple[list[float], list[float]]:
    """One forward per item, no padding."""
    import torch

    model, formatter = scorer.model, scorer.predictor.formatter
    probs: list[float] = []
    rewards: list[float] = []
    with torch.inference_mode():
        for item in items:
            ids = torch.tensor([formatter.encode(item.config, item.messages, item.response).input_ids])
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
            probs += model.calibrated_probability(out.compliance_logits).tolist()
            rewards += out.rewards.tolist()
    return probs, rewards


def csrm_scores(scorer, items) -> tuple[list[float], list[float]]:
    results = scorer.score_items(items)
    return [r.p_comply for r in results], [r.reward for r in results]


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(repeats=1)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=512, help="model max_length = the padded width")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per batch of the padded baseline")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="csrm scorer's max_tokens (default: the scorer's, 2048 on CPU)")
    parser.add_argument("--slices", type=int, default=8, help="interleaving granularity (see module doc)")
    parser.add_argument("--long-fraction", type=float, default=0.3, help="share of long responses")
    parser.add_argument("--per-example-items", type=int, default=256,
                        help="the per-example baseline scores only this many items (the first ones of every "
                             "slice; its items/s is over those); 0 = skip it")
    parser.add_argument("--random-init", action="store_true", help="MiniLM architecture, random weights")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args(argv)
    threads = common.set_threads(args.threads)

    from csrm.scoring.scorer import Scorer

    items = common.scoring_items(args.items, long_fraction=args.long_fraction)
    model, tokenizer = build_model(args.max_length, args.random_init)
    scorer = Scorer(model, tokenizer, device="cpu", max_tokens=args.batch_tokens)
    lengths = [len(e.input_ids) for e in scorer.predictor.encode(items)]
    methods = {"csrm": lambda part: csrm_scores(scorer, part),
               f"padded-{args.batch_size}": lambda part: padded_loop(scorer, part, args.batch_size, args.max_length)}
    if args.per_example_items:
        methods["per-example"] = lambda part: per_example(scorer, part)
    baseline = f"padded-{args.batch_size}"

    print(f"scoring: {len(items)} items, {sum(lengths)} tokens (mean {statistics.mean(lengths):.0f}, median "
          f"{statistics.median(lengths):.0f}, max {max(lengths)}; max_length {args.max_length}), "
          f"{threads} threads, load {common.machine_info()['loadavg_1m']}", flush=True)
    warm = items[: min(len(items), 2 * args.batch_size)]
    for fn in methods.values():  # warm-up (allocator, oneDNN primitives)
        fn(warm)
    n_slices = max(1, min(args.slices, len(items)))
    bounds = [round(k * len(items) / n_slices) for k in range(n_slices + 1)]
    per_slice = -(-args.per_example_items // n_slices)
    subsets = {name: [list(range(bounds[k], bounds[k + 1]))[:per_slice] if name == "per-example"
                      else list(range(bounds[k], bounds[k + 1])) for k in range(n_slices)] for name in methods}
    seconds = {name: [[] for _ in range(n_slices)] for name in methods}
    outputs: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in methods}
    names = list(methods)
    turn = 0
    for rep in range(args.repeats):
        for k in range(n_slices):
            order = names[turn % len(names):] + names[: turn % len(names)]
            turn += 1
            for name in order:
                indices = subsets[name][k]
                start = time.perf_counter()
                probs, rewards = methods[name]([items[i] for i in indices])
                seconds[name][k].append(time.perf_counter() - start)
                outputs[name].update(zip(indices, zip(probs, rewards, strict=True), strict=True))
            print(f"  [repeat {rep + 1}, slice {k + 1}/{n_slices}] "
                  + ", ".join(f"{n} {seconds[n][k][-1]:.2f} s" for n in names), flush=True)

    total = {name: sum(statistics.median(s) for s in per_slice) for name, per_slice in seconds.items()}
    slice_ratios = [statistics.median(seconds[baseline][k]) / statistics.median(seconds["csrm"][k])
                    for k in range(n_slices)]
    ref = outputs["csrm"]
    rates = {name: len(outputs[name]) / total[name] for name in names}
    rows, diffs = [], {}
    for name in names:
        scored = sorted(outputs[name])
        diffs[name] = max(max(abs(outputs[name][i][0] - ref[i][0]), abs(outputs[name][i][1] - ref[i][1]))
                          for i in scored)
        rows.append({"method": name, "items": len(scored), "seconds": round(total[name], 2),
                     "items/s": round(rates[name], 2), "tokens/s": round(sum(lengths[i] for i in scored) / total[name]),
                     "speed-up vs padded": round(rates[name] / rates[baseline], 2),
                     "max abs diff vs csrm": f"{diffs[name]:.1e}"})
    print(common.table(rows))
    ratio = rates["csrm"] / rates[baseline]
    payload = {
        "ratio": round(ratio, 3), "ratio_name": "csrm speed-up over the padded batch loop", "target": TARGET,
        "target_met": ratio >= TARGET,
        "slice_ratios": {"median": round(statistics.median(slice_ratios), 3), "min": round(min(slice_ratios), 3),
                         "max": round(max(slice_ratios), 3)},
        "max_abs_diff": {k: v for k, v in diffs.items() if k != "csrm"},
        "items": len(items), "tokens": sum(lengths), "mean_tokens": round(statistics.mean(lengths), 1),
        "max_length": args.max_length, "batch_tokens": scorer.max_tokens, "threads": threads,
        "rows": rows, "seconds_per_slice": seconds,
    }
    if "per-example" in rates:
        payload["ratio_vs_per_example"] = round(rates["csrm"] / rates["per-example"], 3)
    common.write_results("scoring", payload, args.out, script=__file__, argv=argv)
    worst = max(v for k, v in diffs.items() if k != "csrm")
    print(f"max abs diff of p_comply and reward vs csrm: {worst:.2e} (tolerance {args.tolerance:g})")
    if worst > args.tolerance:
        raise SystemExit(f"scores differ by {worst:.2e} > {args.tolerance:g}")
    print(f"per-slice speed-up over {baseline}: median {payload['slice_ratios']['median']:.2f}x "
          f"[{payload['slice_ratios']['min']:.2f}-{payload['slice_ratios']['max']:.2f}]")
    print(common.ratio_line("csrm_vs_padded", ratio, TARGET))
    return payload


if __name__ == "__main__":
    main()
