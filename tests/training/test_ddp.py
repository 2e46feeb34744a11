"""Distributed data parallel through torchrun: 2 processes with gloo on the CPU, as `vsr train` runs on GPUs.

Stage psnr has no batch norm, so 2 processes × 2 patches must train the same network as 1 process × 4 patches
(DDP averages the two halves' gradients, which is the gradient of the whole batch's mean L1), up to the order of
float additions. Stage gan runs both wrapped networks (the discriminator frozen for the generator's step).
"""

import os
import subprocess
import sys

import torch

from vsr.training.checkpoints import load_state
from vsr.training.logs import read_csv
from vsr.training.trainer import train
from tests.training.test_trainer import tiny_config, write_photos


def torchrun(tmp_path, *args, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--standalone", "-m", "vsr.cli", "train", tmp_path / "tiny.toml", *args]
    return subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=300, env=env)


def test_two_processes_train_the_same_network_as_one_with_the_whole_batch(tmp_path):
    config = tiny_config(tmp_path, total_iters=3, batch_size=4, val_holdout=0)
    single = train(config)

    result = torchrun(tmp_path, "--data", tmp_path / "photos", "-o", tmp_path / "ddp", "--set", "batch_size=4",
                      "--set", "total_iters=3", "--set", "val_holdout=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes on cpu, 2 patches each" in result.stderr
    ddp_state, single_state = load_state(tmp_path / "ddp"), load_state(single.out_dir)
    assert ddp_state["iteration"] == 3
    for key, value in single_state["generator"].items():
        torch.testing.assert_close(ddp_state["generator"][key], value, rtol=1e-4, atol=1e-6)
    ddp_rows, single_rows = read_csv(tmp_path / "ddp" / "train.csv"), read_csv(single.out_dir / "train.csv")
    assert [row["iteration"] for row in ddp_rows] == [1, 2, 3]  # rank 0 alone writes the log
    for ddp_row, single_row in zip(ddp_rows, single_rows):
        assert abs(ddp_row["l_pix"] - single_row["l_pix"]) < 1e-5  # the losses averaged over the processes


def test_gan_stage_runs_under_ddp_on_the_pool_the_psnr_stage_kept(tmp_path):
    """The main process takes the psnr run's pool over (moves it into the gan run's folder) before it tells the other
    its key: both read it there, nothing is decoded again."""
    psnr = tiny_config(tmp_path, patch_size=128, total_iters=1, val_holdout=1, pool="disk",
                       out_dir=str(tmp_path / "psnr"))  # (writes the recipe and 160×160 photos)
    model = train(psnr).model_path
    assert (tmp_path / "psnr" / "pool" / "index.json").is_file()  # (kept for the gan stage)
    result = torchrun(tmp_path, "--data", tmp_path / "photos", "-o", tmp_path / "ddp", "--allow-random-vgg",
                      "--set", 'stage="gan"', "--set", "patch_size=128", "--set", "batch_size=4",
                      "--set", "total_iters=2", "--set", "val_holdout=1", "--set", f"pretrained={model}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"taken over from {tmp_path / 'psnr'}" in result.stderr and "training pool on disk" not in result.stderr
    assert "the training pool goes to disk" in result.stderr  # (the 2 processes read one copy)
    assert not (tmp_path / "psnr" / "pool").exists()
    assert not (tmp_path / "ddp" / "pool").exists()  # (removed at the end of the gan stage)
    state = load_state(tmp_path / "ddp")
    assert state["iteration"] == 2 and "discriminator" in state and state["optimizer_d"]["state"]
    rows = read_csv(tmp_path / "ddp" / "train.csv")
    assert [row["iteration"] for row in rows] == [1, 2] and all(row["l_d"] > 0 for row in rows)
    assert [row["iteration"] for row in read_csv(tmp_path / "ddp" / "val.csv")] == [0, 2]
    assert (tmp_path / "ddp" / "model.pth").is_file()


def test_an_error_of_the_main_process_reading_the_pool_ends_the_others_at_once(tmp_path):
    """The main process alone reads the pictures into the pool on disk: its error (here, every photo smaller than the
    patch) left the others waiting for it, until torchrun killed them 30 s later (on other machines, a day)."""
    tiny_config(tmp_path)  # (64×64 photos)
    result = torchrun(tmp_path, "--data", tmp_path / "photos", "-o", tmp_path / "ddp", "--set", "patch_size=128",
                      "--set", "total_iters=2", "--set", "val_holdout=0")
    said = "vsr: error: every training image is smaller than the 128×128 patch"
    assert result.returncode != 0 and result.stderr.count(said) == 2, result.stderr[-3000:]
    # (torchrun may still send SIGTERM to the one that ends second: a race it wins now and then under load)
    assert "forcefully exiting" not in result.stderr  # (after waiting 30 s for it to end)


def test_a_process_that_finds_another_pool_than_the_main_one_reads_the_pictures_itself(tmp_path, monkeypatch):
    """A process of another machine whose out_dir holds a pool of other pictures (one this machine's main process
    kept from an earlier run) took it for the main process's: it trains on the pool of the key it is told."""
    import torch.distributed as dist

    from vsr.training import trainer
    from vsr.training.pool import POOL_DIR, gather_pool
    from tests.training.test_data import _random_image

    config = tiny_config(tmp_path, val_holdout=0)
    stale = gather_pool(iter([_random_image("old.png", 64, 64, 1)]), budget=0, folder=tmp_path / "run" / POOL_DIR,
                        key="an earlier run's")
    assert stale.on_disk
    monkeypatch.setattr(dist, "new_group", lambda **options: "group")
    monkeypatch.setattr(dist, "destroy_process_group", lambda group=None: None)
    monkeypatch.setattr(dist, "broadcast_object_list", lambda told, src, group: told.__setitem__(0, ("", "main's")))
    pool, validation = trainer._training_pool(config, None, rank=1, world=2)
    assert sorted(image.name for image in pool.images) == [f"photo{index}.png" for index in range(4)]
    assert validation == []


def test_a_stop_sent_to_one_process_stops_both_at_the_same_iteration_saved(tmp_path):
    """A SIGTERM that reaches one process of the run (here rank 1's, which writes nothing) stops every process after
    the same iteration, whose state rank 0 saves: each learns of it through the per-iteration all-reduce, else one
    would wait for the other in the next gradient sync."""
    import signal

    from tests.cli.test_train_cli import _children
    from tests.processes import HANG_SECONDS, wait_until

    tiny_config(tmp_path)
    photos = write_photos(tmp_path / "large", count=2, size=512)  # (256 batches an epoch: no epoch end meanwhile)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
               "vsr.cli", "train", tmp_path / "tiny.toml", "--data", photos, "-o", tmp_path / "ddp", "--set",
               "batch_size=4", "--set", "total_iters=100000", "--set", "save_every=100000", "--set", "val_holdout=0",
               "--set", "log_every=1"]
    process = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True)
    try:
        log = tmp_path / "ddp" / "train.csv"
        wait_until(lambda: log.is_file() and len(read_csv(log)) >= 3, "3 iterations logged", process)
        rank_1 = [pid for pid in _children(process.pid) if b"\0RANK=1\0" in _environ(pid)]
        assert len(rank_1) == 1, "no rank 1"
        os.kill(rank_1[0], signal.SIGTERM)
        _, stderr = process.communicate(timeout=HANG_SECONDS)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    stopped_at = load_state(tmp_path / "ddp")["iteration"]
    assert stopped_at == read_csv(tmp_path / "ddp" / "train.csv")[-1]["iteration"] >= 3
    assert f"vsr: stopped at iteration {stopped_at}; `vsr train --resume {tmp_path / 'ddp'}` continues" in stderr


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return b"\0" + file.read()
    except OSError:
        return b""
