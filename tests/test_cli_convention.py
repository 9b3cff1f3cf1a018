"""One CLI convention for all nine ``csrm`` commands (csrm.base.config): ``--help`` lists every field, the
three override forms mean the same, a wrong value names its field; the model commands keep today's
positionals and dashed flags and take an optional YAML file."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from csrm.app import cli
from csrm.app.calibrate import CalibrateConfig
from csrm.app.eval import EvalConfig
from csrm.app.export import ExportConfig
from csrm.app.serve import ServeConfig
from csrm.scoring.score_file import ScoreConfig

# command, the arguments it needs, a field to override, a value, a wrong value
COMMANDS = [
    ("augment", ["configs/augment/seed.yaml"], "seed", 7, "x"),
    ("train", ["configs/train/clause_minilm.yaml"], "reader_steps", 7, "x"),
    ("train", ["configs/train/tiny_test.yaml"], "max_steps", 7, "x"),
    ("run", ["configs/pipeline/default.yaml"], "eval_limit", 7, "x"),
    ("align", ["configs/align/smollm2_cpu.yaml"], "rounds", 7, "x"),
    ("score", ["M", "--input", "i.jsonl", "--output", "o.jsonl"], "batch_tokens", 300, "x"),
    ("serve", ["M"], "port", 8123, "x"),
    ("eval", ["M"], "limit", 7, "0"),
    ("calibrate", ["M", "--dataset-path", "D"], "batch_tokens", 7, "x"),
    ("export", ["M", "O"], "format", "csrm", "onnx"),
]
CONFIGS = {"score": ScoreConfig, "serve": ServeConfig, "eval": EvalConfig, "calibrate": CalibrateConfig,
           "export": ExportConfig}


def printed(argv: list[str], capsys) -> dict:
    assert cli.main([*argv, "--print-config"]) == 0
    # transformers.integrations prints this line on its first import when WANDB_MODE=offline (tests/conftest.py)
    out = capsys.readouterr().out.replace("[INFO] Running in WANDB offline mode\n", "")
    return yaml.safe_load(out)


@pytest.mark.parametrize(("command", "args", "key", "value", "wrong"), COMMANDS)
def test_every_command_shares_the_convention(command, args, key, value, wrong, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help", *args[:1]])  # train lists the fields of the family its YAML names
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--print-config" in text and "--key value" in text and f"  {key} " in text
    names = [f.name for f in dataclasses.fields(CONFIGS[command])] if command in CONFIGS else [key]
    assert all(f"  {name} " in text for name in names), text
    configs = [printed([command, *args, *form], capsys)
               for form in ([f"{key}={value}"], [f"--{key}", str(value)], [f"--{key}={value}"])]
    assert configs[0][key] == value and configs[0] == configs[1] == configs[2]
    assert cli.main([command, *args, f"{key}={wrong}"]) == 2
    assert f"field '{key}'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["score", "M", "--input", "i", "--output", "o", "--batch-tokens", "512", "--no-progress", "--no-prefix-cache",
      "--bf16"], {"batch_tokens": 512, "progress": False, "prefix_cache": False, "bf16": True}),
    (["score", "--no-progress", "M", "--input", "i", "--output", "o", "--no-bf16"],
     {"model": "M", "progress": False, "bf16": False}),
    (["serve", "M", "--reward-output", "p_comply", "--max-items", "3", "--token-env", "VAR"],
     {"reward_output": "p_comply", "max_items": 3, "token_env": "VAR"}),
    (["eval", "M", "--bench", "cosapien", "--data-dir", "D", "--output-dir", "O", "--no-use-hub", "--no-progress"],
     {"bench": "cosapien", "data_dir": "D", "output_dir": "O", "use_hub": False, "progress": False}),
    (["calibrate", "M", "--dataset-path", "D", "--output-dir", "O", "--dry-run", "--no-progress"],
     {"model": "M", "dataset_path": "D", "output_dir": "O", "dry_run": True, "progress": False}),
    (["export", "M", "O", "--format", "transformers", "--push-to-hub", "me/x", "--private", "--no-verify"],
     {"output_dir": "O", "format": "transformers", "push_to_hub": "me/x", "private": True, "verify": False}),
    (["export", "M", "output_dir=O"], {"model": "M", "output_dir": "O"}),
])
def test_todays_dashed_flags_still_parse(argv, expected, capsys):
    config = printed(argv, capsys)
    assert {k: config[k] for k in expected} == expected


@pytest.mark.parametrize(("argv", "expected", "old", "new"), [
    (["eval", "M", "--no-hub", "--quiet", "--blind", "--batch-size", "4"],
     {"use_hub": False, "progress": False, "blind_config": True, "zero_shot_batch_size": 4}, "quiet", "progress"),
    (["eval", "M", "hub=true", "quiet=false"], {"use_hub": True, "progress": True}, "hub", "use_hub"),
    (["calibrate", "M", "--dataset-path", "D", "--batch-size", "2"], {"batch_tokens": 1024}, "batch_size",
     "batch_tokens"),
])
def test_old_names_still_read_with_a_deprecation_message(argv, expected, old, new, capsys):
    """One name per concept (batch_tokens, progress, blind_config, use_hub); the old names work for one release
    and say so on stderr, naming old and new."""
    assert cli.main([*argv, "--print-config"]) == 0
    captured = capsys.readouterr()
    config = yaml.safe_load(captured.out)
    assert {k: config[k] for k in expected} == expected
    assert f"deprecated: '{old}' is now '{new}'" in captured.err
    assert cli.main(["eval", "M", "hub=true", "use_hub=false"]) == 2  # both names: which one is meant?
    assert "give 'use_hub' only" in capsys.readouterr().err


def test_a_model_command_reads_an_optional_yaml_file(tmp_path, capsys):
    path = tmp_path / "score.yaml"
    path.write_text("model: M\ninput: i.jsonl\noutput: o.jsonl\nbatch_tokens: 64\n")
    assert printed(["score", str(path), "--batch-tokens", "128"], capsys)["batch_tokens"] == 128
    assert printed(["score", str(path), "N"], capsys)["model"] == "N"  # a positional overrides the file
    path.write_text("model: M\ninput: i.jsonl\noutput: o.jsonl\nthreads: 0\n")
    assert cli.main(["score", str(path)]) == 2
    assert "score.yaml:4: field 'threads': must be >= 1" in capsys.readouterr().err


def test_a_stray_positional_and_a_missing_field_are_errors(capsys):
    assert cli.main(["serve", "M", "N"]) == 2 and "unexpected argument 'N'" in capsys.readouterr().err
    assert cli.main(["score", "M", "--input", "i"]) == 2 and "field 'output': missing" in capsys.readouterr().err


def test_help_and_version_import_neither_torch_nor_transformers():
    """``csrm --version`` and every ``csrm <cmd> --help`` stay fast: no command module imports torch or
    transformers before its config is parsed (measured: each --help under 1 s on 2 idle cores)."""
    import subprocess
    import sys

    code = ("import contextlib, io, sys\nfrom csrm.app import cli\nout = io.StringIO()\n"
            "for argv in [['--version']] + [[c, '--help'] for c in cli.COMMANDS]:\n"
            "    try:\n        with contextlib.redirect_stdout(out):\n            cli.main(argv)\n"
            "    except SystemExit:\n        pass\n"
            "print(out.getvalue().splitlines()[0], sorted({'torch', 'transformers'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    from csrm import __version__

    assert done.stdout.strip() == f"csrm {__version__} []", done.stdout + done.stderr
