"""``csrm eval MODEL --bench cosapien,dynabench,cosalign-test [--data-dir DIR] [--output-dir DIR] [--limit N]``.

Loads the benchmarks first (local files under ``--data-dir`` else the hub; an unavailable one is skipped
with its reason when several are asked for, and is an error when it is the only one), then the model, scores
every dev and test item, and writes ``report.json``, ``report.md``, ``predictions.jsonl`` and PNG plots
under ``--output-dir``; the headline table is printed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from csrm.base.config import at_least, dump, load_command, open_fraction, setting
from csrm.base.errors import InputError
from csrm.base.paths import data_dir
from csrm.base.validation import check_model_dir
from eval.benchmarks import BENCHMARKS, CosalignDev, resolve_names
from eval.harness import evaluate, load_benchmarks, stderr_progress
from eval.models import ZERO_SHOT_PREFIX, is_config_blind, load_scorer
from eval.report import log_report, slug, write_report


@dataclass
class EvalConfig:
    """Settings of ``csrm eval`` (:func:`csrm.base.config.load_command`; MODEL is positional)."""

    model: str = setting(help="CSRM folder (csrm.scoring.scorer.load), or zero-shot:<hf id|folder|.gguf|smollm2>")
    bench: str = setting(",".join(BENCHMARKS), f"comma list of benchmarks: {', '.join(BENCHMARKS)} or all")
    data_dir: str | None = setting(None, "folder with local benchmark files (cosapien/*.jsonl, dynabench/*.jsonl, "
                                   "cosalign_test/); default $CSRM_DATA_DIR or ../shared/data")
    output_dir: str | None = setting(None, "output folder; default runs/eval/<model>")
    limit: int | None = setting(None, "at most N dev and N test items per benchmark, spread over configs and "
                                "label kinds", check=at_least(1))
    hub: bool = setting(True, "try the Hugging Face Hub when local files are missing (--no-hub: local files "
                        "only)")
    blind: bool = setting(False, "blank the config text of every item (automatic for a CSRM saved with "
                          "blind_config)")
    batch_size: int | None = setting(None, "zero-shot judge batch size", check=at_least(1))
    device: str | None = setting(None, "zero-shot judge device (cpu, cuda, auto)")
    dev_fraction: float = setting(0.2, "share of each (config, label kind) stratum held out as dev for threshold "
                                  "tuning", check=open_fraction)
    cosalign_dev: CosalignDev = setting("seen", "CoSAlign-Test dev split: 'seen' (seen configs "
                                                          "= dev, unseen = test) or 'slice'")
    rule_reading: bool = setting(True, "on DynaBench, also run the rule-reading tests (rule swap, removal, "
                                 "within-transcript pairs, length; eval/rule_reading.py) and print their table; "
                                 "--no-rule-reading skips them")
    quiet: bool = setting(False, "no progress bars on stderr")
    report_to: str = setting("none", "'wandb' logs every benchmark's metrics, the per-config table and the plots "
                             "to Weights & Biases (WANDB_MODE=offline: locally)")


def default_out(model: str, blind: bool) -> Path:
    """``runs/eval/<model>`` under the working directory (never inside an installed package)."""
    return Path("runs") / "eval" / (slug(model) + ("-blind" if blind else ""))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``csrm eval``; returns the exit status."""
    cfg, print_config = load_command(EvalConfig, "csrm eval", __doc__.split("\n\n")[1],
                                     sys.argv[1:] if argv is None else argv)
    if print_config:
        print(dump(cfg), end="")
        return 0
    try:
        names = resolve_names(cfg.bench)
    except ValueError as err:
        print(f"csrm eval: error: {err}", file=sys.stderr)
        return 2
    if not cfg.model.startswith(ZERO_SHOT_PREFIX):
        try:  # before the benchmarks load: a folder that is not a saved CSRM is named at once
            check_model_dir(cfg.model)
        except InputError as err:
            print(f"csrm eval: error: {err}", file=sys.stderr)
            return 2
    root = Path(cfg.data_dir) if cfg.data_dir else data_dir()
    loaded, skipped = load_benchmarks(names, root, use_hub=cfg.hub, dev_fraction=cfg.dev_fraction,
                                      cosalign_dev=cfg.cosalign_dev, limit=cfg.limit)
    for reason in skipped.values():
        print(f"csrm eval: {'error' if not loaded else 'skipping'}: {reason}", file=sys.stderr)
    if not loaded:
        return 2
    try:
        scorer = load_scorer(cfg.model, device=cfg.device, batch_size=cfg.batch_size)
    except (OSError, ImportError) as err:
        print(f"csrm eval: error: could not load model {cfg.model!r}: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    blind = cfg.blind or is_config_blind(scorer)
    settings = {"bench": names, "data_dir": str(root), "limit": cfg.limit, "use_hub": cfg.hub,
                "dev_fraction": cfg.dev_fraction, "cosalign_dev": cfg.cosalign_dev}
    run = evaluate(scorer, loaded, model=cfg.model, blind=blind, skipped=skipped, settings=settings,
                   progress=None if cfg.quiet else stderr_progress, rule_reading=cfg.rule_reading)
    out = Path(cfg.output_dir) if cfg.output_dir else default_out(cfg.model, blind)
    paths = write_report(run, out)
    log_report(json.loads(paths["json"].read_text(encoding="utf-8")), paths, cfg.report_to)
    text = paths["markdown"].read_text(encoding="utf-8")
    print(text.split("\n## ", 1)[0].rstrip())
    print(f"\nreport: {paths['markdown']} (JSON {paths['json'].name}, plots and predictions in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
