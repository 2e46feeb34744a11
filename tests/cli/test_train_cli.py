"""`vsr train` and `vsr interpolate` through the real command line, and the trained model in `vsr upscale`."""

import os
import signal
import subprocess
import time

import pytest
import torch

from vsr.models.checkpoint import load_model, read_state_dict, save_model
from vsr.models.detect import spec_for
from vsr.models.rrdbnet import RRDBNet
from vsr.pipelines.images import read_image
from vsr.training.checkpoints import load_state
from vsr.training.logs import read_csv
from tests.processes import HANG_SECONDS, VSR, wait_until
from tests.processes import run_vsr as vsr
from tests.training.test_trainer import tiny_config, write_photos


def one_line_error(result) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vsr: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_train_plot_resume_and_upscale_with_the_trained_model(tmp_path):
    tiny_config(tmp_path)  # the tiny recipe and photos
    run = tmp_path / "run"
    result = vsr("train", tmp_path / "tiny.toml", "--data", tmp_path / "photos", "-o", run, "--plot",
                 "--set", "total_iters=2")
    assert result.returncode == 0, result.stderr
    assert f"wrote {run / 'model.pth'} (PSNR-Y" in result.stdout
    assert "iteration 2/2" in result.stderr and "it/s" in result.stderr and "ETA" in result.stderr
    assert read_image(run / "curves.png").rgb.shape[1:] == (450, 1600)

    resumed = vsr("train", "--resume", run, "--set", "total_iters=3", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert [row["iteration"] for row in read_csv(run / "train.csv")] == [1, 2, 3]

    write_photos(tmp_path / "small", count=1, size=12)
    # (the run's folder: its model.pth)
    upscaled = vsr("upscale", tmp_path / "small" / "photo0.png", "--model", run, "-o", tmp_path / "out.png")
    assert upscaled.returncode == 0, upscaled.stderr
    out = read_image(tmp_path / "out.png").rgb
    assert out.shape == (3, 48, 48)
    with torch.no_grad():
        expected = load_model(run / "model.pth").module(read_image(tmp_path / "small" / "photo0.png").rgb[None])
    assert (out - expected[0].clamp(0, 1)).abs().max() <= 1 / 255  # the same network, rounded to 8 bits
    # A run's state.pt (one still training, say) gives its EMA generator, as its model.pth: it was "not a state dict".
    state = read_state_dict(run / "state.pt")
    assert state.keys() == read_state_dict(run / "model.pth").keys()
    assert all(torch.equal(state[key].float(), read_state_dict(run / "model.pth")[key].float()) for key in state)


def test_missing_vgg_weights_is_one_line_naming_the_file(tmp_path):
    tiny_config(tmp_path)
    stage1 = _tiny_rrdbnet_file(tmp_path / "stage1", 0)
    result = vsr("train", tmp_path / "tiny.toml", "--data", tmp_path / "photos", "-o", tmp_path / "run",
                 "--set", 'stage="gan"', "--set", "patch_size=128", "--set", f"pretrained={stage1}",
                 env={"TORCH_HOME": str(tmp_path / "torch")})
    line = one_line_error(result)
    assert result.returncode == 3
    assert "vgg19-dcbb9e9d.pth" in line and str(tmp_path / "torch") in line and "--vgg-weights" in line
    assert not (tmp_path / "run" / "state.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["--set", "lrr=1"], "unknown key 'lrr' (did you mean lr?), expected one of: stage, train_paths"),
    (["--set", "batch_size=many"], "batch_size='many' is not a valid value, expected int"),
    (["--resume", "somewhere"], "give either a RECIPE or --resume"),
    (["--set", "lr=-1"], "vsr: error: lr=-1: expected a finite number, 0 or more"),
    (["--set", "gan_weight=nan"], "vsr: error: gan_weight=nan: expected a finite number, 0 or more"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    tiny_config(tmp_path)
    result = vsr("train", tmp_path / "tiny.toml", "--data", tmp_path / "photos", *args)
    assert message in one_line_error(result)
    assert result.returncode == 2


def test_an_empty_run_folder_or_interpolation_name_is_one_line(tmp_path, monkeypatch):
    """-o "" (an unset variable in a script) trained into the current folder, over files there; interpolate's -o .
    was a traceback and -o .. wrote hidden "...pth" files."""
    tiny_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = vsr("train", "tiny.toml", "--data", "photos", "-o", "")
    assert one_line_error(result) == "vsr: error: -o is empty: name the run's folder (-o runs/NAME)"
    psnr = _tiny_rrdbnet_file(tmp_path / "psnr", 0)
    for output in ("", ".", "..", tmp_path / "photos"):
        result = vsr("interpolate", psnr, psnr, "-o", output)
        assert result.returncode == 2 and "name the file to write (OUT.pth), not a folder" in one_line_error(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photos", "psnr.pth", "psnr.safetensors", "tiny.toml"]


def test_recipe_or_resume_folder_must_exist(tmp_path):
    assert "shipped recipes: esrgan_x4_gan" in one_line_error(vsr("train", "no_such_recipe"))
    assert "no training state to resume from" in one_line_error(vsr("train", "--resume", tmp_path))


def test_a_run_folder_or_model_cache_that_cannot_be_made_is_one_line(tmp_path):
    tiny_config(tmp_path)
    (tmp_path / "taken").write_text("a file")
    result = vsr("train", tmp_path / "tiny.toml", "--data", tmp_path / "photos", "-o", tmp_path / "taken")
    assert result.returncode == 4
    assert one_line_error(result) == f"vsr: error: {tmp_path / 'taken'}: cannot make the run's folder (File exists)"
    result = vsr("models", "--download", "realesr-animevideov3", env={"VSR_HOME": str(tmp_path / "taken")})
    assert result.returncode == 4 and one_line_error(result).startswith(
        f"vsr: error: {tmp_path / 'taken' / 'weights'}: cannot make the model cache folder there")


def _tiny_rrdbnet_file(path, seed, **hyperparameters):
    torch.manual_seed(seed)
    hyperparameters = {"num_feat": 8, "num_block": 1, "num_grow_ch": 32, **hyperparameters}
    return save_model(RRDBNet(**hyperparameters), spec_for("RRDBNet", hyperparameters), path)[0]


def test_interpolate_blends_two_checkpoints(tmp_path):
    psnr, gan = _tiny_rrdbnet_file(tmp_path / "psnr", 0), _tiny_rrdbnet_file(tmp_path / "gan", 1)
    result = vsr("interpolate", psnr, gan, "--alpha", "0.25", "-o", tmp_path / "blend.pth")
    assert result.returncode == 0, result.stderr
    blend, a, b = (read_state_dict(path) for path in (tmp_path / "blend.safetensors", psnr, gan))
    for key in a:
        torch.testing.assert_close(blend[key], 0.75 * a[key] + 0.25 * b[key], rtol=0, atol=1e-7)
    assert load_model(tmp_path / "blend.pth").spec == load_model(psnr).spec

    again = vsr("interpolate", psnr, gan, "-o", tmp_path / "blend.pth")
    assert "already exists" in one_line_error(again) and again.returncode == 4
    assert vsr("interpolate", psnr, gan, "-o", tmp_path / "blend.pth", "--overwrite").returncode == 0
    assert vsr("interpolate", psnr, gan, "-o", tmp_path / "other.pt").stdout.strip() == (
        f"wrote {tmp_path / 'other.pth'} and {tmp_path / 'other.safetensors'}")  # (not other.pt.pth)


def _gray_rrdbnet_file(path, level):
    """A tiny RRDBNet whose output sits near `level` (random tiny nets output ~0, which clamps to black)."""
    torch.manual_seed(0)
    hyperparameters = {"num_feat": 8, "num_block": 1, "num_grow_ch": 32}
    module = RRDBNet(**hyperparameters)
    torch.nn.init.constant_(module.conv_last.bias, level)
    return save_model(module, spec_for("RRDBNet", hyperparameters), path)[0]


def test_upscale_blends_two_models_on_the_fly_like_a_saved_interpolation(tmp_path):
    psnr, gan = _gray_rrdbnet_file(tmp_path / "psnr", 0.6), _gray_rrdbnet_file(tmp_path / "gan", 0.2)
    assert vsr("interpolate", psnr, gan, "--alpha", "0.3", "-o", tmp_path / "saved.pth").returncode == 0
    image = write_photos(tmp_path / "photos", count=1, size=16) / "photo0.png"
    on_the_fly = vsr("upscale", image, "-m", psnr, "--blend", gan, "--alpha", "0.3", "-o", tmp_path / "a.png")
    saved = vsr("upscale", image, "-m", tmp_path / "saved.pth", "-o", tmp_path / "b.png")
    assert on_the_fly.returncode == 0 and saved.returncode == 0, on_the_fly.stderr + saved.stderr
    plain = vsr("upscale", image, "-m", psnr, "-o", tmp_path / "c.png")
    assert plain.returncode == 0
    a, b, c = (read_image(tmp_path / name).rgb for name in ("a.png", "b.png", "c.png"))
    assert (a - b).abs().max() <= 1 / 255 + 1e-6
    assert (a - c).abs().max() > 1 / 255


def test_interpolate_refuses_different_architectures_in_one_line(tmp_path):
    psnr = _tiny_rrdbnet_file(tmp_path / "psnr", 0)
    wider = _tiny_rrdbnet_file(tmp_path / "wider", 0, num_feat=16)
    result = vsr("interpolate", psnr, wider, "-o", tmp_path / "out.pth")
    assert "must be the same architecture, scale and hyperparameters" in one_line_error(result)
    assert result.returncode == 3
    assert not (tmp_path / "out.pth").exists()


def test_interpolate_takes_zoo_names_as_upscale_blend_does(tmp_path):
    """Real-ESRGAN's own pair is realesrnet-x4plus with realesrgan-x4plus; names were refused as "no suffix"."""
    from vsr.models import zoo

    result = vsr("interpolate", "realesr-animevideov3", "realesr-animevideov3", "--alpha", "0.3", "-o",
                 tmp_path / "same")
    assert result.returncode == 0, result.stderr
    blended = read_state_dict(tmp_path / "same.pth")  # (a model blended with itself is itself)
    original = zoo.load("realesr-animevideov3").module.state_dict()
    assert blended.keys() == original.keys()
    assert all(torch.allclose(blended[key], original[key].float(), atol=1e-6) for key in original)


def test_interpolate_refuses_zoo_names_that_are_no_network_of_their_own(tmp_path):
    """realesr-animevideov3-x2 is the ×4 network with a downscale after it, which a checkpoint cannot hold (saving
    failed with the wrapper's key names); bicubic has no weights at all."""
    cases = [("realesr-animevideov3-x2", "realesr-animevideov3-x2 is realesr-animevideov3 with its output scaled "
                                         "down; blend the ×4 networks, then upscale with --outscale 2"),
             ("bicubic", "bicubic resamples; it has no weights to blend")]
    for name, message in cases:
        result = vsr("interpolate", name, "realesr-animevideov3", "-o", tmp_path / "out.pth")
        assert one_line_error(result) == f"vsr: error: {message}" and result.returncode == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("limit, samples, message", [
    (1, 1, "samples/iter_0000000.png: cannot write (File too large)"),  # (the first validation's sample sheet)
    (1, 0, "tb: cannot write the TensorBoard log (File too large)"),
    (50, 1, "state.pt: cannot write the training state (the file came out shorter than written; is the disk full?)")])
def test_a_full_disk_is_one_line_naming_the_file(tmp_path, limit, samples, message):
    """TensorBoard's writer thread printed its error as a traceback, cut into the error line, and the line blamed
    train.csv, which was written; a state.pt cut short said torch's "[enforce fail at inline_container.cc:672] .
    unexpected pos 84544 vs 84496" (helper-86). A file-size limit (KiB) fills the disk."""
    import resource
    import subprocess

    from tests.processes import VSR

    pytest.importorskip("tensorboard")  # (it fills first: 1 KiB of events)
    tiny_config(tmp_path)
    run = tmp_path / "run"
    full = subprocess.run([*VSR, "train", str(tmp_path / "tiny.toml"), "--data", str(tmp_path / "photos"), "-o",
                           str(run), "--set", f"val_samples={samples}", "-q"], capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                                (limit << 10, resource.RLIM_INFINITY)))
    assert full.returncode == 4
    assert full.stderr.strip().splitlines() == [f"vsr: error: {run}/{message}"]
    if samples and limit == 1:  # (nothing half-written under the sheet's name)
        assert not (run / "samples" / "iter_0000000.png").exists()


def test_a_full_disk_while_the_training_pool_is_written_is_one_line(tmp_path):
    """A file-size limit of 20 KiB fills the disk at the pool's second photo (12 KiB each): one line naming the file
    and what to do, exit 4, and no pool left behind."""
    import resource

    tiny_config(tmp_path)
    run = tmp_path / "run"
    full = subprocess.run([*VSR, "train", str(tmp_path / "tiny.toml"), "--data", str(tmp_path / "photos"), "-o",
                           str(run), "--set", "pool=disk", "-q"], capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                                (20 << 10, resource.RLIM_INFINITY)))
    assert full.returncode == 4
    assert full.stderr.strip().splitlines() == [
        f"vsr: error: {run}/pool/pixels.u8: cannot write the training pool (File too large; is the disk full? "
        "it takes 3 bytes per pixel of the training pictures: free space, or --set pool=memory to hold "
        "them in memory)"]
    assert not (run / "pool").exists()


def test_a_run_that_fails_after_writing_its_pool_says_in_its_one_line_that_the_pool_is_kept(tmp_path):
    tiny_config(tmp_path)
    run = tmp_path / "run"
    result = vsr("train", tmp_path / "tiny.toml", "--data", tmp_path / "photos", "-o", run, "--set", "pool=disk",
                 "--set", "lr=1e30", "--set", "ema_decay=0", "--set", "val_holdout=0", "--set", "total_iters=2",
                 "--set", "log_every=2", "-q")
    assert one_line_error(result) == (
        "vsr: error: training diverged at iteration 2: l_pix not finite (a learning rate too high?); nothing was "
        f"exported, and no checkpoint was saved yet; its training pool {run}/pool (0.0 MB) is kept for a new run in "
        f"{run} on the same data, which reads it instead of decoding the pictures again (rm -r {run}/pool frees it)")
    assert result.returncode == 3 and (run / "pool" / "pixels.u8").stat().st_size == 4 * 3 * 64 * 64


@pytest.mark.parametrize("signal_number, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "term"])
def test_a_stop_sent_to_every_process_of_a_run_with_loader_workers_is_a_clean_interruption(tmp_path, signal_number,
                                                                                          code):
    """SIGTERM to the run's process group (kill -- -PGID, docker stop, systemd, Slurm) reached the DataLoader workers
    too, which torch lets die of it: "RuntimeError: DataLoader worker (pid N) is killed by signal: Terminated", a
    traceback and exit 1, where the trainer says it was interrupted and how to resume."""
    config = tiny_config(tmp_path)
    run = tmp_path / "run"
    # 1024 batches an epoch (seconds at 100 iterations a second): the same workers for a while
    photos = write_photos(tmp_path / "large", count=2, size=1024)
    # SIGINT as a terminal delivers it (a test run in the background has it ignored, and that survives exec).
    process = subprocess.Popen(
        [*VSR, "train", str(tmp_path / "tiny.toml"), "--data", str(photos), "-o", str(run), "--set", "val_holdout=0",
         "--set", "total_iters=100000", "--set", "num_workers=2", "--set", "save_every=2", "--set", "val_every=100000",
         "--set", "pool=disk"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_until((run / "state.pt").exists, "a state saved", process)
        # (well into the loop, the workers busy; an epoch's end replaces them)
        wait_until(lambda: len(_children(process.pid)) == 2, "2 loader workers", process)
        workers = _children(process.pid)
        assert len(workers) == 2
        # A signal to the group reaches each process at its own moment: here the workers first, as it happened.
        for worker in workers:
            os.kill(worker, signal_number)
        time.sleep(1)
        os.killpg(process.pid, signal_number)
        _, stderr = process.communicate(timeout=HANG_SECONDS)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == code, stderr
    # The iteration under way finished and saved (save_every=2: an odd one is this stop's), said in the last line.
    stopped_at = load_state(run)["iteration"]
    assert stderr.endswith(f"vsr: stopped at iteration {stopped_at}; `vsr train --resume {run}` continues from it; "
                           f"its training pool {run}/pool (6.3 MB) is kept for its resume (rm -r {run}/pool frees "
                           "it)\n")
    assert stopped_at == read_csv(run / "train.csv")[-1]["iteration"]
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr
    assert config.num_workers == 0  # (the recipe's: the --set above is what starts the workers)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: field 4 of /proc/N/stat, after the name in parentheses)."""
    children = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as file:
                if int(file.read().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return children
