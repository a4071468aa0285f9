"""kd from Python, end to end in well under a minute on a CPU: dump a teacher, train a student, evaluate, predict.

A tiny teacher with fixed random weights (`toy/tiny16k`) and the tiny student (`dass-tiny`) on five real clips, so
the figures mean nothing; swap in a real teacher (`efficientat/mn04_as`), a real student (`dass-small`) and your own
manifest for a real run. Every call is what the `kd` command of the same name runs, with the same settings.

    python examples/quickstart.py [OUT]

The clips come from kd's shared test data: $KD_SHARED_DATA, else ../shared/data beside the repository.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import kd

CLIPS = {
    "scaper_dogbark.wav": "Dog;Bark",
    "esc50_1-100032-A-0.wav": "Dog;Bark",
    "librosa_robin.ogg": "Bird;Chirp, tweet",
    "tflite_speech.wav": "Speech",
    "us8k_eval_siren_1.wav": "Siren",
}


def main(out: Path) -> None:
    data = Path(os.environ.get("KD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "clips.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        writer.writerows([data / "clips" / name, labels] for name, labels in CLIPS.items())

    # Stage one: each clip's 2 views (view 0 clean) through the teacher; its top 8 logits per view go to the store.
    # workers=0: decode in this process (a few clips do not pay for starting DataLoader workers).
    dumped = kd.dump_teachers(manifest, out / "store.zarr", ["toy/tiny16k"], views=2, k=8, clip_seconds=2.0, workers=0)
    print(f"dump: {dumped.views_computed} views in {dumped.seconds:.1f} s")

    # Stage two: the student learns from the stored logits, without labels; views are replayed from their seeds.
    trained = kd.train_student(
        out / "store.zarr",
        out / "run",
        student="dass-tiny",
        steps=4,
        batch_size=2,
        warmup_steps=1,
        val_fraction=0,
        workers=0,
    )
    print(f"train: step {trained.step}, loss {trained.last_loss:.4f}, checkpoint {trained.out}/last.pt")

    # Use: label mAP on the (labelled) manifest, then tags for one file.
    checkpoint = str(out / "run" / "last.pt")
    report = kd.evaluate(checkpoint, manifest)
    print(f"eval: mAP {report.metrics.mAP:.4f} over {report.clips} clips")
    [prediction] = kd.predict(checkpoint, data / "clips" / "scaper_dogbark.wav", window=2.0)
    print("predict: " + ", ".join(f"{label} {p:.3f}" for label, p in prediction.top(3)))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("quickstart-out"))
