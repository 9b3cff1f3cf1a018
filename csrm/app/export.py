"""``csrm export MODEL OUTPUT_DIR``: a saved CSRM as a folder plain ``transformers`` loads (no csrm import needed).

The command line of :func:`csrm.scoring.export.export` (what is written, and how it is verified, is described
there): parse, export (and push), print a one-line JSON summary.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass

from csrm.base.config import dump, load_command, setting
from csrm.base.errors import InputError
from csrm.scoring.export import Format, export


@dataclass
class ExportConfig:
    """Settings of ``csrm export`` (:func:`csrm.base.config.load_command`; MODEL and OUTPUT_DIR are positional)."""

    model: str = setting(help="a saved CSRM folder (csrm train / csrm run output)")
    output_dir: str = setting(help="the folder to write (new, empty, or an earlier csrm export output)")
    format: Format = setting("auto", "transformers: a folder plain transformers loads without csrm (a cross-encoder "
                                       "as a standard *ForSequenceClassification; a clause-reading CSRM with its "
                                       "remote code: AutoModel.from_pretrained(path, trust_remote_code=True)); "
                                       "csrm: the CSRM folder as is plus a model card (csrm.load only); auto: "
                                       "transformers")
    report: str | None = setting(None, "a run's report.json for the card's evaluation table (default: the one "
                                 "beside the model folder, if any)")
    push_to_hub: str | None = setting(None, "also upload the folder to this hub repo (OWNER/NAME)")
    private: bool = setting(False, "create the hub repository as private")
    verify: bool = setting(True, "compare probe scores with csrm.load (--no-verify skips it)")
    overwrite: bool = setting(False, "write into a non-empty OUTPUT_DIR that is not an earlier csrm export output "
                              "(only the files export writes are replaced; everything else is kept)")


def main(argv: list[str] | None = None) -> int:
    cfg, print_config = load_command(ExportConfig, "csrm export", __doc__.split("\n\n")[0],
                                     sys.argv[1:] if argv is None else argv, positionals=("model", "output_dir"))
    if print_config:
        print(dump(cfg), end="")
        return 0
    logging.basicConfig(level=logging.WARNING)
    try:
        out = export(cfg.model, cfg.output_dir, fmt=cfg.format, report=cfg.report, push_to_hub=cfg.push_to_hub,
                     private=cfg.private, verify=cfg.verify, overwrite=cfg.overwrite)
    except InputError as err:
        print(f"csrm export: error: {err}", file=sys.stderr)
        return 2
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    section = config.get("csrm") or {}
    print(json.dumps({"out": str(out), "architectures": config.get("architectures"),
                      "max_abs_reward_difference": section.get("max_abs_reward_difference"),
                      "reward_bias": section.get("reward_bias"), "pushed_to": cfg.push_to_hub}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
