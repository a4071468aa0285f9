"""Progress off a terminal: plain lines every few seconds (what a batch job's log shows), with rate, info and ETA."""

from __future__ import annotations

import io

from kd.core import progress
from kd.core.progress import PlainProgress, progress_bar


def test_off_a_terminal_progress_is_plain_lines(monkeypatch) -> None:
    monkeypatch.setenv("KD_PROGRESS_SECONDS", "0")
    bar = progress_bar()  # pytest captures stdout: not a terminal
    assert isinstance(bar, PlainProgress) and bar.interval == 0
    assert not isinstance(progress_bar(disable=True), PlainProgress)  # disabled stays silent


def test_lines_every_interval_with_rate_info_and_eta(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    # The calls the training loop makes: a resumed task (completed=20), then updates per step.
    with PlainProgress(interval=10.0, stream=out) as bar:
        task = bar.add_task("training", total=300, completed=20, rate="", info="")
        for step in range(21, 61):
            clock[0] += 0.5
            bar.update(task, completed=step, rate="16.0 samples/s", info=f"loss {1 / step:.4f}")
    lines = out.getvalue().splitlines()
    # 40 steps x 0.5 s = 20 s: a line at 10 s and 20 s, nothing more at the end (nothing new since).
    assert len(lines) == 2, lines
    assert lines[0] == "training: 40/300 (13%), 16.0 samples/s, loss 0.0250, elapsed 0:10, ETA 2:10"
    assert lines[1].startswith("training: 60/300 (20%)") and lines[1].endswith("elapsed 0:20, ETA 2:00")


def test_the_last_state_is_written_at_the_end() -> None:
    out = io.StringIO()
    with PlainProgress(interval=3600, stream=out) as bar:
        task = bar.add_task("dumping", total=8, rate="", info="")
        bar.update(task, advance=8, rate="2.0 views/s")
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("dumping: 8/8 (100%), 2.0 views/s, elapsed")
    assert "ETA" not in out.getvalue()
