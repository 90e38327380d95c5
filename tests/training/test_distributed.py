"""Two CPU processes under torchrun (gloo): the same command trains with DistributedDataParallel."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import TINY, merge

REPO = Path(__file__).resolve().parents[2]


def test_torchrun_two_cpu_processes(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(merge(TINY, {"train": {"epochs": 2, "device": "cpu"}})))
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "unetseg.cli", "train", str(config), "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "curves.png", "samples.png"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    digests = summary["rank_state_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks ended with identical weights and buffers
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    # 8 patches split over 2 ranks, batch 2 per rank -> 2 steps per epoch
    assert [r["step"] for r in rows] == ["2", "4"]
    assert proc.stdout.count("run folder:") == 1  # only rank 0 reports
