"""Write ``docs/commands.md``: every ``csrm`` command's options, from the same source as its ``--help``.

Usage (from the repository root)::

    python tools/gen_commands_doc.py           # rewrite docs/commands.md
    python tools/gen_commands_doc.py --check   # exit 1, naming this command, if docs/commands.md is stale

Why generated: a hand-written option reference drifts the first time a field's help changes. The commands are
discovered through ``csrm.app.cli.COMMANDS`` (the table ``csrm`` dispatches on), not listed here, so a command
that is added or moved is documented without touching this script. Each command's ``main(["--help"])`` is
run in-process, which is exactly what ``csrm <cmd> --help`` prints. While it runs,
``csrm.base.config.field_help`` is wrapped to record the config classes the command's ``--help`` lists (every
command builds its field list through ``help_text`` -> ``field_help``); each class's fields become a Markdown
table (``csrm train`` may list one class per model family). A command whose ``--help`` does not go through
``field_help`` gets its ``--help`` text verbatim instead, so nothing is left out. ``COLUMNS`` is pinned so
argparse wraps the same way everywhere. The training config of every model family (``csrm.model.registry``) gets
its own table too. ``tests/test_docs.py`` regenerates into a temporary file and compares.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "commands.md"
REGENERATE = "python tools/gen_commands_doc.py"
HEADER = f"""# Command reference

Generated from each command's config by `{REGENERATE}` (do not edit by hand; `tests/test_docs.py` fails when
a field's help changes and this file is not regenerated). The same text is what `csrm <command> --help`
prints. Every command reads its settings the same way (`csrm.base.config`): an optional YAML file plus
overrides as `key=value`, `--key value` or `--key=value`, dotted keys into sections (`sources.0.limit=500`),
`--print-config` to print the resolved config and exit. Errors name the file, line and field; exit code 2.
"""


def commands() -> list[tuple[str, str, str]]:
    """``(name, module, one-line help)`` for each command, in ``csrm --help`` order."""
    from csrm.app import cli

    out = []
    for name, entry in cli.COMMANDS.items():
        module, summary = (entry, "") if isinstance(entry, str) else (entry[0], entry[1] if len(entry) > 1 else "")
        out.append((name, module, summary))
    return out


def capture_help(module_name: str) -> tuple[str, list[type]]:
    """(the ``--help`` output of ``module.main``, the config classes its field lists were built from, in order;
    ``csrm train`` lists one per model family)."""
    from csrm.base import config

    original = config.field_help
    seen: list[type] = []
    depth = 0

    def recording(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
        nonlocal depth
        if depth == 0 and cls not in seen:
            seen.append(cls)
        depth += 1
        try:
            return original(cls, prefix)
        finally:
            depth -= 1

    module = importlib.import_module(module_name)
    buffer = io.StringIO()
    config.field_help = recording
    try:
        with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
            module.main(["--help"])
    finally:
        config.field_help = original
    return buffer.getvalue(), seen


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or " "


def command_section(name: str, module: str, summary: str) -> str:
    from csrm.base.config import field_help

    text, classes = capture_help(module)
    usage, _, rest = text.partition("\n\n")
    description = rest.split("\n\n")[0].strip() if rest and not rest.startswith(("positional", "options")) else ""
    lines = [f"## `csrm {name}`", "", summary + ("." if summary and not summary.endswith(".") else ""), ""]
    if not classes:
        lines += ["```text", text.rstrip(), "```", ""]
        return "\n".join(lines)
    lines += ["```text", " ".join(usage.split()), "```", ""]
    if description and description != summary:
        lines += [description, ""]
    for cls in classes:
        lines += [f"Config class: `{cls.__module__}.{cls.__qualname__}`.", "",
                  "| field | type | help (default) |", "|---|---|---|"]
        lines += [f"| `{field}` | {cell(kind)} | {cell(help_)} |" for field, kind, help_ in field_help(cls)]
        lines.append("")
    return "\n".join(lines)


def family_sections() -> list[str]:
    """One field table per model family's training config, found through ``csrm.model.registry.FAMILIES``:
    ``csrm train --help`` lists only the family its config names (``architecture``), so the others would
    otherwise be missing here. Empty when the registry has no families table."""
    from csrm.base.config import field_help

    try:
        from csrm.model.registry import FAMILIES
    except ImportError:
        return []
    lines = ["## Training configs of the model families", "",
             "`csrm train` reads the config class of the family its YAML names with `architecture` "
             "(`csrm train CONFIG.yaml --help` lists that one).", ""]
    for name, fam in FAMILIES.items():
        if fam.trainer is None:  # a family csrm train does not train has no training config to list
            continue
        cls = fam.load("args")
        lines += [f"### `architecture: {name}`", "", fam.summary + ".", "",
                  f"Config class: `{cls.__module__}.{cls.__qualname__}`.", "",
                  "| field | type | help (default) |", "|---|---|---|"]
        lines += [f"| `{field}` | {cell(kind)} | {cell(help_)} |" for field, kind, help_ in field_help(cls)]
        lines.append("")
    return ["\n".join(lines)]


def render() -> str:
    os.environ["COLUMNS"] = "100"
    os.environ.pop("CSRM_DATA_DIR", None)  # defaults shown as the code spells them, not this machine's path
    rows = commands()
    table = ["| command | what it does |", "|---|---|"]
    table += [f"| [`csrm {name}`](#csrm-{name}) | {cell(summary)} |" for name, _, summary in rows]
    sections = [command_section(name, module, summary) for name, module, summary in rows]
    return "\n".join([HEADER, *table, "", *sections, *family_sections()]).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from a regeneration")
    parser.add_argument("--path", type=Path, default=DOC, help="the file to write or check (docs/commands.md)")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    text = render()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is out of date with the commands' configs: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path} ({len(rows_of(text))} commands)")
    return 0


def rows_of(text: str) -> list[Any]:
    return [line for line in text.splitlines() if line.startswith("## `csrm ")]


if __name__ == "__main__":
    sys.exit(main())
