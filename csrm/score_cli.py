"""``csrm score MODEL --input in.jsonl --output out.jsonl``: score a JSONL file, resumably.

Input lines: ``{"id": ..., "config": str | {name, text, allow}, "prompt": str | "messages": [...],
"response": str | null}`` (``response`` absent or null = screen the request). Every line is validated before
the model loads; a bad line raises :class:`csrm.errors.InputError` naming file, line and field.

Output lines: ``{"id", "p_comply", "p_violation", "reward", "complies", "threshold", "config_id"}``, in input
order (ids as strings; ``threshold`` is on p_violation, ``config_id`` the key of per-config thresholds).

**Resuming.** Results are appended to ``OUTPUT.partial`` and flushed after every forward batch. A rerun
reads the ids already there (a torn last line from a kill is cut off), skips them, scores the rest, then
writes ``OUTPUT`` atomically in input order and removes the partial file. No id is ever written twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from csrm.errors import InputError
from csrm.io import iter_jsonl, require, write_jsonl
from csrm.records import as_messages
from csrm.safety_config import SafetyConfig
from csrm.score_types import ScoreItem, ScoreResult
from csrm.thresholds import config_key

logger = logging.getLogger(__name__)
CHUNK_ITEMS = 4096  # items tokenized and length-sorted together; results still flush per forward batch


def parse_line(obj: dict[str, Any], *, path: str, line: int) -> tuple[str, ScoreItem, str | SafetyConfig]:
    """Validate one input object -> (id, item, config as given)."""
    where = {"path": path, "line": line}
    raw_id = require(obj, "id", (str, int), **where)
    config_raw = require(obj, "config", (str, dict), **where)
    if isinstance(config_raw, dict):
        try:
            config: str | SafetyConfig = SafetyConfig.from_dict(config_raw, path=path, line=line)
        except InputError as err:
            raise InputError(err.reason, path=path, line=line, field=f"config.{err.field or 'text'}") from None
    else:
        config = config_raw
    if ("prompt" in obj) == ("messages" in obj):
        raise InputError("give exactly one of 'prompt' or 'messages'", field="prompt", **where)
    if "prompt" in obj:
        messages = as_messages(require(obj, "prompt", str, **where))
    else:
        try:
            messages = as_messages(require(obj, "messages", list, **where))
        except ValueError as err:
            raise InputError(str(err), field="messages", **where) from None
    response = obj.get("response")
    if response is not None and not isinstance(response, str):
        raise InputError(f"expected str or null, got {type(response).__name__}", field="response", **where)
    text = config.render() if isinstance(config, SafetyConfig) else config
    return str(raw_id), ScoreItem(text, messages, response, item_id=str(raw_id)), config


def read_items(path: str | Path) -> list[tuple[str, ScoreItem, str | SafetyConfig]]:
    """All input items, validated; duplicate ids are an error."""
    items, seen = [], {}
    for line, obj in iter_jsonl(path):
        item_id, item, config = parse_line(obj, path=str(path), line=line)
        if item_id in seen:
            raise InputError(f"duplicate id {item_id!r} (first on line {seen[item_id]})", path=str(path), line=line,
                             field="id")
        seen[item_id] = line
        items.append((item_id, item, config))
    return items


def read_done(partial: Path) -> dict[str, dict[str, Any]]:
    """Rows already in a partial output, cutting off a torn last line left by a kill."""
    if not partial.exists():
        return {}
    data = partial.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(partial, "r+b") as handle:
            handle.truncate(end)
    done: dict[str, dict[str, Any]] = {}
    for line in data[:end].decode("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            done[str(row["id"])] = row
    return done


def result_row(item_id: str, result: ScoreResult, config_id: str) -> dict[str, Any]:
    return {"id": item_id, "p_comply": result.p_comply, "p_violation": result.p_violation, "reward": result.reward,
            "complies": result.complies, "threshold": result.threshold, "config_id": config_id}


def score_file(scorer, input_path: str | Path, output_path: str | Path, *, progress: bool = True,
               chunk_items: int = CHUNK_ITEMS, entries: list | None = None) -> dict[str, int]:
    """Score ``input_path`` into ``output_path`` resumably (module doc); returns counts.

    ``entries``: the already validated :func:`read_items` of ``input_path`` (read here when omitted).
    """
    from tqdm.auto import tqdm

    entries = read_items(input_path) if entries is None else entries
    output = Path(output_path)
    partial = output.with_name(output.name + ".partial")
    done = read_done(partial)
    wanted = {item_id for item_id, _, _ in entries}
    stale = set(done) - wanted
    if stale:
        logger.warning("%d ids in %s are not in the input; dropped", len(stale), partial)
    todo = [e for e in entries if e[0] not in done]
    resumed = len(entries) - len(todo)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "a", encoding="utf-8") as handle, \
            tqdm(total=len(entries), initial=resumed, unit="item", disable=not progress, desc="scoring") as bar:
        for start in range(0, len(todo), chunk_items):
            chunk = todo[start:start + chunk_items]
            thresholds = []
            for _, item, config in chunk:
                if not isinstance(config, str):  # render with the model's taxonomy; names may carry thresholds
                    item.config = scorer.render(config)
                thresholds.append(scorer.threshold_for(config))
            for indices, results in scorer.iter_batches([item for _, item, _ in chunk], thresholds):
                for i, result in zip(indices, results, strict=True):
                    item_id, item, _ = chunk[i]
                    row = result_row(item_id, result, config_key(item.config))
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    done[item_id] = row
                handle.flush()
                bar.update(len(indices))
    write_jsonl(output, (done[item_id] for item_id, _, _ in entries))
    partial.unlink(missing_ok=True)
    return {"items": len(entries), "resumed": resumed, "scored": len(todo)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csrm score", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="trained CSRM folder or hub id")
    parser.add_argument("--input", required=True, help="JSONL of {id, config, prompt|messages, response?}")
    parser.add_argument("--output", required=True, help="JSONL of scores (written atomically at the end)")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="max padded tokens (rows x longest) per forward batch (default 8192 on GPU, 2048 on CPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on for CUDA with bf16, off on CPU)")
    parser.add_argument("--no-prefix-cache", action="store_true", help="disable shared-prefix reuse (decoders)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_tokens is not None and args.batch_tokens < 1:
        raise InputError("must be positive", field="--batch-tokens")
    if not Path(args.input).is_file():
        raise InputError("no such file", path=args.input)
    entries = read_items(args.input)  # fail on bad lines before loading the model
    from csrm.distributed_score import launched_world_size, score_distributed

    if launched_world_size() > 1:  # torchrun / accelerate launch: one shard per process
        return score_distributed(args, entries)
    from csrm.scoring import load

    scorer = load(args.model, device=args.device, max_tokens=args.batch_tokens, bf16=args.bf16,
                  num_threads=args.threads, prefix_cache=False if args.no_prefix_cache else None)
    counts = score_file(scorer, args.input, args.output, progress=not args.no_progress, entries=entries)
    print(json.dumps({"output": os.fspath(args.output), **counts}))
    return 0
