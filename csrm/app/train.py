"""``csrm train CONFIG.yaml [key=value ...]``: train a CSRM on an augmentation output folder.

The YAML names the model family (``architecture``: clause, the default, cross_encoder or rule); ``--help`` lists
the fields of the family the config (or an ``architecture=`` override) names. Runs as is (one process) and
under ``accelerate launch``, ``torchrun`` and the ``deepspeed`` launcher (``-m csrm train``; the launcher's
``--local_rank`` argument is accepted). Exit codes: 0 done, 2 bad input, 3 training stopped on a non-finite loss.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import yaml

from csrm.base import config as config_system
from csrm.base.errors import InputError, NonFiniteLossError
from csrm.training import train as training


def strip_launcher_args(argv: list[str]) -> list[str]:
    """Drop ``--local_rank=N`` / ``--local-rank N`` (added by the deepspeed launcher; LOCAL_RANK is in the env)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--local_rank", "--local-rank"):
            skip = True
            continue
        if arg.startswith(("--local_rank=", "--local-rank=")):
            continue
        out.append(arg)
    return out


def _help_class(argv: list[str]) -> type:
    """The config class ``--help`` lists: the family named by the config file or an override, else the default."""
    words = [a for a in argv if a not in ("-h", "--help")]
    path = next((w for w in words if w.endswith((".yaml", ".yml")) and os.path.isfile(w)), None)
    overrides = [w for w in config_system.normalize_overrides(words) if w.startswith("architecture=")]
    try:
        return training.config_class(path, overrides)
    except InputError:
        return training.config_class(None)


def main(argv: list[str] | None = None) -> int:
    argv = strip_launcher_args(list(sys.argv[1:] if argv is None else argv))
    fields = config_system.help_text(_help_class(argv)) if {"-h", "--help"} & set(argv) else ""
    parser = config_system.command_parser("csrm train", __doc__.split("\n\n")[0], fields,
                                          config_help="training YAML (see configs/train/)")
    args, overrides = config_system.parse_command(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg, raw = training.load_train_config(args.config, overrides)
        if args.print_config:
            # a TrainingArguments renders its enums itself (to_dict); the clause config is plain data
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False) if hasattr(cfg, "to_dict") else
                  config_system.dump(cfg), end="")
            return 0
        summary = training.run_training(cfg, raw_config=raw)
    except InputError as err:
        print(f"csrm train: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"csrm train: error: {err}", file=sys.stderr)
        return 3
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, default=str))
    if cfg.architecture == "cross_encoder":
        from csrm.model.cross_encoder.train import leave_process_group

        leave_process_group()
    end_launched_rank()
    return 0


def end_launched_rank() -> None:
    """End a rank started by a launcher (``WORLD_SIZE`` > 1) here, once its output is flushed, without the
    interpreter's teardown. The model, checkpoints and wandb run are written and the process group is gone by
    now; what teardown would add is destroying the C++ objects that DeepSpeed and the gloo backend still hold,
    and that is where a rank sometimes died after a complete run ("terminate called without an active
    exception", SIGABRT, measured once in about twenty ZeRO-3 runs on a loaded box), failing the launch. A
    process run directly, and every in-process caller of :func:`main`, returns normally."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
