"""bench/device_check.py runs on lent GPU machines only now and then; its --smoke mode runs the same script end to
end on the CPU with tiny models, so a broken step shows up here rather than in a GPU session's few minutes."""

import dataclasses
import faulthandler
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def device_check_module():
    """bench/device_check.py imported as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("device_check", REPO / "bench" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel of one module, `name`, whose __version__ is `version`."""
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


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


def test_carried_wheels_are_installed_beside_the_interpreters_environment(tmp_path, monkeypatch):
    """The GPU machine's Python lacks PyAV and decord: their wheels are installed into a folder of their own, which
    this process and the GPU tests' subprocess import from; the image's environment is not written to."""
    device_check = device_check_module()
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    make_wheel(tmp_path, "vsr_carried_probe", "1.2")
    report = device_check.install_missing_packages({"vsr_carried_probe": "vsr_carried_probe"}, tmp_path)
    try:
        assert report["installed_now"] == ["vsr_carried_probe"] and report["vsr_carried_probe"] == "1.2", report
        folder = Path(report["installed_in"])
        assert Path(sys.modules["vsr_carried_probe"].__file__).is_relative_to(folder)
        assert not folder.is_relative_to(sys.prefix)
        seen = subprocess.run([sys.executable, "-c", "import vsr_carried_probe as m; print(m.__file__)"],
                              capture_output=True, text=True, check=True).stdout
        assert Path(seen.strip()).is_relative_to(folder)
    finally:
        sys.modules.pop("vsr_carried_probe", None)


def test_every_kind_of_measurement_gets_time_within_the_devices_budget(tmp_path, monkeypatch):
    """The step times below are estimates for an H100 (the GPU tests 120 s, a model-only row 5 s, an end-to-end row
    10 s with x264 at 4× the input, a torch.compile row 40 s); on a clock that only they move, with the device
    call's budget, every kind of measurement gets its turn. The compile rows were gated on 90 s beyond the third
    kept for the end-to-end runs, which the model-only rows before them always used up: they never ran."""
    device_check = device_check_module()
    clock = [0.0]
    monkeypatch.setattr(device_check.time, "perf_counter", lambda: clock[0])

    def takes(seconds):
        clock[0] += seconds

    def model_only(torch, config, loaded, row, macs, peak):
        takes(40.0 if row.mode == "compile" else 5.0)
        row.fps = 1.0

    def end_to_end(torch, config, loaded, row, folder):
        takes(10.0)
        row.end_to_end_fps = row.model_only_fps = row.ratio = 1.0

    monkeypatch.setattr(device_check, "run_gpu_tests", lambda out, timeout: takes(120.0) or {"summary": "faked"})
    monkeypatch.setattr(device_check, "matmul_tflops", lambda *args: 100.0)
    monkeypatch.setattr(device_check, "measure_model_only", model_only)
    monkeypatch.setattr(device_check, "measure_end_to_end", end_to_end)
    # The device's rows, on tiny networks of the same architectures (the CPU builds them; the fakes never run them).
    full, tiny = device_check.full_config(), device_check.smoke_config()
    models = {"rrdbnet-x4": tiny.models["rrdbnet-tiny"], "animevideov3": tiny.models["srvgg-tiny"]}
    config = dataclasses.replace(full, smoke=True, device="cpu", models=models)
    monkeypatch.setattr(device_check, "smoke_config", lambda: config)
    try:
        assert device_check.main(["--smoke", "--budget", "360", "--out", str(tmp_path)]) == 0
    finally:
        faulthandler.cancel_dump_traceback_later()
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["complete"]
    rows = report["model_only"]
    assert all(row["fps"] for row in rows) and len(rows) == len(full.model_only), rows
    assert all(row["end_to_end_fps"] for row in report["end_to_end"]), report["end_to_end"]
    assert [row["model"] for row in rows if row["mode"] == "compile"] == ["rrdbnet-x4", "animevideov3"]
    assert clock[0] <= 360
    # The tables are written with the JSON, so a run cut short still brings them back.
    assert "| rrdbnet-x4 | 360p | compile | bf16 | 1 | 1.0 |" in (tmp_path / "device_check.md").read_text()


def test_a_failed_import_of_vsr_still_leaves_the_json(tmp_path, monkeypatch):
    """Without PyAV (its wheel not carried, or not installable) `import vsr` fails: the JSON says so, with what the
    packages step found, instead of a traceback alone."""
    device_check = device_check_module()

    def fails(force_tree):
        raise ModuleNotFoundError("No module named 'av'")

    monkeypatch.setattr(device_check, "make_vsr_importable", fails)
    try:
        assert device_check.main(["--smoke", "--out", str(tmp_path)]) == 3
    finally:
        faulthandler.cancel_dump_traceback_later()
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["vsr_import"] == "failed: ModuleNotFoundError: No module named 'av'"
    assert not report["complete"] and "av" in report["packages"]


def test_a_failed_matmul_or_table_does_not_stop_the_run(tmp_path, monkeypatch):
    """The matmul peak and the markdown tables are side views: a cuBLAS error in the one, or a bug in the other
    (the tables are now written after every step), must not cost the model and end-to-end rows."""
    device_check = device_check_module()

    def fails(*args):
        raise RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED")

    monkeypatch.setattr(device_check, "matmul_tflops", fails)
    monkeypatch.setattr(device_check, "markdown", fails)
    # --budget: smoke's 120 s is for a quiet machine (this run took 9 s on one). Past it steps are skipped, and past
    # its watchdog (budget + 40 s) this process, pytest's, is ended: at a load of 28 on 2 cores, 14 share a core.
    try:
        assert device_check.main(["--smoke", "--skip-tests", "--budget", "500", "--out", str(tmp_path)]) == 0
    finally:
        faulthandler.cancel_dump_traceback_later()
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["matmul_bf16_tflops"] is None and "CUBLAS" in report["matmul_bf16_error"]
    assert all(row["fps"] for row in report["model_only"]) and report["end_to_end"][0]["end_to_end_fps"]
    assert "the tables could not be made" in (tmp_path / "device_check.md").read_text()


def test_gpu_tests_cut_by_the_timeout_say_what_ran(tmp_path):
    """A GPU test that hangs (a graph capture, a decoder) is cut at the step's timeout: the log must name the tests
    that ran before it and the one that hung (with -q it held dots alone, and the JUnit file is written at the end)."""
    device_check = device_check_module()
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_slow.py").write_text(
        "import time\n\nimport pytest\n\n\n"
        "@pytest.mark.gpu\ndef test_quick():\n    pass\n\n\n"
        "@pytest.mark.gpu\ndef test_stuck():\n    time.sleep(120)\n")
    out = tmp_path / "out"
    out.mkdir()
    # (pytest passed test_quick 1.1 s after its start on a quiet machine; at a load of 28 on 2 cores, 14 processes
    # to a core, 15 s left little margin)
    result = device_check.run_gpu_tests(out, timeout=30, tests=tests)
    assert result["status"].startswith("timed out after 30 s"), result
    log = (out / "gpu-tests.log").read_text()
    assert "test_quick PASSED" in log and "test_stuck" in log, log
