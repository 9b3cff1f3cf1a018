"""The one config system (csrm.base.config); its use by every command is tests/app/test_cli_convention.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from csrm.base.config import (
    at_least,
    build,
    dump,
    field_help,
    load,
    normalize_overrides,
    parse_value,
    setting,
    split_command_line,
)
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


def test_boolean_flags_take_no_value_and_have_a_no_form():
    flags = {"progress", "bf16"}
    assert split_command_line(["--no-progress", "M", "--bf16", "--no-bf16", "--bf16", "false", "x=1", "N"], flags) == (
        ["M", "N"], ["progress=false", "bf16=true", "bf16=false", "bf16=false", "x=1"])
    assert split_command_line(["--no-progress", "M"]) == ([], ["no_progress=M"])  # unknown flags: generic rule
    assert split_command_line(["runs/a=b", "--batch-tokens=5"], flags) == (["runs/a=b"], ["batch_tokens=5"])


@dataclass
class Checked:
    mode: Literal["a", "b"] = setting("a", "a mode")
    count: int | None = setting(None, "a count", check=at_least(1))


def test_choices_and_checks_name_the_field(tmp_path):
    assert load(Checked, None, ["mode=b", "count=2"]) == Checked("b", 2)
    assert ("mode", "{a,b}", "a mode (default: 'a')") in field_help(Checked)
    with pytest.raises(InputError, match=r"command line: field 'mode': expected one of a, b, got 'c'"):
        load(Checked, None, ["mode=c"])
    path = tmp_path / "c.yaml"
    path.write_text("mode: a\ncount: 0\n")
    with pytest.raises(InputError, match=r"c.yaml:2: field 'count': must be >= 1, got 0"):
        load(Checked, path)
