"""Metrics against scikit-learn, dev-only threshold tuning, report files, the CLI and scorer loading."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from csrm.base.metrics import best_f1_threshold, expected_calibration_error
from csrm.base.records import stable_id
from csrm.base.score_types import ScoreItem, ScoreResult
from eval import cli, models
from eval.analysis import Scored, stored_metrics, tune_threshold, view_metrics
from eval.harness import evaluate
from eval.items import DEV, HEADLINE, TEST, EvalItem
from eval.report import build_report, markdown, write_report

LABELS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0]
P_VIOLATION = [0.9, 0.2, 0.65, 0.4, 0.55, 0.1, 0.8, 0.3, 0.35, 0.7]


class FakeScorer:
    """Deterministic scorer: p_comply from a hash of the item (or fixed by item text); records what it saw."""

    def __init__(self, fixed: dict[str, float] | None = None, threshold: float = 0.5):
        self.fixed, self.threshold, self.seen = fixed or {}, threshold, []

    def score_items(self, items: list[ScoreItem]) -> list[ScoreResult]:
        self.seen.extend(items)
        out = []
        for it in items:
            key = it.messages[-1]["content"] if it.messages else ""
            p = self.fixed.get(key, int(stable_id(it.config, it.messages, it.response)[:6], 16) / 0xFFFFFF)
            out.append(ScoreResult(p_comply=p, reward=2 * p - 1, complies=(1 - p) < self.threshold,
                                   threshold=self.threshold))
        return out


def _scored(labels, p_violation, split=TEST, group="g", threshold=0.5) -> list[Scored]:
    out = []
    for i, (y, p) in enumerate(zip(labels, p_violation, strict=True)):
        item = EvalItem(ScoreItem(config="c", messages=[{"role": "user", "content": f"{split}{i}"}]),
                        label_violation=y, group=group, benchmark="b", kind=str(y), split=split)
        out.append(Scored(item, ScoreResult(p_comply=1 - p, reward=0.0, complies=p < threshold,
                                            threshold=threshold)))
    return out


# -- metrics -------------------------------------------------------------------------------------------------
def test_stored_metrics_equal_sklearn() -> None:
    scored = _scored(LABELS, P_VIOLATION)
    m = stored_metrics(LABELS, P_VIOLATION, [s.flagged for s in scored], [0.5] * len(LABELS))
    pred = (np.asarray(P_VIOLATION) >= 0.5).astype(int)  # violation iff p_violation >= stored threshold
    assert m["f1"] == pytest.approx(skm.f1_score(LABELS, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(LABELS, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(LABELS, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(LABELS, pred))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(LABELS, P_VIOLATION))
    assert m["auprc"] == pytest.approx(skm.average_precision_score(LABELS, P_VIOLATION))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(LABELS, P_VIOLATION))
    assert m["threshold"] == pytest.approx(0.5) and m["n"] == 10 and m["positives"] == 5


def test_stored_metrics_use_the_scorers_verdicts() -> None:
    # a per-config threshold: the verdicts, not a global 0.5 cut, decide F1
    flagged = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    m = stored_metrics(LABELS, P_VIOLATION, flagged, [0.5, 0.9] * 5)
    assert m["recall"] == 1.0 and m["precision"] == 0.5 and np.isnan(m["threshold"])


def test_ece_hand_computed() -> None:
    # 15 bins: p=0.1 (bin 1) x2 with one positive -> |0.1-0.5|; p=0.9 (bin 13) x2 both positive -> |0.9-1|
    ece = expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9])
    assert ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    m = stored_metrics([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], [0, 0, 1, 1])
    assert m["ece"] == pytest.approx(0.25)


def test_tuned_threshold_comes_from_dev_only() -> None:
    dev = _scored(LABELS, P_VIOLATION, split=DEV)
    test = _scored([1 - y for y in LABELS], P_VIOLATION, split=TEST)  # adversarial test labels
    metrics = view_metrics(dev + test)
    expected = best_f1_threshold(LABELS, P_VIOLATION)
    assert metrics["tuned_threshold"] == pytest.approx(expected)
    assert metrics["n_dev"] == 10 and metrics["n_test"] == 10
    # flipping every test label leaves the tuned threshold unchanged; the test numbers use only test items
    flipped = view_metrics(dev + _scored(LABELS, P_VIOLATION, split=TEST))
    assert flipped["tuned_threshold"] == metrics["tuned_threshold"]
    pred = (np.asarray(P_VIOLATION) >= expected).astype(int)
    assert metrics["overall"]["tuned"]["f1"] == pytest.approx(skm.f1_score([1 - y for y in LABELS], pred))
    assert metrics["overall"]["stored"]["n"] == 10


def test_tune_threshold_needs_both_classes() -> None:
    assert tune_threshold([]) is None
    assert tune_threshold([(0, 0.2), (0, 0.7)]) is None
    no_dev = view_metrics(_scored(LABELS, P_VIOLATION))
    assert no_dev["tuned_threshold"] is None and no_dev["overall"]["tuned"] is None


def test_views_select_items_and_labels() -> None:
    scored = _scored(LABELS, P_VIOLATION)
    scored[0].item.views = {"other": 0}  # not in the headline
    assert view_metrics(scored)["n_test"] == 9
    assert view_metrics(scored, "other")["overall"]["stored"]["positives"] == 0


# -- reports and the CLI -------------------------------------------------------------------------------------
def _run(eval_fixtures: Path, scorer=None):
    from eval.harness import load_benchmarks

    loaded, skipped = load_benchmarks(["cosapien", "dynabench", "cosalign-test"], eval_fixtures,
                                      use_hub=False, dev_fraction=0.5)
    return evaluate(scorer or FakeScorer(), loaded, model="fake", skipped={"other": "no data (test)"})


def test_report_files(eval_fixtures: Path, tmp_path: Path) -> None:
    paths = write_report(_run(eval_fixtures), tmp_path)
    report = json.loads(paths["json"].read_text())
    assert set(report["benchmarks"]) == {"cosapien", "dynabench", "cosalign-test", "other"}
    assert report["benchmarks"]["other"] == {"status": "skipped", "reason": "no data (test)", "published": []}
    cosa = report["benchmarks"]["cosalign-test"]
    assert set(cosa["views"]) == {HEADLINE, "sit2_as_violation", "sit2_as_compliant", "headline_clean"}
    assert cosa["views"][HEADLINE]["n_test"] == 4 and cosa["views"]["sit2_as_violation"]["n_test"] == 5
    assert "situation 2" in cosa["views"]["sit2_as_violation"]["kinds"]
    assert set(report["benchmarks"]["cosapien"]["views"][HEADLINE]["overall"]["stored"]) >= {
        "f1", "precision", "recall", "accuracy", "auroc", "auprc", "ece", "brier"}
    md = paths["markdown"].read_text()
    assert "| CoSApien | published: CSRM (Jiang et al. 2026) |  | 94.6 |" in md
    assert "published: DynaGuard-8B" in md and "**other** skipped: no data (test)" in md
    for key in ("reliability", "f1_cosapien", "f1_dynabench", "f1_cosalign-test"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = [json.loads(line) for line in paths["predictions"].read_text().splitlines()]
    assert len(predictions) == 7 + 4 + 11 and {"p_comply", "split", "views"} <= set(predictions[0])


def test_report_has_no_nan(eval_fixtures: Path) -> None:
    text = json.dumps(build_report(_run(eval_fixtures)), allow_nan=False)  # NaN would raise
    assert "model" in text and markdown(json.loads(text)).startswith("# CSRM evaluation")


def test_cli_end_to_end(eval_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    scorer = FakeScorer()
    monkeypatch.setattr(cli, "load_scorer", lambda spec, **kw: scorer)
    code = cli.main(["fake-model", "--bench", "cosapien,dynabench,cosalign-test", "--data-dir", str(eval_fixtures),
                     "--output-dir", str(tmp_path / "out"), "--no-hub", "--quiet", "--limit", "3",
                     "--no-rule-reading"])  # the rule-reading tests score more items: tests/eval/
    assert code == 0
    out = capsys.readouterr().out
    assert "| CoSApien | ours: `fake-model` |" in out and "published: DynaGuard-8B" in out
    assert (tmp_path / "out" / "report.json").is_file() and (tmp_path / "out" / "reliability.png").is_file()
    assert len(scorer.seen) <= 3 * 2 * 3 and all(it.config for it in scorer.seen)


def test_cli_blind_blanks_configs(eval_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = FakeScorer()
    monkeypatch.setattr(cli, "load_scorer", lambda spec, **kw: scorer)
    assert cli.main(["blind-model", "--bench", "cosapien", "--data-dir", str(eval_fixtures), "--blind",
                     "--output-dir", str(tmp_path), "--no-hub", "--quiet"]) == 0
    assert scorer.seen and all(it.config == "" for it in scorer.seen)
    assert json.loads((tmp_path / "report.json").read_text())["blind"] is True


def test_cli_blind_automatic_for_blind_csrm(eval_fixtures: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = FakeScorer()
    scorer.model = types.SimpleNamespace(config=types.SimpleNamespace(blind_config=True))
    monkeypatch.setattr(cli, "load_scorer", lambda spec, **kw: scorer)
    assert cli.main(["m", "--bench", "cosapien", "--data-dir", str(eval_fixtures), "--output-dir", str(tmp_path),
                     "--no-hub", "--quiet"]) == 0
    assert scorer.seen and all(it.config == "" for it in scorer.seen)


def test_cli_single_unavailable_benchmark_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(cli, "load_scorer", lambda spec, **kw: pytest.fail("model must not load"))
    code = cli.main(["m", "--bench", "dynabench", "--data-dir", str(tmp_path), "--no-hub", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "benchmark 'dynabench' is unavailable" in err and str(tmp_path / "dynabench") in err
    assert "tomg-group-umd/DynaBench" in err


def test_cli_skips_unavailable_among_several(eval_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys) -> None:
    data = tmp_path / "data"
    (data / "cosapien").mkdir(parents=True)
    for f in (eval_fixtures / "cosapien").iterdir():
        (data / "cosapien" / f.name).write_text(f.read_text())
    monkeypatch.setattr(cli, "load_scorer", lambda spec, **kw: FakeScorer())
    code = cli.main(["m", "--bench", "cosapien,dynabench", "--data-dir", str(data), "--no-hub", "--quiet",
                     "--output-dir", str(tmp_path / "out")])
    assert code == 0 and "skipping: benchmark 'dynabench' is unavailable" in capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["benchmarks"]["dynabench"]["status"] == "skipped"
    assert "skipped" in (tmp_path / "out" / "report.md").read_text()


def test_cli_unknown_benchmark(capsys) -> None:
    assert cli.main(["m", "--bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_csrm_dispatches_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    from csrm.app.cli import main as csrm_main

    seen = []
    monkeypatch.setattr(cli, "main", lambda argv: seen.append(argv) or 0)
    assert csrm_main(["eval", "x", "--limit", "1"]) == 0 and seen == [["x", "--limit", "1"]]


# -- scorer loading ------------------------------------------------------------------------------------------
def test_load_scorer_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    from eval import zero_shot

    calls = []
    monkeypatch.setattr(zero_shot.ZeroShotJudge, "from_pretrained", classmethod(lambda cls, cfg: calls.append(cfg)))
    models.load_scorer("zero-shot:smollm2", device="cpu", batch_size=4)
    assert calls[0].model == "smollm2" and calls[0].device == "cpu" and calls[0].batch_size == 4

    fake = types.ModuleType("csrm.scoring.scorer")
    fake.load = lambda spec, **kw: ("csrm", spec, kw)
    monkeypatch.setitem(sys.modules, "csrm.scoring.scorer", fake)
    assert models.load_scorer("runs/model") == ("csrm", "runs/model", {})
    assert models.load_scorer("runs/model", device="cpu") == ("csrm", "runs/model", {"device": "cpu"})
