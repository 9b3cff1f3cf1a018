"""The one config system (csrm.base.config) and the one CLI convention of augment, train, run and align."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from csrm.app import cli
from csrm.base.config import build, dump, field_help, load, normalize_overrides, parse_value
from csrm.base.errors import InputError


@dataclass
class Inner:
    rate: float = field(default=0.5, metadata={"help": "a rate"})
    name: str = field(default="x", metadata={"help": "a name"})


@dataclass
class Item:
    limit: int = field(default=0, metadata={"help": "a limit"})


@dataclass
class Outer:
    steps: int = field(default=1, metadata={"help": "steps"})
    label: str | None = field(default=None, metadata={"help": "optional text"})
    tags: list[str] = field(default_factory=list, metadata={"help": "tags"})
    inner: Inner = field(default_factory=Inner, metadata={"help": "a section"})
    items: list[Item] = field(default_factory=list, metadata={"help": "a list of sections"})


def test_every_override_form_means_the_same():
    assert normalize_overrides(["steps=3", "--steps", "3", "--steps=3", "--max-steps", "4", "--flag"]) == [
        "steps=3", "steps=3", "steps=3", "max_steps=4", "flag=true"]


def test_one_coercion_rule():
    assert parse_value("") is None and parse_value("3") == 3 and parse_value("[a, b]") == ["a", "b"]
    assert parse_value("{unclosed") == "{unclosed"  # text YAML cannot parse stays text
    cfg = load(Outer, None, ["steps=2", "label=", "inner.rate=1e-5", "inner.name=", "tags=solo"])
    assert (cfg.steps, cfg.label, cfg.inner.rate, cfg.inner.name, cfg.tags) == (2, None, 1e-5, "", ["solo"])
    assert load(Outer, None, ["inner.rate=2"]).inner.rate == 2.0 and isinstance(load(Outer, None, ["inner.rate=2"]).inner.rate, float)


def test_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 2\ninner:\n  rat: 3\n")
    with pytest.raises(InputError, match=r"c.yaml:3: field 'inner.rat': unknown key 'rat'"):
        load(Outer, path)
    path.write_text("steps: two\n")
    with pytest.raises(InputError, match=r"c.yaml:1: field 'steps': expected an integer"):
        load(Outer, path)
    path.write_text("items:\n  - limit: 1\n  - limit: x\n")
    with pytest.raises(InputError, match=r"c.yaml:3: field 'items.1.limit'"):
        load(Outer, path)
    assert load(Outer, path, ["items.1.limit=4"]).items[1].limit == 4  # the override fixes the file's value
    with pytest.raises(InputError, match=r"command line: field 'steps': expected an integer"):
        load(Outer, path, ["--steps", "many", "items.1.limit=4"])
    with pytest.raises(InputError, match=r"field .items.5.: no such setting"):
        load(Outer, path, ["items.5.limit=1"])
    with pytest.raises(InputError, match="not key=value"):
        load(Outer, None, ["steps"])


def test_help_lists_nested_fields_and_dump_round_trips():
    names = [name for name, _, _ in field_help(Outer)]
    assert names == ["steps", "label", "tags", "inner", "inner.rate", "inner.name", "items", "items.N.limit"]
    cfg = load(Outer, None, ["inner.rate=0.25", "steps=4"])
    assert build(Outer, yaml.safe_load(dump(cfg))) == cfg


@pytest.mark.parametrize(("command", "config", "key", "value"), [
    ("augment", "configs/augment/seed.yaml", "seed", 7),
    ("train", "configs/train/tiny_test.yaml", "max_steps", 7),
    ("run", "configs/pipeline/default.yaml", "eval_limit", 7),
    ("align", "configs/align/smollm2_cpu.yaml", "rounds", 7),
])
def test_every_config_command_shares_the_convention(command, config, key, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--print-config" in text and "--key value" in text and f"  {key} " in text
    for form in ([f"{key}={value}"], [f"--{key}", str(value)], [f"--{key}={value}"]):
        assert cli.main([command, config, *form, "--print-config"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)[key] == value


@pytest.mark.parametrize(("argv", "key", "value"), [
    (["calibrate", "M", "--dataset-path", "D", "--output-dir", "out"], "output_dir", "out"),
    (["score", "M", "--input", "in.jsonl", "--output", "o.jsonl", "--batch-tokens", "300"], "batch_tokens", 300),
    (["serve", "M", "--port", "8123"], "port", 8123),
    (["export", "M", "O", "--format", "csrm"], "format", "csrm"),
    (["eval", "M", "--bench", "augmented", "--output-dir", "out"], "output_dir", "out"),
])
def test_flag_commands_print_their_resolved_options(argv, key, value, capsys):
    """The flag-style commands share --print-config (and a folder they write is --output-dir)."""
    try:
        code = cli.main([*argv, "--print-config"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 0
    assert yaml.safe_load(capsys.readouterr().out)[key] == value
