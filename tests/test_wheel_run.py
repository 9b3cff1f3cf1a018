"""From a wheel, in a folder outside the clone: ``csrm run <clone>/configs/pipeline/default.yaml`` succeeds.

The wheel is built from this checkout and installed into a fresh virtual environment (``--system-site-packages``
so torch and the other dependencies need no download; ``--no-deps``), and the run uses that install, whose
package folder is not a checkout: the recipe's files must resolve against the recipe's folder and the data
folder default must come from the recipe's clone, not from ``site-packages``. Cheap training overrides keep it
to a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["backbone_config={model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
        "intermediate_size: 64}", "reader_steps=20", "num_train_epochs=2", "max_pseudo_prompts=200"]


@pytest.mark.slow
def test_wheel_install_runs_the_default_recipe_from_another_folder(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = dist.glob("csrm-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python, csrm = venv / "bin" / "python", venv / "bin" / "csrm"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"CSRM_DATA_DIR", "PYTHONPATH"}}
    where = subprocess.run([python, "-c", "import csrm; print(csrm.__file__)"], cwd=elsewhere, env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not this checkout

    overrides = "train_overrides=[" + ", ".join(f'"{o}"' for o in TINY) + "]"
    done = subprocess.run([csrm, "run", str(ROOT / "configs" / "pipeline" / "default.yaml"), "output_dir=out",
                           overrides], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = elsewhere / "out"
    report = (out / "report.md").read_text()
    assert report == done.stdout.rstrip("\n") + "\n" or report.strip() in done.stdout
    assert (out / "model" / "config.json").is_file() and (out / "eval" / "csrm" / "report.json").is_file()
    # the data folder default from a wheel: beside the recipe's clone; what it lacked is named in the report
    shared = ROOT.parent / "shared" / "data"
    results = json.loads((out / "model" / "train_results.json").read_text())
    expected = {field for field, rel in (("distractor_rules", "dynaguard_ifeval_rules/ifeval_rules.jsonl"),
                                         ("pseudo_label_prompts",
                                          "wildguardmix_nonadv_prompts/wg_non_adv_prompts_l3_64.json"))
                if not (shared / rel).is_file()}
    assert set(results["skipped"]) == expected
    assert all(f"Trained without `{field}`" in report for field in expected)
    assert "site-packages" not in json.dumps(results["skipped"])
