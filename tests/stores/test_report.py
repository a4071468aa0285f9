"""`kd store report`: label mAP, agreement, calibration, entropy and coverage from stored top-k alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kd.core.augment import policy_by_name
from kd.core.labels import audioset_labels
from kd.core.manifest import load_manifest
from kd.dump import DumpConfig, dump_teachers
from kd.stores.logit_store import create_store
from kd.stores.report import spearman, store_report
from kd.teachers import create_teacher
from tests.helpers import run_kd

CLIPS = ["scaper_dogbark.wav", "librosa_robin.ogg", "us8k_eval_siren_1.wav", "tflite_speech.wav"]
LABEL_INDEX = [0, 10, 20, 30]  # one class per clip, all among the 100 that toy/partial32k covers
NOISE = [90, 91, 92, 93, 94]


def _write(store, name: str, data: dict) -> None:
    teacher = create_teacher(name)
    group = store.add_teacher(name, {"card": {}, "checkpoint_sha256": ""}, teacher.labels.map_to(store.labels), 5)
    for block in range(store.num_blocks):
        rows = store.block_rows(block)
        store.write_block(group, block, {key: value[rows] for key, value in data.items()})


@pytest.fixture()
def crafted(shared_data: Path, tmp_path: Path) -> str:
    """Two teachers with chosen top-5s: A always ranks each clip's label first; B does on the clean view only."""
    labels = audioset_labels()
    path = tmp_path / "clips.csv"
    rows = [f"{shared_data / 'clips' / c},{labels.mids[i]}" for c, i in zip(CLIPS, LABEL_INDEX, strict=True)]
    path.write_text("path,labels\n" + "\n".join(rows) + "\n")
    manifest = load_manifest(path, labels=labels)
    store = create_store(tmp_path / "s.zarr", manifest, np.full(4, 5.0), labels, policy_by_name("clean"), 2, 0, 2)
    top = np.array([[[i + j for j in range(5)]] * 2 for i in LABEL_INDEX], dtype=np.int16)  # [clips, views, 5]
    values = np.broadcast_to(np.array([4.0, 3, 2, 1, 0], np.float16), top.shape).copy()
    common = {"logits": values, "rest": np.full((4, 2), -6.0, np.float16), "failed": np.zeros((4, 2), bool)}
    _write(store, "toy/tiny16k", {**common, "indices": top})
    other = top.copy()
    other[:, 1] = NOISE
    failed = np.zeros((4, 2), bool)
    failed[3, 1] = True
    _write(store, "toy/partial32k", {**common, "indices": other, "failed": failed})
    return str(tmp_path / "s.zarr")


def _sigmoid(x: float) -> float:
    return 1 / (1 + np.exp(-x))


def test_report_of_chosen_top_k(crafted):
    report = store_report(crafted)
    a, b = report.teachers  # teacher names sort: toy/partial32k first
    a, b = (a, b) if a.name == "toy/tiny16k" else (b, a)
    assert (report.clips, report.views, report.labelled_clips) == (4, 2, 4)
    assert a.clean_map == pytest.approx(1.0) and a.augmented_map == pytest.approx(1.0)
    # B's augmented views all put each label at the rest fill: 3 tied usable views, one positive -> AP 1/3.
    assert b.clean_map == pytest.approx(1.0) and b.augmented_map == pytest.approx(1 / 3)
    assert (a.usable_views, a.failed_views, b.usable_views, b.failed_views) == (8, 0, 7, 1)
    mass = sum(_sigmoid(x) for x in (4, 3, 2, 1, 0))
    assert a.probability_mass == pytest.approx(mass + 522 * _sigmoid(-6), rel=1e-3)
    assert b.probability_mass == pytest.approx(mass + 95 * _sigmoid(-6), rel=1e-3)
    assert (a.covered, a.in_top_k, a.top1_classes, a.labelled_missing) == (527, 20, 4, 0)
    assert (b.covered, b.in_top_k, b.top1_classes) == (100, 25, 5)
    assert a.label_cardinality == b.label_cardinality == 1.0
    assert a.entropy_bits > 0 and len(b.view_entropy) == 7
    (pair,) = report.pairs
    assert pair.views == 7
    # Clean views share all five classes, augmented views only none of them.
    assert pair.top5_overlap == pytest.approx(4 / 7)
    assert -1 <= pair.rank_correlation < 1


def test_spearman_handles_ties_and_order():
    a = np.array([[1.0, 2.0, 3.0, 3.0], [4.0, 3.0, 2.0, 1.0]])
    b = np.array([[10.0, 20.0, 30.0, 30.0], [1.0, 2.0, 3.0, 4.0]])
    assert spearman(a, b) == pytest.approx([1.0, -1.0])


@pytest.fixture()
def dumped(shared_data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "clips.csv"
    path.write_text("path,labels\n" + "\n".join(f"{shared_data / 'clips' / c},Dog" for c in CLIPS[:3]) + "\n")
    config = DumpConfig(
        manifest=str(path),
        store=str(tmp_path / "real.zarr"),
        teachers=["toy/tiny16k", "toy/partial32k"],
        views=2,
        k=10,
        workers=0,
        progress=False,
    )
    dump_teachers(config)
    return tmp_path / "real.zarr"


def test_cli_report_of_a_dumped_store(dumped, tmp_path):
    png, markdown = tmp_path / "out" / "report.png", tmp_path / "report.md"
    result = run_kd("store", "report", str(dumped), "--png", str(png), "--markdown", str(markdown))
    assert result.returncode == 0, result.stderr
    assert "toy/tiny16k" in result.stdout and "top-5 overlap" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = markdown.read_text()
    assert "| toy/partial32k | toy/tiny16k | 6 |" in text and "clean mAP" in text


def test_cli_report_of_no_store(tmp_path):
    result = run_kd("store", "report", str(tmp_path / "none.zarr"))
    assert result.returncode == 2 and result.stderr.startswith("kd: error:") and "none.zarr" in result.stderr
