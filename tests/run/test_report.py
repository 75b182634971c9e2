"""What a run reports: the summary's lines, summary.json and the predictions CSV, checked by hand."""

import csv

import torch

from project.run.report import read_summary, run_summary, write_predictions, write_summary


def test_the_summary_quotes_the_tested_weights_and_diagnoses_them():
    weights = {"epoch": 7, "val/acc": 0.9, "train/acc_clean": 0.99, "val/acc_best": 0.91}
    text = run_summary(10, 1.0, 0.02, "logs/x/version_0", weights, {"test/acc": 0.895, "test/loss": 0.31},
                       "best.ckpt", "best.ckpt", 12.34)
    lines = text.splitlines()
    assert "tested weights      best checkpoint (by val/loss), after epoch 7" in lines
    assert "test accuracy       0.8950" in lines and "wall time           12.3 s" in lines
    assert "variance  +0.0900   = clean train accuracy 0.9900 - val accuracy 0.9000  (high: tolerance 0.02)" in lines
    assert "verdict   high variance (overfitting)" in lines
    no_clean = run_summary(1, 1.0, 0.02, None, {"epoch": 1}, {}, None, None, 1.0)
    assert "Diagnosis" not in no_clean and "logs                none (no logger, or fast_dev_run)" in no_clean


def test_summary_json_round_trip(tmp_path):
    write_summary(tmp_path, None, "b.ckpt", 3, {"val/acc": 0.5}, {"test/acc": 0.4}, 2.0)
    saved = read_summary(tmp_path)
    assert saved["tested"] == "last" and saved["tested_weights"] == {"val/acc": 0.5} and saved["epochs"] == 3
    assert not list(tmp_path.glob(".*.partial"))


def test_predictions_csv_by_hand(tmp_path):
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    write_predictions(tmp_path / "p.csv", probabilities, torch.tensor([0, 1]), ["cat", "dog", "owl"])
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["predicted_name"] for r in rows] == ["cat", "owl"] and [r["true_name"] for r in rows] == ["cat", "dog"]
    assert rows[1]["p_owl"] == "0.800000"
