"""The AUROC interval over violated-rule clusters (eval/rule_clusters.py): the clusters, and an interval that
widens when FAIL items repeat a few rules."""

from __future__ import annotations

import numpy as np
import pytest
from rule_reading_fixtures import Reader, make_items, row
from sklearn.metrics import roc_auc_score

from csrm.base.rule_text import format_rules
from eval.rule_clusters import auroc, cluster_keys, clustered_auroc_interval, violated_rule_key
from eval.rule_reading import measures
from eval.rule_report import block_markdown


def test_auroc_is_the_mann_whitney_statistic_with_ties_one_half():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.integers(0, 5, 200) / 4  # many ties
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_violated_rule_key_is_the_rule_text_wherever_the_rule_stands():
    first = row(format_rules(["Be polite.", 'Never say the word "kiwi".'], start=0), "kiwi", "FAIL", "leakage", [1])
    moved = row(format_rules(['Never   say the word "Kiwi".', "Keep it short.", "No emojis."], start=1),
                "kiwi!", "FAIL", "experience", [1])
    other = row(format_rules(['Never say the word "plum".'], start=0), "plum", "FAIL", "leakage", [0])
    unlocated = row(format_rules(["Be polite."], start=0), "hi", "FAIL", "leakage", [4])
    a, b, c, d = make_items([first, moved, other, unlocated])
    assert violated_rule_key(a) == violated_rule_key(b) == 'never say the word "kiwi".'
    assert violated_rule_key(c) != violated_rule_key(a)
    assert violated_rule_key(d) == ""


def test_the_interval_resamples_rules_not_items():
    """60 FAIL items breaking only two rules (one read, one missed) against 60 PASS items: as independent items
    the AUROC looks sure; as two rules it is not."""
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(60, dtype=int), np.zeros(60, dtype=int)]
    p = np.r_[rng.uniform(0.7, 1.0, 30), rng.uniform(0.0, 0.3, 30), rng.uniform(0.2, 0.8, 60)]
    two_rules = ["read"] * 30 + ["missed"] * 30 + [""] * 60
    clustered = clustered_auroc_interval(y, p, two_rules, draws=500)
    per_item = clustered_auroc_interval(y, p, [""] * 120, draws=500)
    assert clustered["auroc"] == per_item["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert clustered["fail_clusters"] == 2 and per_item["fail_clusters"] == 60 and clustered["largest_cluster"] == 30
    assert clustered["high"] - clustered["low"] > 3 * (per_item["high"] - per_item["low"])
    assert clustered["low"] < 0.3 and clustered["high"] > 0.7  # either rule alone: a judge that reads all, or none
    assert per_item["low"] <= per_item["auroc"] <= per_item["high"]
    # which rules the number rests on: each large cluster's own AUROC
    read, missed = sorted(clustered["by_rule"], key=lambda c: c["rule"], reverse=True)
    assert (read["rule"], read["fail_items"], missed["rule"], missed["fail_items"]) == ("read", 30, "missed", 30)
    assert read["pass_below"] > 0.9 and missed["pass_below"] < 0.1
    assert clustered["other_rules"] == {"rules": 0, "fail_items": 0, "pass_below": None}
    assert per_item["by_rule"] == [] and per_item["other_rules"]["fail_items"] == 60
    assert per_item["other_rules"]["pass_below"] == pytest.approx(per_item["auroc"])


def test_no_interval_without_two_clusters_or_without_pass_items():
    assert clustered_auroc_interval([1, 1, 0], [0.9, 0.8, 0.1], ["r", "r", ""]) is None
    assert clustered_auroc_interval([1, 1], [0.9, 0.8], ["", ""]) is None


def test_the_rule_reading_block_reports_the_interval():
    templates = ['Never say the word "{}".', 'Do not mention "{}" in any reply.', 'Avoid writing "{}" at all costs.']
    rows = []
    for k, template in enumerate(templates):
        for word in (f"fig{k}", f"lime{k}"):
            rows.append(row(format_rules([template.format(word), "Be kind."], start=0), f"I love {word}", "FAIL",
                            "leakage", [0]))
            rows.append(row(format_rules([template.format(word), "Be kind."], start=0), "nothing special", "PASS",
                            "leakage", []))
    items = make_items(rows)
    m = measures(Reader(), items, length_test=False)
    interval = m["auroc_interval"]
    assert interval["auroc"] == pytest.approx(m["auroc"]) == 1.0
    assert interval["low"] == interval["high"] == 1.0  # a reader separates every resample
    assert interval["fail_clusters"] == 3  # three templates, two words each
    assert interval["fail_items"] == sum(it.label_violation for it in items if it.split == "test")
    from eval.rule_reading import benchmark_block

    text = "\n".join(block_markdown(benchmark_block(Reader(), items), title="t"))
    assert "| 100.0 [100.0, 100.0] |" in text and "3 distinct violated rules" in text
    assert "AUROC of this scorer by violated rule" in text and '"fig2" at all costs.* (2 items) 1.000' in text
    # one rule template only: nothing to resample, and the AUROC cell says so by carrying no interval
    assert measures(Reader(), make_items(), length_test=False)["auroc_interval"] is None


def test_variants_of_one_rule_share_a_cluster_and_other_rules_do_not():
    base = "when employee information is requested by an external user, you may disclose the name and title only."
    variant = ("when employee information is requested by an external user, you may disclose the name, title and "
               "work email only.")
    other = 'never say the word "kiwi".'
    keys = cluster_keys([base, variant, other, "", variant])
    assert keys[0] == keys[1] == keys[4] != keys[2]
    assert keys[3] == ""
    assert len(set(cluster_keys([base, other], overlap=0.0))) == 1  # any overlap links at 0: one cluster
    # one template with different words is one rule for the interval: the judge reads them alike
    assert len(set(cluster_keys(['never say the word "kiwi".', 'never say the word "plum".']))) == 1
