"""bench/device_check.py runs on lent GPU machines only now and then; its --smoke mode runs the same script end to
end on the CPU with tiny models, so a broken step shows up here rather than in a GPU session's few minutes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_every_table(tmp_path):
    out = tmp_path / "out"
    # --import-tree: vsr from a tree of symlinks, as on the GPU machine where vsr is not installed.
    # --budget: smoke's 120 s skipped steps on a loaded CI machine (the run took 32 s on a quiet one); its watchdog
    # (budget + 40 s) stays under the timeout.
    done = subprocess.run([sys.executable, str(REPO / "bench" / "device_check.py"), "--smoke", "--import-tree",
                           "--budget", "500", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "device_check.json").read_text())
    assert report["complete"] and not (out / "hang.txt").exists()
    assert report["environment"]["torch"]
    tree = report["vsr_import"].removeprefix("symlinked tree in ")
    # The GPU tests' process imports vsr from the tree, not from the checkout's vsr/ (which lacks the subpackages);
    # every GPU test is collected, and on the CPU each skips itself.
    tests = report["gpu_tests"]
    assert tests["vsr_from"].startswith(tree), tests
    assert tests["tests"] >= 10 and tests["errors"] == 0 and tests["failures"] == 0, tests
    if not torch.cuda.is_available():
        assert tests["skipped"] == tests["tests"], tests
    assert report["model_only"] and all(row["fps"] and row["fps"] > 0 for row in report["model_only"]), report
    assert {row["mode"] for row in report["model_only"]} == {"eager", "graph"}
    (e2e,) = report["end_to_end"]
    assert e2e["end_to_end_fps"] > 0 and e2e["output"] == "128x96, 6 frames" and e2e["decoder"] == "pyav", e2e
    assert set(e2e["share"]) >= {"decode", "model", "encode"}
    table = (out / "device_check.md").read_text()
    assert "| rrdbnet-tiny | tiny | graph | fp32 | 2 |" in table


def test_a_hung_run_leaves_its_stacks_and_stops(tmp_path):
    # A watchdog far shorter than the run stands in for a step that hangs on the GPU machine.
    done = subprocess.run([sys.executable, str(REPO / "bench" / "device_check.py"), "--smoke", "--skip-tests",
                           "--watchdog", "3", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "most recent call first" in (tmp_path / "hang.txt").read_text()
    if (tmp_path / "device_check.json").exists():  # the steps done before the hang
        assert json.loads((tmp_path / "device_check.json").read_text())["complete"] is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_a_gpu_the_full_check_refuses_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "device_check.py"), "--out", str(tmp_path),
                           "--skip-tests"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "device_check: no CUDA device here; use --smoke to check the script on the CPU")
