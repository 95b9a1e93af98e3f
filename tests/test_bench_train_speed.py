"""bench/train_speed.py runs end to end on the CPU (on a GPU it adds autocast rows and parity)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_train_speed_prints_a_step_row_and_a_processes_table() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "train_speed.py"), "--device", "cpu",
         "--bandwidths", "16", "--steps", "2", "--warmup", "1", "--threads", "1",
         "--processes", "1", "2"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    step_row = next(line for line in lines if line.startswith("| 16 | 32x32 |"))
    assert "float32" in step_row and "bf16" not in out  # autocast is CUDA-only
    header = next(i for i, line in enumerate(lines) if line.startswith("| processes |"))
    table = [line for line in lines[header + 2 :] if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in table] == ["1", "2"]
    assert all(line.endswith(" s |") for line in table)  # each process's epoch
