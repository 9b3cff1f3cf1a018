"""``csrm score MODEL --input in.jsonl --output out.jsonl``: score a JSONL file, resumably.

Input lines: ``{"id": ..., "config": str | {name, text, allow}, "prompt": str | "messages": [...],
"response": str | null}`` (``response`` absent or null = screen the request). Every line is validated before
the model loads, by the one path the library and server use (:mod:`csrm.base.validation`: unknown fields, unknown
or never-allowed categories, lone surrogates); a bad line raises :class:`csrm.base.errors.InputError` naming file,
line and field. An input without items is an error too.

Output lines: ``{"id", "p_comply", "p_violation", "reward", "complies", "threshold", "config_id"}``, in input
order (ids as strings; ``threshold`` is on p_violation, ``config_id`` the key of per-config thresholds), plus
``evidence`` (``{"rule_number", "rule_text", "turn_index", "p_violation", "reason"}``: the rule and turn that drove
the verdict, and why where code decided it) from scorers that name one (the rule judge).

**Resuming.** Results are appended to ``OUTPUT.partial`` and flushed after every forward batch. Before the
first result, ``OUTPUT.partial.fingerprint.json`` records what produced them (:mod:`csrm.base.fingerprint`): the
model folder's digest, the input file's sha256 and the settings that change scores (bf16, the text cap
rule). A rerun compares it first: a different model, input or setting stops with exit 2 naming what changed
(``--restart`` discards the partial results and starts over), so one output never mixes two runs. With a
matching fingerprint the rerun reads the ids already there (a torn last line from a kill is cut off; any
other unreadable line, or one that is not a complete result of this input, is dropped with a warning and its
item re-scored), skips the blocks of :data:`CHUNK_ITEMS` input lines that are complete, scores the others
whole (writing only the ids not there yet: the batches are those of an uninterrupted run, so the output is
byte-identical to one), then writes ``OUTPUT`` atomically in input order and removes the partial files. No id
is ever written twice. ``--output`` may not be the input (nor a link to it).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csrm.base.config import at_least, setting
from csrm.base.errors import InputError
from csrm.base.fingerprint import check_fingerprint, file_digest, model_digest, tensors_digest
from csrm.base.io import atomic_path, check_not_input, iter_jsonl, jsonl_lines, write_jsonl
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.taxonomy import RiskTaxonomy
from csrm.base.text import CHARS_PER_TOKEN
from csrm.base.validation import parse_item
from csrm.scoring.thresholds import config_key

logger = logging.getLogger(__name__)
# items scored together (tokenized, length-sorted, batched; a clause model's feature cache starts empty for
# each): an item's score depends only on its block, so a resumed run, which rescores its unfinished blocks
# whole, writes the bytes an uninterrupted run writes. Results still flush per forward batch.
CHUNK_ITEMS = 512
FINGERPRINT_VERSION = 1
RESTART_HINT = ("rerun with --restart to discard the partial results and start over, or rerun with the "
                "original model, input and settings")


def parse_line(obj: dict[str, Any], *, path: str, line: int, taxonomy: RiskTaxonomy | None = None
               ) -> tuple[str, ScoreItem, str | SafetyConfig]:
    """Validate one input object -> (id, item, config as given) (:func:`csrm.base.validation.parse_item`)."""
    parsed = parse_item(obj, taxonomy, path=path, line=line)
    return parsed.id or "", parsed.item, parsed.config


def read_items(path: str | Path, taxonomy: RiskTaxonomy | None = None
               ) -> list[tuple[str, ScoreItem, str | SafetyConfig]]:
    """All input items, validated; duplicate ids and an input without items are errors."""
    items, seen = [], {}
    for line, obj in iter_jsonl(path):
        item_id, item, config = parse_line(obj, path=str(path), line=line, taxonomy=taxonomy)
        if item_id in seen:
            raise InputError(f"duplicate id {item_id!r} (first on line {seen[item_id]})", path=str(path), line=line,
                             field="id")
        seen[item_id] = line
        items.append((item_id, item, config))
    if not items:
        raise InputError("no items: the input has no JSON lines", path=str(path))
    return items


ROW_TYPES = {"id": str, "p_comply": float, "p_violation": float, "reward": float, "complies": bool,
             "threshold": float, "config_id": str}


def _valid_row(row: Any) -> bool:
    if not isinstance(row, dict):
        return False
    for key, kind in ROW_TYPES.items():
        value = row.get(key)
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return False
        elif not isinstance(value, kind):
            return False
    return 0.0 <= row["p_comply"] <= 1.0


def read_done(partial: Path, wanted: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Rows already in a partial output. A torn last line left by a kill is cut off; any other line that is
    not a complete result row (bad JSON or UTF-8, missing or mistyped fields, an id not in ``wanted``, a
    repeated id) is dropped with a warning, the file rewritten without it, and its item scored again."""
    if not partial.exists():
        return {}
    data = partial.read_bytes()
    end = data.rfind(b"\n") + 1
    done: dict[str, dict[str, Any]] = {}
    good: list[str] = []
    dropped = 0
    for line in jsonl_lines(data[:end].decode("utf-8", errors="replace")):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not _valid_row(row) or row["id"] in done or (wanted is not None and row["id"] not in wanted):
            dropped += 1
            continue
        done[row["id"]] = row
        good.append(line)
    if dropped:
        logger.warning("%s: dropped %d unreadable or stale line(s); their items are scored again", partial, dropped)
        with atomic_path(partial) as tmp:
            tmp.write_text("".join(line + "\n" for line in good), encoding="utf-8")
    elif end < len(data):
        with open(partial, "r+b") as handle:
            handle.truncate(end)
    return done


def fingerprint_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".fingerprint.json")


def run_fingerprint(model: str | Path | None, input_path: str | Path, *, bf16: bool, scorer: Any = None
                    ) -> dict[str, Any]:
    """What makes this run's scores (module doc): model digest, input sha256 and score-changing settings."""
    if model is None:
        model_part = "tensors:" + tensors_digest(scorer.model) if scorer is not None else "unknown"
    else:
        model_part = model_digest(model)
    return {"version": FINGERPRINT_VERSION, "model": model_part, "input": file_digest(input_path),
            "settings": {"bf16": bool(bf16), "chars_per_token_cap": CHARS_PER_TOKEN}}


def result_row(item_id: str, result: ScoreResult, config_id: str) -> dict[str, Any]:
    return {"id": item_id, **result.as_json(), "config_id": config_id}


def score_file(scorer, input_path: str | Path, output_path: str | Path, *, progress: bool = True,
               chunk_items: int = CHUNK_ITEMS, entries: list | None = None, fingerprint: dict | None = None,
               restart: bool = False) -> dict[str, int]:
    """Score ``input_path`` into ``output_path`` resumably (module doc); returns counts.

    ``entries``: the already validated :func:`read_items` of ``input_path`` (read here when omitted).
    ``fingerprint``: :func:`run_fingerprint` of this run (computed from ``scorer`` when omitted); a partial
    output with another fingerprint raises :class:`InputError` unless ``restart``.
    """
    from tqdm.auto import tqdm

    entries = read_items(input_path, getattr(scorer, "taxonomy", None)) if entries is None else entries
    output = Path(output_path)
    partial = output.with_name(output.name + ".partial")
    check_not_input(input_path, {"output": output, "output (its partial file)": partial,
                                 "output (its fingerprint file)": fingerprint_path(partial)})
    if fingerprint is None:
        fingerprint = run_fingerprint(getattr(scorer, "source", None), input_path,
                                      bf16=bool(getattr(scorer, "bf16", False)), scorer=scorer)
    output.parent.mkdir(parents=True, exist_ok=True)
    if restart:
        partial.unlink(missing_ok=True)
        fingerprint_path(partial).unlink(missing_ok=True)
    check_fingerprint(fingerprint_path(partial), fingerprint, partial=partial, what="the partial output",
                      restart_hint=RESTART_HINT)
    wanted = {item_id for item_id, _, _ in entries}
    done = read_done(partial, wanted)
    resumed = len(done)
    clear_cache = getattr(scorer, "clear_cache", None)  # a Scorer has it; a test double may not
    with open(partial, "a", encoding="utf-8") as handle, \
            tqdm(total=len(entries), initial=resumed, unit="item", disable=not progress, desc="scoring") as bar:
        for start in range(0, len(entries), chunk_items):  # fixed blocks of the input (CHUNK_ITEMS)
            chunk = entries[start:start + chunk_items]
            if all(item_id in done for item_id, _, _ in chunk):
                continue
            if clear_cache is not None:
                clear_cache()
            thresholds = []
            for _, item, config in chunk:
                if not isinstance(config, str):  # render with the model's taxonomy; names may carry thresholds
                    item.config = scorer.render(config)
                thresholds.append(scorer.threshold_for(config))
            for indices, results in scorer.iter_batches([item for _, item, _ in chunk], thresholds):
                new = 0
                for i, result in zip(indices, results, strict=True):
                    item_id, item, _ = chunk[i]
                    if item_id in done:  # written before the interruption, from this same batch
                        continue
                    row = result_row(item_id, result, config_key(item.config))
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    done[item_id] = row
                    new += 1
                handle.flush()
                bar.update(new)
    write_jsonl(output, (done[item_id] for item_id, _, _ in entries))
    partial.unlink(missing_ok=True)
    fingerprint_path(partial).unlink(missing_ok=True)
    return {"items": len(entries), "resumed": resumed, "scored": len(entries) - resumed}


@dataclass
class ScoreConfig:
    """Settings of ``csrm score`` (:func:`csrm.base.config.load_command`; MODEL is positional)."""

    model: str = setting(help="trained CSRM folder or hub id")
    input: str = setting(help="JSONL of {id, config, prompt|messages, response?}")
    output: str = setting(help="JSONL of scores (written atomically at the end)")
    restart: bool = setting(False, "discard the partial results of an earlier run (needed when the model, input "
                            "or settings changed since) and start over")
    batch_tokens: int | None = setting(None, "max padded tokens (rows x longest) per forward batch (default 8192 "
                                       "on GPU, 2048 on CPU)", check=at_least(1))
    device: str | None = setting(None, "cpu, cuda, cuda:1 ... (default: cuda if available)")
    threads: int | None = setting(None, "torch intra-op threads", check=at_least(1))
    bf16: bool | None = setting(None, "bf16 autocast (default: on for CUDA with bf16, off on CPU)")
    prefix_cache: bool = setting(True, "shared-prefix reuse (decoders); --no-prefix-cache disables it")
    progress: bool = setting(True, "show the progress bar (--no-progress hides it)")
