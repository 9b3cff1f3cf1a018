"""Shared-prefix scoring on a decoder: reusing the config + prompt key/value cache vs. not reusing it.

    python bench/bench_prefix.py [--groups 24] [--responses 8] [--hidden 384] [--layers 6] [--threads 1]

A Llama-like CSRM built from a ``LlamaConfig`` (random weights; MiniLM's tokenizer, EOS = [SEP]) scores
``--responses`` responses (``--response-tokens`` long, default 30-60) to each of ``--groups`` (config, prompt)
pairs (configs ``--config-tokens`` long, default ~300; text from the seed augmentation output). Two scorers on the
same model: ``reuse`` (``Scorer(prefix_cache=True)``) and ``no-reuse`` (``prefix_cache=False``: the plain
length-sorted token-budget path). Interleaved repeats, medians; scores must agree within ``--tolerance``.

Also printed: the theoretical bound of the speed-up, from the item lengths (P = shared prefix, S = suffix, n
responses per prefix): tokens ``n(P+S) / (P + nS)``, the same with attention FLOPs, and the ``(P+S)/S`` limit of
infinitely many responses; and how many (padded) token rows each path really computed.
"""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 3.0


def tokenizer():
    from csrm.model.cross_encoder.modeling import load_tokenizer

    tok = load_tokenizer("minilm", decoder=True)
    tok.eos_token = "[SEP]"  # the formatter appends EOS and the decoder pools it
    return tok


def build_model(tok, hidden: int, layers: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig

    from csrm.model.cross_encoder.modeling import CSRMModel

    torch.manual_seed(seed)
    heads = max(1, hidden // 64)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=2048, pad_token_id=tok.pad_token_id)
    model = CSRMModel.from_backbone_config(config, max_length=1024)
    with torch.no_grad():  # heads N(0, 1): scores spread over (0, 1), so the equality check means something
        for head in (model.compliance_head, model.reward_head):
            head.weight.normal_(0.0, 1.0)
    return model.eval()


def _fit(pieces: list[str], target: int, count) -> str:
    """Words of the joined pieces, cut so the text has at most ``target`` tokens (and close to it)."""
    words = " ".join(pieces).split()
    lo, hi = 1, len(words)
    while lo < hi:  # the longest word prefix within the budget
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= target:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def prefix_items(groups: int, responses: int, config_tokens: int, response_tokens: tuple[int, int], tok,
                 seed: int = 0) -> list:
    """``groups`` x ``responses`` items; configs are seed configs joined and cut to ``config_tokens`` tokens,
    responses seed responses joined and cut to a length drawn from ``response_tokens``."""
    from csrm.base.score_types import ScoreItem

    result = common.seed_augmentation()
    rows = [e for split in result.examples.values() for e in split]
    configs = sorted({e.config_text for e in rows})
    texts = sorted({e.response for e in rows if e.response})
    prompts = sorted({e.messages[-1]["content"] for e in rows})

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    rng = random.Random(seed)
    items = []
    for _ in range(groups):
        config = _fit(rng.sample(configs, 12), config_tokens, count)
        conversation = [{"role": "user", "content": rng.choice(prompts)}]
        for _ in range(responses):
            response = _fit(rng.sample(texts, 8), rng.randint(*response_tokens), count)
            items.append(ScoreItem(config, conversation, response))
    return items


def bounds(encoded, hidden: int, layers: int, ffn: int) -> dict[str, float]:
    """Theoretical speed-ups of prefix reuse from the item lengths (no padding, causal attention)."""
    from csrm.model.prefix_cache import split_point

    groups: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(encoded):
        groups.setdefault(tuple(e.input_ids[: split_point(e)]), []).append(i)
    per_token = 2 * layers * (4 * hidden * hidden + 3 * hidden * ffn)  # q,k,v,o + SwiGLU (kv heads = heads)

    def attention(queries: int, keys_before: int) -> float:  # QK^T and AV: 2 x 2 x d per (query, key) pair
        return 4 * hidden * layers * (queries * keys_before + queries * (queries + 1) / 2)

    plain_tokens = sum(len(e.input_ids) for e in encoded)
    plain_flops = sum(len(e.input_ids) * per_token + attention(len(e.input_ids), 0) for e in encoded)
    reuse_tokens, reuse_flops = 0, 0.0
    for prefix, rows in groups.items():
        p = len(prefix)
        shared = len(rows) > 1
        if shared:
            reuse_tokens += p
            reuse_flops += p * per_token + attention(p, 0)
        for i in rows:
            s = len(encoded[i].input_ids) - (p if shared else 0)
            reuse_tokens += s
            reuse_flops += s * per_token + attention(s, p if shared else 0)
    mean_p = statistics.mean(split_point(e) for e in encoded)
    mean_s = statistics.mean(len(e.input_ids) - split_point(e) for e in encoded)
    return {"mean_prefix_tokens": round(mean_p, 1), "mean_suffix_tokens": round(mean_s, 1),
            "responses_per_prefix": round(len(encoded) / len(groups), 2),
            "bound_tokens": round(plain_tokens / reuse_tokens, 3), "bound_flops": round(plain_flops / reuse_flops, 3),
            "bound_infinite_responses": round((mean_p + mean_s) / mean_s, 3),
            "real_tokens_plain": plain_tokens, "real_tokens_reuse": reuse_tokens}


def computed_rows(encoded, max_tokens: int, prefix_max_tokens: int, max_rows: int) -> dict[str, int]:
    """Padded token rows each path really runs through the model (its batch plans: ``max_tokens`` for plain
    batches, ``prefix_max_tokens`` for shared-prefix ones, as the scorer does)."""
    from csrm.model.batching import padded_tokens, token_budget_batches
    from csrm.model.prefix_cache import CPU_CHUNK_OVERHEAD, plan_prefix_batches, suffix_chunks

    lengths = [len(e.input_ids) for e in encoded]
    plain = padded_tokens(lengths, token_budget_batches(lengths, max_tokens, max_rows))
    batches, singles = plan_prefix_batches(encoded, prefix_max_tokens, max_rows)
    prefix_rows = sum(len(b.prefixes) * max(map(len, b.prefixes)) for b in batches)
    suffix_rows = 0
    for b in batches:
        sizes = [len(s) for s in b.suffixes]
        suffix_rows += sum(len(run) * sizes[run[0]] for run in suffix_chunks(sizes, CPU_CHUNK_OVERHEAD))
    single = [lengths[i] for i in singles]
    if single:
        suffix_rows += padded_tokens(single, token_budget_batches(single, max_tokens, max_rows))
    return {"padded_tokens_plain": plain, "padded_prefix_tokens_reuse": prefix_rows,
            "padded_suffix_tokens_reuse": suffix_rows, "prefix_passes": sum(len(b.prefixes) for b in batches),
            "batches_reuse": len(batches)}


def profile_reuse(scorer, items, rows: int = 20) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        scorer.score_items(items)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=24, help="distinct (config, prompt) prefixes")
    parser.add_argument("--responses", type=int, default=8, help="responses per prefix")
    parser.add_argument("--hidden", type=int, default=384, help="decoder width (heads of 64)")
    parser.add_argument("--layers", type=int, default=6, help="decoder depth")
    parser.add_argument("--config-tokens", type=int, default=300)
    parser.add_argument("--response-tokens", type=int, nargs=2, default=(30, 60), metavar=("MIN", "MAX"))
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="scorer max_tokens, both paths (default: the scorer's defaults)")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of one reuse pass")
    parser.add_argument("--chunk-overhead", type=int, default=None,
                        help="override csrm.model.prefix_cache.CPU_CHUNK_OVERHEAD (-1 = no suffix chunks)")
    args = parser.parse_args(argv)
    threads = common.set_threads(args.threads)
    import csrm.model.prefix_cache

    if args.chunk_overhead is not None:
        csrm.model.prefix_cache.CPU_CHUNK_OVERHEAD = None if args.chunk_overhead < 0 else args.chunk_overhead

    from csrm.scoring.scorer import Scorer

    tok = tokenizer()
    items = prefix_items(args.groups, args.responses, args.config_tokens, tuple(args.response_tokens), tok)
    model = build_model(tok, args.hidden, args.layers)
    scorers = {"no-reuse": Scorer(model, tok, device="cpu", prefix_cache=False, max_tokens=args.batch_tokens),
               "reuse": Scorer(model, tok, device="cpu", prefix_cache=True, max_tokens=args.batch_tokens)}
    encoded = scorers["reuse"].predictor.encode(items)
    theory = bounds(encoded, args.hidden, args.layers, 4 * args.hidden)
    work = computed_rows(encoded, scorers["no-reuse"].max_tokens, scorers["reuse"].prefix_max_tokens,
                         scorers["reuse"].max_rows)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"prefix: {len(items)} items ({args.groups} prefixes x {args.responses}), Llama hidden {args.hidden}, "
          f"{args.layers} layers ({params:.0f}M parameters), prefix {theory['mean_prefix_tokens']:.0f} + suffix "
          f"{theory['mean_suffix_tokens']:.0f} tokens, {threads} threads, load {common.machine_info()['loadavg_1m']}",
          flush=True)

    outputs = {}

    def run(name: str):
        def call():
            outputs[name] = scorers[name].score_items(items)
        return call

    times = common.interleaved({name: run(name) for name in scorers}, repeats=args.repeats, warmup=args.warmup)
    ratio = common.median(times["no-reuse"]) / common.median(times["reuse"])
    diff = max(max(abs(a.p_comply - b.p_comply), abs(a.reward - b.reward))
               for a, b in zip(outputs["reuse"], outputs["no-reuse"], strict=True))
    rows = []
    for name in scorers:
        seconds = common.median(times[name])
        computed = (work["padded_tokens_plain"] if name == "no-reuse"
                    else work["padded_prefix_tokens_reuse"] + work["padded_suffix_tokens_reuse"])
        rows.append({"method": name, "seconds": common.spread(times[name]), "items/s": round(len(items) / seconds, 1),
                     "token rows computed": computed,
                     "speed-up": round(common.median(times["no-reuse"]) / seconds, 2)})
    print(common.table(rows))
    padded_bound = work["padded_tokens_plain"] / (work["padded_prefix_tokens_reuse"]
                                                  + work["padded_suffix_tokens_reuse"])
    print(f"bounds: tokens n(P+S)/(P+nS) = {theory['bound_tokens']:.2f}x, with attention FLOPs "
          f"{theory['bound_flops']:.2f}x, of the padded token rows the paths ran {padded_bound:.2f}x, "
          f"(P+S)/S (infinitely many responses) = {theory['bound_infinite_responses']:.2f}x; achieved {ratio:.2f}x "
          f"= {100 * ratio / theory['bound_flops']:.0f}% of the FLOP bound")
    payload = {"ratio": round(ratio, 3), "ratio_name": "reuse speed-up over no reuse", "target": TARGET,
               "target_met": ratio >= TARGET, "max_abs_diff": diff, "items": len(items), "groups": args.groups,
               "responses": args.responses, "chunk_overhead": csrm.model.prefix_cache.CPU_CHUNK_OVERHEAD,
               "hidden": args.hidden, "layers": args.layers,
               "parameters_m": round(params, 1), "threads": threads,
               "batch_tokens": {"plain": scorers["no-reuse"].max_tokens, "prefix": scorers["reuse"].prefix_max_tokens},
               **theory, **work, "bound_padded_rows": round(padded_bound, 3),
               "fraction_of_flop_bound": round(ratio / theory["bound_flops"], 3), "rows": rows, "seconds": times}
    if args.profile:
        text = profile_reuse(scorers["reuse"], items)
        print(text)
        payload["profile"] = text
    common.write_results("prefix", payload, args.out, script=__file__, argv=argv)
    print(f"max abs diff of p_comply and reward, reuse vs no reuse: {diff:.2e} (tolerance {args.tolerance:g})")
    if diff > args.tolerance:
        raise SystemExit(f"scores differ by {diff:.2e} > {args.tolerance:g}")
    print(common.ratio_line("reuse_vs_no_reuse", ratio, TARGET))
    return payload


if __name__ == "__main__":
    main()
