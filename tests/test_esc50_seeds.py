"""The seed table of the ESC-50 study: rows from each study directory, their mean and sd, and refusals."""

from __future__ import annotations

import json

import pytest

from benchmarks import esc50_seeds

KD, LABELS = "kd_a", "labels_a"


def write_study(root, name, seed, kd_map, labels_map, steps=6000, labels_steps=None):
    study = root / name
    results = {}
    for run, value, run_steps in ((KD, kd_map, steps), (LABELS, labels_map, labels_steps or steps)):
        (study / "runs" / run).mkdir(parents=True)
        (study / "runs" / run / "config.json").write_text(json.dumps({"seed": seed, "steps": run_steps}))
        results[run] = {"label_map": value, "auc": value + 0.3}
    (study / "results.json").write_text(json.dumps(results))
    return study


def test_rows_mean_and_sd_of_the_margin(tmp_path, capsys):
    studies = [write_study(tmp_path, f"s{i}", i, kd, lab) for i, (kd, lab) in enumerate([(0.7, 0.6), (0.7, 0.7)])]
    esc50_seeds.main([*map(str, studies), "--pair", f"{KD},{LABELS}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| study | seed | steps | KD mAP | KD AUC | labels mAP | labels AUC | margin |"
    assert lines[2].startswith(f"| {studies[0]} | 0 | 6000 | 0.7 |") and lines[2].endswith("| 0.1 |")
    assert lines[4].startswith("| mean |  |  | 0.7 |") and lines[4].endswith("| 0.05 |")
    assert lines[5].endswith(f"| {0.1 / 2**0.5:.4g} |")  # sample sd of the margins 0.1 and 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "missing", "results.json: not found"),
        (lambda root: write_study(root, "odd", 0, 0.7, 0.6, labels_steps=100), "differ in seed or steps"),
    ],
)
def test_refuses_what_is_not_a_pair_with_one_line(tmp_path, capsys, make, message):
    with pytest.raises(SystemExit) as exit_:
        esc50_seeds.main([str(make(tmp_path)), "--pair", f"{KD},{LABELS}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_refuses_studies_of_different_lengths(tmp_path, capsys):
    short, long_ = write_study(tmp_path, "a", 0, 0.7, 0.6, steps=10), write_study(tmp_path, "b", 1, 0.7, 0.6)
    with pytest.raises(SystemExit):
        esc50_seeds.main([str(short), str(long_), "--pair", f"{KD},{LABELS}"])
    assert "different --steps" in capsys.readouterr().err
