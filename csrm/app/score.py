"""``csrm score MODEL --input in.jsonl --output out.jsonl``: score a JSONL file, resumably.

The command line of :mod:`csrm.scoring.score_file` (the input and output formats and the resume rule are
described there): parse, check the input and the partial output's fingerprint before the model loads, score,
print the counts. Under ``torchrun`` / ``accelerate launch`` each process scores its shard
(:mod:`csrm.scoring.distributed_score`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from csrm.base.config import dump, load_command
from csrm.base.errors import InputError
from csrm.base.fingerprint import check_fingerprint
from csrm.base.io import check_not_input
from csrm.base.validation import check_model_dir, model_taxonomy
from csrm.scoring.score_file import (
    RESTART_HINT,
    ScoreConfig,
    fingerprint_path,
    read_items,
    run_fingerprint,
    score_file,
)


def main(argv: list[str] | None = None) -> int:
    cfg, print_config = load_command(ScoreConfig, "csrm score", __doc__.split("\n\n")[0],
                                     sys.argv[1:] if argv is None else argv)
    if print_config:
        print(dump(cfg), end="")
        return 0
    if not Path(cfg.input).is_file():
        raise InputError("no such file", path=cfg.input)
    partial = Path(cfg.output).with_name(Path(cfg.output).name + ".partial")
    check_not_input(cfg.input, {"output": cfg.output, "output (its partial file)": partial,
                                "output (its fingerprint file)": fingerprint_path(partial)})
    entries = read_items(cfg.input, model_taxonomy(cfg.model))  # fail on bad lines before loading the model
    check_model_dir(cfg.model)
    from csrm.scoring.distributed_score import launched_world_size, score_distributed

    if launched_world_size() > 1:  # torchrun / accelerate launch: one shard per process
        return score_distributed(cfg, entries)
    import torch

    from csrm.scoring.scorer import load, resolve_bf16

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fingerprint = run_fingerprint(cfg.model, cfg.input, bf16=resolve_bf16(cfg.bf16, device))
    if not cfg.restart:  # a mismatch stops here, before the model loads
        check_fingerprint(fingerprint_path(partial), fingerprint, partial=partial, what="the partial output",
                          restart_hint=RESTART_HINT)
    scorer = load(cfg.model, device=cfg.device, max_tokens=cfg.batch_tokens, bf16=cfg.bf16,
                  num_threads=cfg.threads, prefix_cache=None if cfg.prefix_cache else False)
    counts = score_file(scorer, cfg.input, cfg.output, progress=cfg.progress, entries=entries,
                        fingerprint=fingerprint, restart=cfg.restart)
    print(json.dumps({"output": os.fspath(cfg.output), **counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
