"""Leave-one-category-out transfer: how well a clause CSRM judges content of a category it has no labels for.

``python -m tools.category_transfer MODEL [key=value ...] [--seeds 42,1] [--out FILE]``

Why: CoSAlign-Test's unseen configs are mostly about drugs, weapons and sexual content, and the shared recipe's
sources label no drug or weapon content; the augmented validation split cannot show that gap, because every
category in it is labelled in training. This protocol shows it on the training run's own data, so a matcher
design can be chosen on it without looking at any benchmark's test items. For each category some training row
is labelled with, every training row whose content carries it is dropped (and every preference pair whose
sides only those rows had); the judge heads are retrained from their start on the run's cached features with
the trained reader (:func:`~csrm.model.clause.trainer.train_judge`, a few seconds each); the validation rows
that carry the category are scored (compliance AUROC: their configs allow the category or do not). Beside it,
the same retraining on all rows and its AUROC on the whole validation split, which for the run's own seed
reproduces the trained model's ``eval_auroc``.

``key=value`` overrides the run's training config (``train_config.yaml`` in MODEL), e.g. ``pseudo_weight=2``, to
compare judge settings; settings that change the features (data, encoder, pseudo-label prompts) need a new
``csrm train``. Relative paths in that config are read from the folder the run was launched in (the project
root for ``csrm run``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from transformers import AutoTokenizer

from csrm.base.errors import InputError
from csrm.model.clause.modeling import ClauseCSRMModel
from csrm.model.clause.trainer import Table, evaluate_table, feature_tables, train_judge
from csrm.training.train import load_train_config


def subset_table(table: Table, keep: torch.Tensor) -> Table:
    """``table`` with the rows where ``keep`` is true and the preference pairs whose sides are contents of kept
    rows or of no row at all (a pair side that only dropped rows had goes with them)."""
    rows = keep.nonzero().squeeze(-1)
    dropped = set(table.content_row[~keep].tolist()) - set(table.content_row[keep].tolist())
    keep_pairs = torch.tensor([a not in dropped and b not in dropped for a, b in
                               zip(table.pair_chosen.tolist(), table.pair_rejected.tolist(), strict=True)],
                              dtype=torch.bool)
    fields = {name: getattr(table, name) for name in table.__dataclass_fields__}
    for name in ("config_row", "content_row", "label", "categories", "severity", "refusal"):
        fields[name] = fields[name][rows]
    for name in ("pair_config", "pair_chosen", "pair_rejected", "pair_margin"):
        fields[name] = fields[name][keep_pairs]
    return Table(**fields)


def category_transfer(model_dir: str | Path, overrides: list[str] | None = None, *,
                      seeds: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The leave-one-category-out table of a trained clause CSRM (module doc) as a dict: per held-out category
    its AUROC per seed and mean, the training rows left and the validation rows scored; ``mean_heldout`` (the
    mean over categories); ``validation`` (all rows, whole split)."""
    model_dir = Path(model_dir)
    cfg, _ = load_train_config(model_dir / "train_config.yaml", overrides)
    seeds = tuple(seeds) if seeds else (cfg.seed,)
    accelerator = Accelerator(cpu=True)
    model = ClauseCSRMModel.from_pretrained(model_dir).eval()
    tables, _ = feature_tables(cfg, model, AutoTokenizer.from_pretrained(model_dir), accelerator)
    if "eval" not in tables:
        raise InputError("the run has no validation split to score", path=str(model_dir / "train_config.yaml"),
                         field="eval_split")
    train, val = tables["train"], tables["eval"]
    names = model.taxonomy.names
    result: dict[str, Any] = {"model": str(model_dir), "overrides": list(overrides or []), "seeds": list(seeds),
                              "validation": {"auroc": []}, "categories": {}}
    held_out = [m for m in range(len(names)) if (train.categories[:, m] > 0).any()
                and len(set(val.label[val.categories[:, m] > 0].tolist())) == 2]
    for seed in seeds:
        train_judge(model, cfg, tables, accelerator, seed=seed)
        result["validation"]["auroc"].append(evaluate_table(model, val)["eval_auroc"])
        for m in held_out:
            carries = train.categories[:, m] > 0
            train_judge(model, cfg, {**tables, "train": subset_table(train, ~carries)}, accelerator, seed=seed)
            rows = val.categories[:, m] > 0
            entry = result["categories"].setdefault(names[m], {"auroc": [], "train_rows_left": int((~carries).sum()),
                                                               "validation_rows": int(rows.sum())})
            entry["auroc"].append(evaluate_table(model, subset_table(val, rows))["eval_auroc"])
    for entry in [result["validation"], *result["categories"].values()]:
        entry["mean"] = float(np.mean(entry["auroc"]))
    result["mean_heldout"] = float(np.mean([e["mean"] for e in result["categories"].values()])) \
        if result["categories"] else float("nan")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.category_transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a clause CSRM folder written by csrm train / csrm run (holds train_config.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run's training config")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds of the judge stage (default: the run's)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    result = category_transfer(args.model, args.overrides, seeds=seeds)
    print(f"{'held-out category':<60} {'AUROC':>7} {'train rows left':>16} {'val rows':>9}")
    for name, entry in result["categories"].items():
        print(f"{name:<60} {100 * entry['mean']:>7.2f} {entry['train_rows_left']:>16} {entry['validation_rows']:>9}")
    print(f"{'mean over held-out categories':<60} {100 * result['mean_heldout']:>7.2f}")
    print(f"{'all rows, whole validation split':<60} {100 * result['validation']['mean']:>7.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
