"""Temperature scaling: the fit recovers a known temperature, and `csrm calibrate` repairs an over-confident
model (lower ECE, NLL and Brier; temperature stored in config.json; report and reliability diagram written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures.train.synthetic import write_dataset

from csrm.app import cli
from csrm.base.metrics import fit_temperature
from csrm.base.paths import CONFIGS_DIR
from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer
from csrm.model.data import load_augmented, tokenize_examples
from csrm.training.calibration import calibrate, compliance_logits, fit_task_temperatures
from csrm.training.train import load_train_config, run_training


def test_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, 20_000)
    for true_t in (0.5, 2.5):
        y = rng.random(len(z)) < 1 / (1 + np.exp(-z / true_t))
        assert fit_temperature(z, y) == pytest.approx(true_t, rel=0.05)


def test_fit_edge_cases():
    assert fit_temperature([1.0, 2.0], [1, 1]) == 1.0  # one class: nothing to fit
    assert fit_temperature([], []) == 1.0
    with pytest.raises(ValueError, match="labels"):
        fit_temperature([1.0, 2.0], [1])


def test_requests_and_responses_get_their_own_temperature_when_there_are_enough_of_each():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 4, 8_000)
    is_request = np.arange(len(z)) % 2 == 0
    true_t = np.where(is_request, 0.5, 2.5)
    y = rng.random(len(z)) < 1 / (1 + np.exp(-z / true_t))
    temperature, request_temperature = fit_task_temperatures(z, y, is_request)
    assert temperature == pytest.approx(2.5, rel=0.05) and request_temperature == pytest.approx(0.5, rel=0.05)
    few = is_request & (np.arange(len(z)) < 40)  # 20 requests: one joint temperature
    temperature, request_temperature = fit_task_temperatures(z, y, few)
    assert request_temperature is None and temperature == pytest.approx(fit_temperature(z, y))


@pytest.fixture(scope="module")
def overconfident(tmp_path_factory):
    """A tiny CSRM trained on the synthetic rule, scored on a validation split with 20 % of its labels flipped:
    it is near-certain everywhere but wrong on a fifth, i.e. over-confident; its head is also scaled x2."""
    tmp = tmp_path_factory.mktemp("calib")
    data = write_dataset(tmp / "data", n_validation=300, validation_label_noise=0.2)
    config, _ = load_train_config(CONFIGS_DIR / "train" / "tiny_test.yaml", [], dataset_path=str(data),
                                  output_dir=str(tmp / "model"), eval_strategy="no", save_strategy="no")
    run_training(config)
    model_dir = tmp / "model"
    model = CSRMModel.from_pretrained(model_dir)
    with torch.no_grad():
        model.compliance_head.weight.mul_(2.0)
        model.compliance_head.bias.mul_(2.0)
    model.save_pretrained(model_dir)
    return model_dir, data


@pytest.mark.slow
def test_calibrate_lowers_ece_of_an_overconfident_model(overconfident, capsys):
    model_dir, data = overconfident
    before_config = json.loads((model_dir / "config.json").read_text())
    assert cli.main(["calibrate", str(model_dir), "--dataset-path", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "ECE" in printed and "Brier" in printed
    report = json.loads((model_dir / "calibration" / "report.json").read_text())
    assert report["n"] == 300 and report["split"] == "validation"
    assert report["before"]["ece"] > 0.1  # really over-confident
    assert report["after"]["ece"] < 0.5 * report["before"]["ece"]
    assert report["after"]["nll"] < report["before"]["nll"] and report["after"]["brier"] < report["before"]["brier"]
    assert report["temperature"] > 2  # it had to cool the logits down
    png = model_dir / "calibration" / "reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    after_config = json.loads((model_dir / "config.json").read_text())
    assert after_config["temperature"] == pytest.approx(report["temperature"])
    assert {k: v for k, v in after_config.items() if k != "temperature"} == \
        {k: v for k, v in before_config.items() if k != "temperature"}
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".") and p.name != ".csrm-output.json"]  # no temp
    # the stored temperature is what a loaded model applies
    model = CSRMModel.from_pretrained(model_dir)
    tok = load_tokenizer(model_dir, decoder=False)
    val = load_augmented(data, ["validation"])["examples"]["validation"]
    feats = tokenize_examples(val, model.make_formatter(tok))
    logits = torch.tensor(compliance_logits(model, feats.input_ids, pad_token_id=tok.pad_token_id))
    p_comply = model.calibrated_probability(logits).numpy()
    y_violation = 1 - np.array(feats.labels)
    from csrm.base.metrics import expected_calibration_error

    assert expected_calibration_error(y_violation, 1 - p_comply) == pytest.approx(report["after"]["ece"], abs=1e-6)


@pytest.mark.slow
def test_dry_run_leaves_the_model_alone(overconfident, tmp_path):
    model_dir, data = overconfident
    config_before = (model_dir / "config.json").read_text()
    report = calibrate(model_dir, data, write=False, output_dir=tmp_path / "out", max_examples=60)
    assert report["n"] == 60 and not report["written"]
    assert (model_dir / "config.json").read_text() == config_before
    assert (tmp_path / "out" / "report.json").is_file() and (tmp_path / "out" / "reliability.png").is_file()


@pytest.mark.slow
def test_calibrate_reports_bad_input(tmp_path, overconfident, capsys):
    _, data = overconfident
    assert cli.main(["calibrate", str(tmp_path), "--dataset-path", str(data)]) == 2
    assert "not a saved CSRM folder" in capsys.readouterr().err
