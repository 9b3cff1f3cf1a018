"""The ``csrm`` command: one subcommand per pipeline stage, each implemented by its own module's ``main``.

Every command's module is ``csrm.app.<command>``, a thin ``main``: parse (:mod:`csrm.base.config`) -> one
library call -> write. Modules are imported lazily, and import torch and transformers only where they are
used, so ``csrm --version`` and every ``csrm <cmd> --help`` stay fast.
"""

from __future__ import annotations

import importlib
import sys

from csrm.base.errors import InputError

COMMANDS: dict[str, tuple[str, str]] = {
    "augment": ("csrm.app.augment", "synthesize config-targeted tuples and preference pairs from a YAML recipe"),
    "train": ("csrm.app.train", "train a CSRM from a YAML config (runs under accelerate/torchrun/deepspeed)"),
    "calibrate": ("csrm.app.calibrate", "fit a temperature on validation data and store it with the model"),
    "score": ("csrm.app.score", "score a JSONL file of (config, prompt, response) items, resumably"),
    "serve": ("csrm.app.serve", "serve a CSRM over HTTP (score, rank, health)"),
    "eval": ("csrm.app.eval", "evaluate a CSRM on CoSApien, DynaBench and CoSAlign-Test"),
    "run": ("csrm.app.run", "run augment -> train -> calibrate -> eval -> report from one recipe"),
    "export": ("csrm.app.export", "write a CSRM as a standard transformers reward model (+ model card, --push-to-hub)"),
    "align": ("csrm.app.align", "CoSAlign loop: sample, judge with the CSRM, train a policy with DPO"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: csrm <command> [args]   (csrm --version: the installed version)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'csrm <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from csrm import __version__

        print(f"csrm {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"csrm: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except InputError as err:
        print(f"csrm {name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
