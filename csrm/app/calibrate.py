"""``csrm calibrate MODEL --dataset-path DATASET_DIR``: post-hoc temperature scaling of the compliance head.

The command line of :func:`csrm.training.calibration.calibrate` (the method is described there): parse, fit,
print the before/after metrics and the report as JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

from csrm.base.config import at_least, dump, load_command, setting
from csrm.base.errors import InputError


def rows_as_tokens(value: Any) -> Any:
    """read as rows of 512 tokens"""  # the text of the deprecation message; batching never changes a result
    return value * 512 if isinstance(value, int) and not isinstance(value, bool) else value


@dataclass
class CalibrateConfig:
    """Settings of ``csrm calibrate`` (:func:`csrm.base.config.load_command`; MODEL is positional)."""

    RENAMED: ClassVar[dict[str, Any]] = {"batch_size": ("batch_tokens", rows_as_tokens)}

    model: str = setting(help="a saved CSRM (output_dir of 'csrm train')")
    dataset_path: str = setting(help="augmentation output folder (examples/ with the split), as dataset_path of "
                                "csrm train")
    split: str = setting("validation", "split to fit on")
    batch_tokens: int | None = setting(None, "max padded tokens (rows x longest) per forward batch (default 8192 "
                                       "on GPU, 2048 on CPU)", check=at_least(1))
    max_examples: int | None = setting(None, "fit on at most this many examples", check=at_least(1))
    output_dir: str | None = setting(None, "folder for report.json and reliability.png (default: "
                                     "MODEL/calibration)")
    dry_run: bool = setting(False, "report only; leave config.json as it is")
    device: str | None = setting(None, "cpu, cuda, cuda:1, ... (default: cuda if available)")
    report_to: str = setting("none", "'wandb' logs the metrics, bin table and diagram to Weights & Biases "
                             "(WANDB_MODE=offline: locally)")
    progress: bool = setting(True, "show the progress bar (--no-progress hides it)")
    overwrite: bool = setting(False, "write into a non-empty output_dir that is not an earlier csrm calibrate "
                              "output (only report.json and reliability.png are replaced)")


def main(argv: list[str] | None = None) -> int:
    cfg, print_config = load_command(CalibrateConfig, "csrm calibrate", __doc__.split("\n\n")[0],
                                     sys.argv[1:] if argv is None else argv)
    if print_config:
        print(dump(cfg), end="")
        return 0
    try:
        from csrm.training.calibration import calibrate

        report = calibrate(cfg.model, cfg.dataset_path, split=cfg.split, batch_tokens=cfg.batch_tokens,
                           max_examples=cfg.max_examples, output_dir=cfg.output_dir, write=not cfg.dry_run,
                           device=cfg.device, progress=cfg.progress, report_to=cfg.report_to,
                           overwrite=cfg.overwrite)
    except InputError as err:
        print(f"csrm calibrate: error: {err}", file=sys.stderr)
        return 2
    before, after = report["before"], report["after"]
    print(f"temperature {before['temperature']:.3f} -> {after['temperature']:.3f} on {report['n']} examples "
          f"({report['positives']} violations)")
    if report.get("request_temperature") is not None:
        print(f"request temperature {report['request_temperature']:.3f} ({report['requests']} requests)")
    print(f"ECE   {before['ece']:.4f} -> {after['ece']:.4f}\nBrier {before['brier']:.4f} -> {after['brier']:.4f}\n"
          f"NLL   {before['nll']:.4f} -> {after['nll']:.4f}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
