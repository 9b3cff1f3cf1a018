"""docs/commands.md is generated from the commands' configs and must match a regeneration.

The generator (``tools/gen_commands_doc.py``) runs each command's ``--help`` in a fresh process, so the test
runs it as a subprocess from the repository root: what it checks is the tree under test, not an installed copy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "tools" / "gen_commands_doc.py"
DOC = ROOT / "docs" / "commands.md"


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATOR), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_commands_doc_matches_the_configs(tmp_path: Path) -> None:
    fresh = tmp_path / "commands.md"
    result = run_generator("--path", str(fresh))
    assert result.returncode == 0, result.stderr
    generated = fresh.read_text(encoding="utf-8")
    from csrm.app.cli import COMMANDS

    for name in COMMANDS:  # every dispatched command has a section, found through the CLI's own table
        assert f"## `csrm {name}`" in generated
    assert "| `batch_tokens` |" in generated  # a field row with its help, not just headings
    assert DOC.read_text(encoding="utf-8") == generated, (
        "docs/commands.md is out of date with the commands' field help: run `python tools/gen_commands_doc.py`")


@pytest.mark.slow  # a second full regeneration (~10-30 s); the check itself runs in the default set above
def test_check_fails_on_a_stale_doc(tmp_path: Path) -> None:
    """A changed help string without regenerating fails ``--check`` (so the test above can fail)."""
    stale = tmp_path / "commands.md"
    text = DOC.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `output_dir` |"))
    stale.write_text(text.replace(row, row[:-1] + "edited help |"), encoding="utf-8")
    result = run_generator("--check", "--path", str(stale))
    assert result.returncode == 1
    assert "python tools/gen_commands_doc.py" in result.stderr
