"""Train the rule judge: ``python -m tools.rule_judge_train [CONFIG.yaml] dataset_path=DIR/rules output_dir=OUT``.

Settings: :class:`csrm.model.rule.args.RuleJudgeArgs` (``--help`` lists them). Prints what the run measured
(pair counts, fit and calibration seconds, dev calibration, wall time, peak RSS) as JSON and saves it in
``OUT/rule_judge.json``. A thin command line until the family registry (issue 31) gives ``csrm train`` an
``architecture: rule``.
"""

from __future__ import annotations

import json
import sys

from csrm.base import config as config_system
from csrm.base.errors import InputError
from csrm.model.rule.args import RuleJudgeArgs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__ + "\n" + config_system.help_text(RuleJudgeArgs))
        return 0
    path = argv.pop(0) if argv and argv[0].endswith(".yaml") else None
    try:
        args = config_system.load(RuleJudgeArgs, path, argv)
        if not args.dataset_path:
            raise InputError("missing", path=config_system.COMMAND_LINE, field="dataset_path")
        from csrm.model.rule.trainer import train

        measured = train(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(measured, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
