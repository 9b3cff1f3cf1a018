"""``csrm eval MODEL --bench cosapien,dynabench,cosalign-test [--data-dir DIR] [--output-dir DIR] [--limit N]``.

Loads the benchmarks first (local files under ``--data-dir`` else the hub; an unavailable one is skipped
with its reason when several are asked for, and is an error when it is the only one), then the model, scores
every dev and test item, and writes ``report.json``, ``report.md``, ``predictions.jsonl`` and PNG plots
under ``--output-dir``; the headline table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from csrm.base.config import add_print_config, print_options
from csrm.base.errors import InputError
from csrm.base.paths import data_dir
from csrm.base.validation import check_model_dir, open_fraction, positive_int
from eval.benchmarks import BENCHMARKS, COSALIGN_DEV_CHOICES, resolve_names
from eval.harness import evaluate, load_benchmarks, stderr_progress
from eval.models import ZERO_SHOT_PREFIX, is_config_blind, load_scorer
from eval.report import log_report, slug, write_report


@dataclass
class EvalConfig:
    """Options of ``csrm eval``."""

    model: str = field(metadata={"help": "CSRM folder (csrm.scoring.scorer.load), or zero-shot:<hf id|folder|.gguf|smollm2>"})
    bench: str = field(default=",".join(BENCHMARKS), metadata={
        "help": f"comma list of benchmarks: {', '.join(BENCHMARKS)} or all"})
    data_dir: str | None = field(default=None, metadata={
        "help": "folder with local benchmark files (cosapien/*.jsonl, dynabench/*.jsonl, cosalign_test/); "
                "default $CSRM_DATA_DIR or ../shared/data"})
    output_dir: str | None = field(default=None, metadata={"help": "output folder; default runs/eval/<model>"})
    limit: int | None = field(default=None, metadata={
        "help": "at most N dev and N test items per benchmark, spread over configs and label kinds"})
    no_hub: bool = field(default=False, metadata={"help": "never try the Hugging Face Hub, local files only"})
    blind: bool = field(default=False, metadata={
        "help": "blank the config text of every item (automatic for a CSRM saved with blind_config)"})
    batch_size: int | None = field(default=None, metadata={"help": "zero-shot judge batch size"})
    device: str | None = field(default=None, metadata={"help": "zero-shot judge device (cpu, cuda, auto)"})
    dev_fraction: float = field(default=0.2, metadata={
        "help": "share of each (config, label kind) stratum held out as dev for threshold tuning"})
    cosalign_dev: str = field(default="seen", metadata={
        "help": "CoSAlign-Test dev split: 'seen' (seen configs = dev, unseen = test) or 'slice'"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars on stderr"})
    report_to: str = field(default="none", metadata={
        "help": "'wandb' logs every benchmark's metrics, the per-config table and the plots to Weights & Biases "
                "(WANDB_MODE=offline: locally)"})


def _help(name: str) -> str:
    return next(f.metadata["help"] for f in fields(EvalConfig) if f.name == name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csrm eval", description=__doc__.split("\n\n")[1])
    parser.add_argument("model", help=_help("model"))
    parser.add_argument("--bench", default=EvalConfig.bench, help=_help("bench"))
    parser.add_argument("--data-dir", default=None, help=_help("data_dir"))
    parser.add_argument("--output-dir", default=None, help=_help("output_dir"))
    parser.add_argument("--limit", type=positive_int, default=None, help=_help("limit"))
    parser.add_argument("--no-hub", action="store_true", help=_help("no_hub"))
    parser.add_argument("--blind", action="store_true", help=_help("blind"))
    parser.add_argument("--batch-size", type=positive_int, default=None, help=_help("batch_size"))
    parser.add_argument("--device", default=None, help=_help("device"))
    parser.add_argument("--dev-fraction", type=open_fraction, default=EvalConfig.dev_fraction,
                        help=_help("dev_fraction"))
    parser.add_argument("--cosalign-dev", choices=COSALIGN_DEV_CHOICES, default=EvalConfig.cosalign_dev,
                        help=_help("cosalign_dev"))
    parser.add_argument("--quiet", action="store_true", help=_help("quiet"))
    parser.add_argument("--report-to", default="none", help=_help("report_to"))
    return parser


def parse_config(argv: list[str] | None) -> EvalConfig:
    options = vars(add_print_config(build_parser()).parse_args(argv))
    if options.pop("print_config"):
        print_options(argparse.Namespace(**options))
        raise SystemExit(0)
    return EvalConfig(**options)


def default_out(model: str, blind: bool) -> Path:
    """``runs/eval/<model>`` under the working directory (never inside an installed package)."""
    return Path("runs") / "eval" / (slug(model) + ("-blind" if blind else ""))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``csrm eval``; returns the exit status."""
    cfg = parse_config(argv)
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
    loaded, skipped = load_benchmarks(names, root, use_hub=not cfg.no_hub, dev_fraction=cfg.dev_fraction,
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
    settings = {"bench": names, "data_dir": str(root), "limit": cfg.limit, "use_hub": not cfg.no_hub,
                "dev_fraction": cfg.dev_fraction, "cosalign_dev": cfg.cosalign_dev}
    run = evaluate(scorer, loaded, model=cfg.model, blind=blind, skipped=skipped, settings=settings,
                   progress=None if cfg.quiet else stderr_progress)
    out = Path(cfg.output_dir) if cfg.output_dir else default_out(cfg.model, blind)
    paths = write_report(run, out)
    log_report(json.loads(paths["json"].read_text(encoding="utf-8")), paths, cfg.report_to)
    text = paths["markdown"].read_text(encoding="utf-8")
    print(text.split("\n## ", 1)[0].rstrip())
    print(f"\nreport: {paths['markdown']} (JSON {paths['json'].name}, plots and predictions in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
