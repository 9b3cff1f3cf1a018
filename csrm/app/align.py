"""``csrm align RECIPE.yaml [key=value | --key value ...]``: the command line of the CoSAlign loop
(:mod:`csrm.alignment.align`), and what the loop reads from :mod:`augmentation` and :mod:`eval`, which only
this layer imports: the item sources ``data.source`` ``augmentation`` (the default) and ``cosalign_test``
(:data:`ITEM_SOURCES`), and the zero-shot LLM judge among ``eval.judges`` (:func:`load_judge`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csrm.alignment.config import AlignConfig
from csrm.base.config import command_parser, dump, help_text, parse_command
from csrm.base.paths import project_path
from eval.models import ZERO_SHOT_PREFIX

if TYPE_CHECKING:  # the loop's modules import torch: loaded when the command runs, not for --help
    from csrm.alignment.items import ItemSource



def items_from_augmentation(cfg: AlignConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) items from the augmentation stage: splits ``train`` and ``validation``."""
    from augmentation import prompts_with_configs
    from csrm.alignment.items import items_from_pairs

    out = []
    for split in ("train", "validation"):
        pairs = prompts_with_configs(project_path(cfg.data.augment_recipe), split=split,
                                     configs_per_prompt=cfg.data.configs_per_prompt,
                                     overrides=cfg.data.augment_overrides)
        out.append(items_from_pairs(pairs))
    return out[0], out[1]


def items_from_cosalign_test(cfg: AlignConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) items in CoSAlign's construction: the rows of
    :func:`eval.benchmarks.cosalign_test.alignment_items` (seen prompts under contrasting configs; the unseen
    configs held out), drawn by :func:`csrm.alignment.items.items_from_cosalign_rows`."""
    from csrm.alignment.items import cosalign_data_dir, items_from_cosalign_rows
    from eval.benchmarks.cosalign_test import alignment_items

    train_rows, eval_rows = alignment_items(cosalign_data_dir(cfg), seed=cfg.data.seed)
    return items_from_cosalign_rows(cfg, train_rows, eval_rows)


# data.source -> its reader, for run_align(item_sources=...)
ITEM_SOURCES: Mapping[str, ItemSource] = {"augmentation": items_from_augmentation,
                                          "cosalign_test": items_from_cosalign_test}


def load_judge(spec: str, *, device: str = "cpu") -> Any:
    """An independent judge of ``eval.judges`` from its spec: ``zero-shot:MODEL``
    (:class:`eval.zero_shot.ZeroShotJudge`, e.g. ``zero-shot:smollm2``) or the folder of a trained CSRM
    (:func:`csrm.alignment.audit.load_csrm_judge`)."""
    if spec.startswith(ZERO_SHOT_PREFIX):
        from eval.zero_shot import ZeroShotConfig, ZeroShotJudge  # optional: needs the [align] extra

        return ZeroShotJudge.from_pretrained(ZeroShotConfig(model=spec[len(ZERO_SHOT_PREFIX):],
                                                            device="cpu" if device == "cpu" else "auto"))
    from csrm.alignment.audit import load_csrm_judge

    return load_csrm_judge(spec, device=device)


# -- command line --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "csrm align", "CoSAlign loop: sample from a policy, judge with the CSRM, train with DPO. Re-running the "
        "same command resumes at the last finished step.", help_text(AlignConfig),
        config_help="YAML recipe (configs/align/*.yaml)", config_optional=True)
    parser.add_argument("--restart", action="store_true",
                        help="discard the finished steps of an earlier run in output_dir (needed when the judge, "
                             "policy, items or settings changed since) and start over")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_command(_parser(), sys.argv[1:] if argv is None else argv)
    recipe = args.config
    if recipe and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        recipe, overrides = None, [recipe, *overrides]
    cfg = AlignConfig.load(recipe, overrides)
    if args.print_config:
        print(dump(cfg), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from csrm.alignment.align import run_align
    from csrm.alignment.distributed import is_main

    report = run_align(cfg, restart=args.restart, item_sources=ITEM_SOURCES, load_judge=load_judge)
    comparison = report.get("comparison", {}).get("overall", {})
    if comparison and is_main():
        print(f"CoSA-Score {comparison['cosa_score']['before']:.3f} -> {comparison['cosa_score']['after']:.3f}; "
              f"violation rate {comparison['violation_rate']['before']:.3f} -> "
              f"{comparison['violation_rate']['after']:.3f}; report: {Path(cfg.output_dir) / 'report.md'}")
    elif report.get("evaluation") and is_main():  # rounds=0
        for judge, overall in report["evaluation"].items():
            print(f"{judge}: CoSA-Score {overall['cosa_score']:.3f}, violation rate {overall['violation_rate']:.3f}")
        print(f"report: {Path(cfg.output_dir) / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
