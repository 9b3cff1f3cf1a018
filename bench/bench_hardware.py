"""How close scoring gets to this CPU's limit: achieved FLOP/s of the csrm scorer (MiniLM) vs. measured peaks.

    python bench/bench_hardware.py [--items 400] [--max-length 512] [--threads 1] [--repeats 3] [--profile]

Peaks (same thread count): large square ``torch.matmul`` loops in fp32 and bf16 (``--matmul-size``), and the
fp32 GEMM of MiniLM's own shapes (``[8192 x 384] @ [384 x 1536]``: what the scorer's linear layers can reach).
Scoring FLOPs are counted analytically per forward batch (checked against ``torch.utils.flop_counter`` on the
linear layers, which it counts; it does not count CPU attention):

- linear layers: ``2 x rows x width x (4 d^2 + 2 d ff)`` per layer (q, k, v, o and the feed-forward pair);
- attention: ``4 x rows x width^2 x d`` per layer (QK^T and AV).

``executed`` counts the padded batches the scorer ran, ``useful`` only real tokens. Achieved FLOP/s = FLOPs /
wall time of ``score_items`` (tokenization included). The methods alternate (peak fp32, scoring, peak bf16, ...)
over ``--repeats`` rounds, medians reported; the ratio line is useful FLOP/s / the fp32 peak, the best of the two fp32
matmul rates (on this machine the MiniLM-shaped GEMM beats the square one) (target >= 50%).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 0.5


def matmul_rate(m: int, k: int, n: int, dtype, seconds: float) -> float:
    """FLOP/s of ``[m x k] @ [k x n]`` repeated for about ``seconds``."""
    import torch

    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    torch.matmul(a, b, out=out)  # warm-up (packing, oneDNN primitive)
    count, start = 0, time.perf_counter()
    while True:
        torch.matmul(a, b, out=out)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * m * k * n * count / elapsed


def square_peak(size: int, dtype, seconds: float) -> tuple[float, int]:
    """(FLOP/s, size) of square matmuls of ``size``, halved while one call takes over ``seconds`` / 4 (bf16
    without hardware support runs a slow fallback: a 2048^3 product would take minutes)."""
    import torch

    while size > 128:
        a = torch.randn(size, size).to(dtype)
        start = time.perf_counter()
        torch.matmul(a, a)
        if time.perf_counter() - start <= seconds / 4:
            break
        size //= 2
    return matmul_rate(size, size, size, dtype, seconds), size


def forward_flops(batches: list[list[int]], lengths: list[int], config) -> tuple[float, float]:
    """(executed, useful) FLOPs of a BERT-style encoder over the scorer's batches (see module doc)."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * layers * (4 * d * d + 2 * d * ff)
    executed = useful = 0.0
    for batch in batches:
        width = max(lengths[i] for i in batch)
        executed += len(batch) * (width * per_token + 4 * layers * d * width * width)
        useful += sum(lengths[i] * per_token + 4 * layers * d * lengths[i] ** 2 for i in batch)
    return executed, useful


def check_linear_flops(model, lengths: list[int], config) -> tuple[float, float]:
    """(counted, analytic) linear-layer FLOPs of one padded batch, via torch.utils.flop_counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    rows, width = 4, max(lengths[:4])
    ids = torch.full((rows, width), 1000)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    analytic = rows * width * 2 * layers * (4 * d * d + 2 * d * ff) + rows * 2 * d * 2 + rows * 2 * d * d  # + heads, pooler
    return float(counter.get_total_flops()), float(analytic)


def profile_table(scorer, items, rows: int = 15) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        scorer.score_items(items)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-tokens", type=int, default=None, help="scorer max_tokens (default: the scorer's)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="square matmul size of the peak")
    parser.add_argument("--peak-seconds", type=float, default=3.0, help="seconds per peak measurement")
    parser.add_argument("--bf16-scoring", action="store_true", help="also time the scorer with bf16 autocast")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of one scoring pass")
    args = parser.parse_args(argv)
    threads = common.set_threads(args.threads)

    import torch
    from bench_scoring import build_model

    from csrm.model.batching import token_budget_batches
    from csrm.scoring.scorer import Scorer

    items = common.scoring_items(args.items)
    model, tok = build_model(args.max_length, random_init=False)
    config = model.backbone.config
    scorer = Scorer(model, tok, device="cpu", max_tokens=args.batch_tokens)
    lengths = [len(e.input_ids) for e in scorer.predictor.encode(items)]
    batches = token_budget_batches(lengths, scorer.max_tokens, scorer.predictor.max_rows)
    executed, useful = forward_flops(batches, lengths, config)
    counted, analytic = check_linear_flops(model, lengths, config)
    size, secs = args.matmul_size, args.peak_seconds
    sizes = {}

    def peak(name: str, dtype):
        def call() -> float:
            rate, sizes[name] = square_peak(size, dtype, secs)
            return rate
        return call

    methods = {
        "peak fp32 matmul": peak("peak fp32 matmul", torch.float32),
        "scoring (csrm, fp32)": lambda: scorer.score_items(items),
        "peak bf16 matmul": peak("peak bf16 matmul", torch.bfloat16),
        "MiniLM GEMM fp32": lambda: matmul_rate(8192, 384, 1536, torch.float32, secs),
    }
    bf16_scorer = None
    if args.bf16_scoring:
        bf16_scorer = Scorer(model, tok, device="cpu", max_tokens=args.batch_tokens, bf16=True)
        methods["scoring (csrm, bf16 autocast)"] = lambda: bf16_scorer.score_items(items)
    print(f"hardware: {common.machine_info()['cpu']}, {threads} threads, load {common.machine_info()['loadavg_1m']}; "
          f"{len(items)} items, {sum(lengths)} tokens, {len(batches)} batches", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in methods}
    scorer.score_items(items[:32])  # warm-up
    names = list(methods)
    for rep in range(args.repeats):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            start = time.perf_counter()
            value = methods[name]()
            elapsed = time.perf_counter() - start
            rates[name].append(useful / elapsed if name.startswith("scoring") else value)
            if name.startswith("scoring"):
                rates.setdefault(name + " executed", []).append(executed / elapsed)
            print(f"  [repeat {rep + 1}/{args.repeats}] {name}: {rates[name][-1] / 1e9:.1f} GFLOP/s", flush=True)
    med = {name: statistics.median(v) for name, v in rates.items()}
    # the peak is the best fp32 matmul rate measured, whichever shape reached it
    fp32, bf16 = max(med["peak fp32 matmul"], med["MiniLM GEMM fp32"]), med["peak bf16 matmul"]
    encode_start = time.perf_counter()
    scorer.predictor.encode(items)
    encode_seconds = time.perf_counter() - encode_start
    score_seconds = useful / med["scoring (csrm, fp32)"]
    rows = []
    for name in names:
        row = {"what": name, "GFLOP/s": round(med[name] / 1e9, 1), "of fp32 peak": f"{100 * med[name] / fp32:.0f}%",
               "of bf16 peak": f"{100 * med[name] / bf16:.0f}%"}
        if name.startswith("scoring"):
            row["executed GFLOP/s (with padding)"] = round(med[name + " executed"] / 1e9, 1)
        rows.append(row)
    print(common.table(rows))
    fraction = med["scoring (csrm, fp32)"] / fp32
    print(f"FLOPs: useful {useful / 1e12:.2f} TFLOP, executed {executed / 1e12:.2f} TFLOP (padding "
          f"{100 * (executed / useful - 1):.1f}%); linear-layer check: flop_counter {counted / 1e9:.2f} GFLOP vs "
          f"analytic {analytic / 1e9:.2f} GFLOP; tokenization {encode_seconds:.2f} s of {score_seconds:.2f} s")
    payload = {"ratio": round(fraction, 3), "ratio_name": "scoring useful FLOP/s / best fp32 matmul rate measured", "target": TARGET,
               "target_met": fraction >= TARGET, "fp32_peak_gflops": round(fp32 / 1e9, 2),
               "fraction_of_bf16_peak": round(med["scoring (csrm, fp32)"] / bf16, 3),
               "fraction_of_minilm_gemm": round(med["scoring (csrm, fp32)"] / med["MiniLM GEMM fp32"], 3),
               "gflops": {k: round(v / 1e9, 2) for k, v in med.items()}, "peak_matmul_sizes": sizes,
               "useful_tflop": round(useful / 1e12, 4), "executed_tflop": round(executed / 1e12, 4),
               "tokenization_seconds": round(encode_seconds, 3), "scoring_seconds": round(score_seconds, 3),
               "flop_counter_check": {"counted": counted, "analytic": analytic}, "items": len(items),
               "tokens": sum(lengths), "threads": threads, "max_length": args.max_length, "rows": rows,
               "samples_gflops": {k: [round(x / 1e9, 2) for x in v] for k, v in rates.items()}}
    if args.profile:
        text = profile_table(scorer, items)
        print(text)
        payload["profile"] = text
    common.write_results("hardware", payload, args.out, script=__file__, argv=argv)
    print(common.ratio_line("scoring_vs_fp32_peak", fraction, TARGET, unit=""))
    return payload


if __name__ == "__main__":
    main()
