"""The ESC-50 study's one command in miniature: real clips and teachers, a tiny student, a few steps."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import zarr

from benchmarks import esc50_classes, esc50_study
from kd.stores.logit_store import LogitStore
from kd.students.checkpoint import read_checkpoint
from kd.use.evaluate import evaluate
from kd.use.models import load_tagger


@pytest.fixture
def tiny_study(shared_data, tmp_path):
    if not (shared_data / "esc50" / "esc50.csv").is_file():
        pytest.skip("ESC-50 not in the shared data")
    out = tmp_path / "study"
    flags = ["--out", str(out), "--limit", "6", "--views", "2", "--steps", "4", "--batch-size", "2"]
    return out, flags + ["--curve-points", "2", "--student", "dass-tiny", "--jobs", "1"]


def test_study_trains_scores_reports_and_resumes(tiny_study, capsys):
    out, flags = tiny_study
    esc50_study.main([*flags, "--only", "label_only,kd_mn04_v1"])
    table = (out / "docs" / "distillation-results.md").read_text()  # beside its --out, not over docs/
    for row in ("teacher efficientat/mn04_as", "teacher yamnet", "dass-tiny label_only", "dass-tiny kd_mn04_v1"):
        assert f"| {row} |" in table
    assert (out / "docs" / "distillation-curves.png").stat().st_size > 0
    times = json.loads((out / "timings.json").read_text())
    assert set(times) == {"dump", "train label_only", "train kd_mn04_v1"} and min(times.values()) > 0
    assert "best label-free student: kd_mn04_v1 (fold-4 label mAP " in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["label_only"]["readout"] == "sigmoid" and results["kd_mn04_v1"]["readout"] == "softmax"
    assert results["label_only"]["label_map"] == pytest.approx(results["label_only"]["map_sigmoid"])
    tagger = load_tagger(str(out / "runs" / "kd_mn04_v1" / "last.pt"))
    as_kd_eval = evaluate(tagger, out / "fold4.csv", progress=False).metrics.mAP
    assert results["kd_mn04_v1"]["label_map"] == pytest.approx(as_kd_eval, abs=1e-6)
    curve = (out / "runs" / "kd_mn04_v1" / "metrics.jsonl").read_text().splitlines()
    assert sum('"val_manifest_map"' in line for line in curve) == 3  # steps 0, 2 and 4

    # Class by class (benchmarks.esc50_classes): each student's APs average to the mAP the study reported.
    rows, summary = esc50_classes.compare([out], "kd_mn04_v1", "label_only", shown=50)
    scored = {r["class"]: r for r in rows}
    assert len(scored) == summary["classes"] and summary["classes"] > 0
    assert np.mean([r["KD AP"] for r in scored.values()]) == pytest.approx(results["kd_mn04_v1"]["label_map"], abs=1e-6)
    assert all(r["KD - labels"] == pytest.approx(r["KD AP"] - r["labels AP"]) for r in rows)

    finished = {name: (out / "runs" / name / "last.pt").stat().st_mtime_ns for name in ("label_only", "kd_mn04_v1")}
    esc50_study.main([*flags, "--only", "label_only"])  # rerun: nothing retrained, the other run stays reported
    assert {n: (out / "runs" / n / "last.pt").stat().st_mtime_ns for n in finished} == finished
    assert "| dass-tiny kd_mn04_v1 |" in (out / "docs" / "distillation-results.md").read_text()

    esc50_study.main([*flags, "--steps", "6", "--report"])
    assert "left out of the table, trained for 4 steps" in capsys.readouterr().out
    assert read_checkpoint(out / "runs" / "label_only" / "last.pt")["step"] == 4

    other = out.parent / "other"  # a second study (other steps, say) reuses the first one's dump
    esc50_study.main([*flags, "--out", str(other), "--store", str(out / "store.zarr"), "--only", "kd_mn04_v1"])
    assert not (other / "store.zarr").exists()
    config = json.loads((other / "runs" / "kd_mn04_v1" / "config.json").read_text())
    assert config["store"] == str((out / "store.zarr").resolve())


def test_default_study_writes_its_table_beside_the_experiment_log():
    # The committed table is the one the default --out rewrites: both live in docs/experiments/, not docs/.
    assert esc50_study.DOCS == esc50_study.REPO / "docs" / "experiments"
    for name in ("distillation.md", "distillation-results.md", "distillation-curves.png"):
        assert (esc50_study.DOCS / name).is_file(), name


def test_study_teaches_the_manifest_classes_where_a_configuration_says_so(tiny_study):
    out, flags = tiny_study
    # Trains on the 2 views the smoke run stores, with the seed it is given; --k and --policy reach the dump.
    esc50_study.main([*flags, "--only", "kd_mn04_v16_manifest_t2", "--seed", "3", "--k", "527", "--policy", "cutmix"])
    stored = zarr.open_group(out / "store.zarr", mode="r")["teachers"]["efficientat--mn04_as"]
    assert stored["logits"].shape[-1] == 527
    assert LogitStore(out / "store.zarr").policy.cutmix_prob == 1.0
    assert "--seed 3 --k 527 --policy cutmix` on" in (out / "docs" / "distillation-results.md").read_text()
    run = out / "runs" / "kd_mn04_v16_manifest_t2"
    config = json.loads((run / "config.json").read_text())
    assert (config["classes"], config["temperature"], config["views"], config["seed"]) == ("manifest", 2.0, 2, 3)
    named = {name for row in csv.DictReader(open(out / "train.csv")) for name in row["labels"].split(";") if name}
    ensemble = read_checkpoint(run / "last.pt")["ensemble"]
    assert set(ensemble["classes"]) == named and len(named) < 527


def test_study_chooses_what_its_store_can_serve_and_dumps_only_needed_teachers():
    def chosen(only="", views=16):
        return esc50_study.choose(argparse.Namespace(only=only, views=views))

    default = {c.name for c in chosen()}
    assert {"kd_mn04_v16", "online_mn04"} <= default
    assert not default & {"kd_mn04_v48", "label_only_v48", "kd_mn04_v16_manifest", "kd_mn04_v16_manifest_t2"}
    assert esc50_study.dumped_teachers(chosen()) == [esc50_study.MN04, esc50_study.YAMNET]
    pinned = chosen("kd_mn04_v16_manifest_dp0,kd_mn04_v16_manifest_dp2,kd_mn04_v16_dp2,label_only_dp2")  # default 0.1
    assert [c.extra["drop_path"] for c in pinned] == [0.0, 0.2, 0.2, 0.2] and not default & {c.name for c in pinned}
    assert "classes" not in chosen("kd_mn04_v16_dp2")[0].extra
    wide = chosen("kd_mn04_v48,label_only_v48", views=48)
    assert [c.views for c in wide] == [48, 48] and esc50_study.dumped_teachers(wide) == [esc50_study.MN04]
    assert esc50_study.dumped_teachers(chosen("label_only")) == [esc50_study.MN04]
    with pytest.raises(SystemExit, match="needs more than --views 16 stored views; pass --views 48"):
        chosen("kd_mn04_v48")
    with pytest.raises(SystemExit, match="no configuration kd_nope"):
        chosen("kd_nope,label_only")


def test_study_trains_on_the_folds_it_is_given_and_never_on_the_scored_one(shared_data, tmp_path):
    if not (shared_data / "esc50" / "esc50.csv").is_file():
        pytest.skip("ESC-50 not in the shared data")
    train, fold4 = esc50_study.write_manifests(tmp_path, folds="1")
    names = [row["path"].rsplit("/", 1)[-1] for row in csv.DictReader(open(train))]
    assert len(names) == 400 and all(n.startswith("1-") for n in names)
    assert all(row["path"].rsplit("/", 1)[-1].startswith("4-") for row in csv.DictReader(open(fold4)))
    assert esc50_study.write_manifests(tmp_path, folds="1") == (train, fold4)  # a rerun finds its own manifests
    before = train.read_bytes()
    with pytest.raises(SystemExit, match="made for other clips .* give this study its own --out"):
        esc50_study.write_manifests(tmp_path, folds="12")
    assert train.read_bytes() == before
    with pytest.raises(SystemExit) as stopped:
        esc50_study.main(["--out", str(tmp_path / "bad"), "--train-folds", "14"])
    assert stopped.value.code == 2 and not (tmp_path / "bad").exists()


def test_study_trains_label_free_on_the_training_clips_plus_an_unlabelled_pool(tiny_study, shared_data, tmp_path):
    out, flags = tiny_study
    pool = tmp_path / "pool.csv"
    clips = sorted((shared_data / "clips").glob("*.wav"))[:5]
    pool.write_text("path,labels\n" + "".join(f"{c},\n" for c in clips))
    with pytest.raises(SystemExit, match="needs --pool"):
        esc50_study.main([*flags, "--only", "kd_mn04_pool_dp2"])
    esc50_study.main([*flags, "--only", "kd_mn04_pool_dp2", "--pool", str(pool), "--pool-clips", "3"])
    assert not (out / "store.zarr").exists()  # nothing chosen reads the labelled-only store
    rows = list(csv.DictReader(open(out / "train-pool3.csv")))
    train = list(csv.DictReader(open(out / "train.csv")))
    assert [r["path"] for r in rows[: len(train)]] == [r["path"] for r in train]
    pooled = rows[len(train) :]
    assert [r["path"] for r in pooled] == [str(clips[i]) for i in (0, 2, 4)]  # an even subset of the pool
    assert all(r["labels"] == "" and r["id"].startswith("pool/") for r in pooled)
    config = json.loads((out / "runs" / "kd_mn04_pool_dp2" / "config.json").read_text())
    assert config["store"] == str(out / "pool3-store.zarr")
    stored = zarr.open_group(out / "pool3-store.zarr", mode="r")
    assert stored["teachers"]["efficientat--mn04_as"]["logits"].shape[0] == len(rows)
    assert "--pool-clips 3" in (out / "docs" / "distillation-results.md").read_text()

    labelled = tmp_path / "labelled.csv"
    labelled.write_text(f"path,labels\n{clips[0]},Dog\n")
    with pytest.raises(SystemExit, match="a pool is unlabelled audio"):
        esc50_study.main(
            [*flags, "--out", str(tmp_path / "other"), "--only", "kd_mn04_pool_dp2", "--pool", str(labelled)]
        )


def test_study_dump_names_failed_views_and_keeps_them_only_when_asked(shared_data, bad_audio, tmp_path):
    clips = sorted((shared_data / "esc50").rglob("*.wav"))[:2] + [bad_audio["truncated_wav"]]
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,labels\n" + "".join(f"{c},\n" for c in clips))
    store = tmp_path / "store.zarr"
    with pytest.raises(SystemExit, match=r"store.zarr: 1 views failed \(first: .*truncated.* view 0: .*--skip-bad"):
        esc50_study.dump(manifest, store, 1, [esc50_study.MN04], 5)
    assert not LogitStore(store).teacher(esc50_study.MN04).done_blocks().any()
    esc50_study.dump(manifest, store, 1, [esc50_study.MN04], 5, skip_bad=True)  # resumes the undone block
    teacher = LogitStore(store).teacher(esc50_study.MN04)
    assert teacher.done_blocks().all() and teacher.read("failed").sum() == 1
