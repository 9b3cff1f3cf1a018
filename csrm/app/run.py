"""``csrm run RECIPE.yaml [key=value ...]``: augment -> train -> calibrate -> eval -> report from one recipe.

The command line of :class:`csrm.app.pipeline.Pipeline` (stages, reuse and the report are described there).
"""

from __future__ import annotations

import sys

from csrm.app.pipeline import Pipeline, PipelineConfig, load_pipeline_config
from csrm.base import config as config_system


def main(argv: list[str] | None = None) -> int:
    parser = config_system.command_parser("csrm run", __doc__.split("\n\n")[0], config_system.help_text(PipelineConfig),
                                          config_help="pipeline recipe YAML, e.g. configs/pipeline/default.yaml")
    args, overrides = config_system.parse_command(parser, sys.argv[1:] if argv is None else argv)
    cfg = load_pipeline_config(args.config, overrides)
    if args.print_config:
        print(config_system.dump(cfg), end="")
        return 0
    text = Pipeline(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True)).run()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
