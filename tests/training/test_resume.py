"""Resume exactness on the CPU in fp32: N iterations straight equal N/2, stop, resume for the rest.

"Equal" means bit-identical: every logged loss and every tensor of the final state (generator, EMA,
discriminator, both optimizers). The runs cross an epoch boundary, and the resumed half loads its patches with
DataLoader worker processes, which must not change a single patch.
"""

import dataclasses
from pathlib import Path

import pytest
import torch

from vsr.errors import OptionError, OutputError
from vsr.fsutil import temporaries_of, temporary_sibling
from vsr.models.checkpoint import read_state_dict
from vsr.training import checkpoints
from vsr.training.checkpoints import load_state
from vsr.training.logs import read_csv
from vsr.training.trainer import resume, train
from tests.training.test_trainer import tiny_config

LOSS_COLUMNS = ("lr", "l_pix", "l_percep", "l_g_gan", "l_g_total", "l_d", "d_real", "d_fake")


def _losses(run_dir):
    return [{key: row[key] for key in ("iteration", "epoch", *LOSS_COLUMNS) if key in row}
            for row in read_csv(run_dir / "train.csv")]


def _metrics(run_dir):
    """val.csv without its clock (elapsed_s differs between any two runs)."""
    return [{key: value for key, value in row.items() if key != "elapsed_s"} for row in read_csv(run_dir / "val.csv")]


def _assert_states_equal(straight: dict, resumed: dict) -> None:
    assert straight["iteration"] == resumed["iteration"]
    for part in ("generator", "ema", "discriminator"):
        if part in straight:
            for key, value in straight[part].items():
                assert torch.equal(value, resumed[part][key]), f"{part}.{key}"
    for part in ("optimizer_g", "optimizer_d"):
        if part in straight:
            for index, values in straight[part]["state"].items():
                for name, value in values.items():
                    assert torch.equal(value, resumed[part]["state"][index][name]), f"{part}[{index}].{name}"


@pytest.fixture(scope="module")
def straight_psnr_run(tmp_path_factory):
    """8 iterations of 3 batches per epoch (3 photos of 64² in 32² patches, batch 4): epochs 0, 1 and 2."""
    tmp_path = tmp_path_factory.mktemp("straight")
    config = tiny_config(tmp_path, total_iters=8, batch_size=4, milestones=(5,), val_every=4, save_every=100)
    train(config)
    return config


@pytest.mark.parametrize("num_workers", [0, 2])
def test_psnr_stage_resumes_exactly(tmp_path, straight_psnr_run, num_workers):
    straight = straight_psnr_run
    config = dataclasses.replace(straight, out_dir=str(tmp_path / "run"), num_workers=num_workers,
                                 train_paths=straight.train_paths)
    first = train(config, stop_at=4)
    assert first.iteration == 4 and first.model_path is None  # stopped early: a state, no final model
    second = resume(config.out_dir)
    assert second.iteration == 8

    straight_dir, resumed_dir = Path(straight.out_dir), tmp_path / "run"
    losses = _losses(resumed_dir)
    assert [row["epoch"] for row in losses] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert losses == _losses(straight_dir)
    assert _metrics(resumed_dir) == _metrics(straight_dir)
    _assert_states_equal(load_state(straight_dir), load_state(resumed_dir))
    exported, reference = read_state_dict(second.model_path), read_state_dict(straight_dir / "model.pth")
    assert all(torch.equal(exported[key], reference[key]) for key in reference)


def test_a_run_whose_pool_goes_to_disk_trains_the_same_and_resumes_exactly(tmp_path, straight_psnr_run, caplog):
    """pool=disk, as a pool larger than the memory budget: the same patches as the in-memory run's, a resume reads
    the pool written before (nothing decoded again), and the finished run removes it."""
    caplog.set_level("INFO", logger="vsr.training")
    straight = straight_psnr_run
    config = dataclasses.replace(straight, out_dir=str(tmp_path / "run"), pool="disk", num_workers=2)
    train(config, stop_at=4)
    pool = tmp_path / "run" / "pool"
    assert (pool / "pixels.u8").stat().st_size == 3 * 3 * 64 * 64  # kept, to resume from
    assert "the training pool goes to disk" in caplog.text and "training pool on disk: 3 pictures" in caplog.text
    caplog.clear()
    resume(config.out_dir)
    assert "built from these files before" in caplog.text and "removed the training pool" in caplog.text
    assert not pool.exists()
    assert _losses(tmp_path / "run") == _losses(Path(straight.out_dir))
    assert _metrics(tmp_path / "run") == _metrics(Path(straight.out_dir))
    straight_state, resumed_state = load_state(straight.out_dir), load_state(tmp_path / "run")
    _assert_states_equal(straight_state, resumed_state)
    assert resumed_state["data_pixels"] == straight_state["data_pixels"]  # the same digest, from disk or memory


def test_gan_stage_resumes_exactly(tmp_path):
    config = tiny_config(tmp_path, stage="gan", patch_size=128, allow_random_vgg=True, total_iters=4,
                         val_holdout=0, save_every=100)
    straight = dataclasses.replace(config, out_dir=str(tmp_path / "straight"))
    train(straight)
    train(config, stop_at=2)
    resume(config.out_dir)
    assert _losses(tmp_path / "run") == _losses(tmp_path / "straight")
    assert len(_losses(tmp_path / "run")) == 4
    _assert_states_equal(load_state(tmp_path / "straight"), load_state(tmp_path / "run"))
    # The discriminator's layers follow the patch size: a new one was a state_dict traceback.
    with pytest.raises(OptionError, match="patch_size cannot change when resuming"):
        resume(config.out_dir, {"patch_size": "256", "total_iters": "5"})


def test_resume_can_extend_the_run(tmp_path):
    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    train(config)
    # A state half-written as a kill came (0.5 GB for a GAN run) stayed for good (helper-81): the resume removes it.
    half = temporary_sibling(Path(config.out_dir) / "state.pt")
    half.write_bytes(b"half a state")
    result = resume(config.out_dir, {"total_iters": "3"})
    assert not half.exists()
    assert result.iteration == 3 and result.model_path is not None
    assert [row["iteration"] for row in read_csv(tmp_path / "run" / "train.csv")] == [1, 2, 3]
    assert load_state(config.out_dir)["config"]["total_iters"] == 3


def test_a_finished_run_whose_model_could_not_be_written_writes_it_on_resume(tmp_path, caplog, monkeypatch):
    """A full disk at the very end left state.pt at total_iters and no model: the resume refused ("has done 2
    iterations already") and the run could not give its model."""
    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    export = checkpoints.export_generator

    def disk_full_at_the_model(module, config, path):
        if Path(path).name == "model":
            raise OutputError(f"{path}.pth: cannot write (No space left on device)")
        return export(module, config, path)

    monkeypatch.setattr(checkpoints, "export_generator", disk_full_at_the_model)
    with pytest.raises(OutputError, match="model.pth"):
        train(config)
    monkeypatch.setattr(checkpoints, "export_generator", export)
    result = resume(config.out_dir)
    assert result.iteration == 2 and result.model_path == Path(config.out_dir) / "model.pth"
    assert "the run had ended at iteration 2 without writing its model: written now from its state" in caplog.text
    final = read_state_dict(result.model_path)
    ema = load_state(config.out_dir)["ema"]
    assert final.keys() == ema.keys() and all(torch.equal(final[key], ema[key].float()) for key in ema)
    with pytest.raises(OptionError, match="has done 2 iterations already"):  # (now that it has its model)
        resume(config.out_dir)


def test_a_run_killed_between_its_last_state_and_its_model_writes_the_model_on_resume(tmp_path, caplog):
    """Resumed to go further and killed after its last state.pt but before model.pth: the model of the earlier end
    stayed, and the resume refused ("has done 4 iterations already") (helper-81)."""
    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    out = Path(config.out_dir)
    train(config)
    earlier = {suffix: (out / f"model{suffix}").read_bytes() for suffix in (".pth", ".safetensors")}
    resume(out, {"total_iters": "4"})
    for suffix, data in earlier.items():  # (as the kill left it)
        (out / f"model{suffix}").write_bytes(data)
    result = resume(out)
    assert result.iteration == 4 and "without writing its model: written now from its state" in caplog.text
    ema = load_state(out)["ema"]
    for suffix in (".pth", ".safetensors"):
        final = read_state_dict(out / f"model{suffix}")
        assert all(torch.equal(final[key], ema[key].float()) for key in ema)


def test_a_stopped_run_resumed_with_fewer_iterations_than_done_is_refused(tmp_path, caplog):
    """Stopped at iteration 2 of 4 and resumed with total_iters=1: it was said to have ended "without writing its
    model", and that model was written (helper-147)."""
    config = tiny_config(tmp_path, total_iters=4, val_holdout=0)
    train(config, stop_at=2)
    with pytest.raises(OptionError, match="total_iters=1: .* has done 2 iterations already"):
        resume(config.out_dir, {"total_iters": "1"})
    assert not (Path(config.out_dir) / "model.pth").exists() and "without writing its model" not in caplog.text


def test_a_snapshot_cut_short_after_its_state_was_saved_is_written_on_resume(tmp_path):
    """Stopped after state.pt at iteration 2 was saved, while models/iter_0000002 was written: the resume went on
    from 2 and no save wrote that snapshot again (helper-84)."""
    config = tiny_config(tmp_path, total_iters=2, val_holdout=0, save_every=2)
    out = Path(config.out_dir)
    train(config)
    snapshot = out / checkpoints.SNAPSHOTS_DIR / "iter_0000002"
    snapshot.with_suffix(".safetensors").unlink()  # (as the stop left it: its .pth renamed, not yet the other)
    ema = load_state(out)["ema"]
    resume(out, {"total_iters": "3"})
    for suffix in (".pth", ".safetensors"):
        written = read_state_dict(snapshot.with_suffix(suffix))
        assert written.keys() == ema.keys() and all(torch.equal(written[key], ema[key].float()) for key in ema)


def test_a_run_leaves_the_processs_thread_excepthook_as_it_was(tmp_path):
    """Quieting TensorBoard's writer thread (its full-disk traceback) replaced the hook for the rest of a program
    that trains and goes on (helper-87)."""
    import threading

    before = threading.excepthook
    train(tiny_config(tmp_path, total_iters=1, val_holdout=0))
    assert threading.excepthook is before


def test_a_new_run_refuses_a_folder_holding_an_earlier_runs_model(tmp_path):
    """Its state.pt removed to save space, a finished run's model.pth was replaced by a new run's (helper-81)."""
    config = tiny_config(tmp_path, total_iters=1, val_holdout=0)
    train(config)
    (Path(config.out_dir) / "state.pt").unlink()
    before = (Path(config.out_dir) / "model.pth").read_bytes()
    with pytest.raises(OutputError, match="already holds model.pth, model.safetensors, models of an earlier run"):
        train(config)
    assert (Path(config.out_dir) / "model.pth").read_bytes() == before


def test_a_resume_keeps_the_data_it_is_given_as_absolute_paths(tmp_path, monkeypatch):
    """Given --data on a resume, the state kept it relative: the next resume from another folder found no data."""
    config = tiny_config(tmp_path, total_iters=1, val_holdout=0)
    train(config)
    monkeypatch.chdir(Path(config.train_paths[0]).parent)
    resume(config.out_dir, {"total_iters": "2", "train_paths": Path(config.train_paths[0]).name})
    assert load_state(config.out_dir)["config"]["train_paths"] == [str(Path(config.train_paths[0]).absolute())]


def test_logs_that_cannot_be_written_are_one_line(tmp_path):
    """A full disk (here: a folder in train.csv's place) at the run's logs was an OSError traceback."""
    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    (Path(config.out_dir) / "train.csv").mkdir(parents=True)
    with pytest.raises(OutputError, match="cannot write the run's logs"):
        train(config)


def test_what_a_resume_cannot_change_is_one_line_and_its_state_file_names_the_run(tmp_path):
    """The networks' shapes and the optimiser's settings come back from the checkpoint (a new lr was silently
    overridden by the saved one); a run can only go on (fewer iterations than done did nothing, a run out of time
    trained one more iteration per resume)."""
    from vsr.errors import OptionError

    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    train(config)
    for overrides, message in [({"lr": "0.01"}, "lr cannot change when resuming"),
                               ({"num_feat": "16", "scale": "2"}, "num_feat, scale cannot change when resuming"),
                               ({"stage": "gan"}, "stage cannot change when resuming"),  # (was: its patch_size)
                               ({"seed": "1"}, "seed cannot change when resuming"),  # (was: silently other patches)
                               ({"total_iters": "2"}, "total_iters=2: .* has done 2 iterations already"),
                               ({"total_iters": "4", "max_minutes": "0.0001"}, "max_minutes=0.0001: .* has run")]:
        with pytest.raises(OptionError, match=message):
            resume(config.out_dir, overrides)
    assert resume(config.out_dir, {"lr": str(config.lr), "seed": str(config.seed), "total_iters": "3"}).iteration == 3
    assert resume(Path(config.out_dir) / "state.pt", {"total_iters": "4"}).iteration == 4


def test_a_run_begun_with_relative_paths_resumes_from_any_folder(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    monkeypatch.chdir(tmp_path)
    train(dataclasses.replace(config, train_paths=("photos",), out_dir="run"))
    assert load_state(tmp_path / "run")["config"]["train_paths"] == [str(tmp_path / "photos")]
    monkeypatch.chdir("/")
    assert resume(tmp_path / "run", {"total_iters": "3"}).iteration == 3


def test_a_resume_over_changed_data_says_it_is_no_longer_exact(tmp_path, caplog):
    import shutil

    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    train(config)
    resume(config.out_dir, {"total_iters": "3"})
    assert "training data changed" not in caplog.text
    shutil.copy(tmp_path / "photos" / "photo0.png", tmp_path / "photos" / "another.png")
    resume(config.out_dir, {"total_iters": "4"})
    assert "the training data changed since the run began (4 training images" in caplog.text
    assert "5 training images" in caplog.text


def test_a_resume_over_added_photos_keeps_its_validation_photos_and_a_replaced_photo_is_told(tmp_path, caplog):
    """val_holdout holds out the photos whose names hash lowest: a photo added before a resume (new10.png hashes
    below photo0.png) became the validation photo, and photo0.png, validated on until then, was trained on. And a
    photo replaced by another of the same size was no change at all to the check of the data."""
    import shutil
    from tests.training.test_trainer import write_photos

    caplog.set_level("INFO", logger="vsr.training")
    config = tiny_config(tmp_path, total_iters=2, val_holdout=1)
    train(config)
    photos = tmp_path / "photos"
    shutil.copy(photos / "photo1.png", photos / "new10.png")
    resume(config.out_dir, {"total_iters": "3"})
    assert "validation photos held out: photo0.png" in caplog.text
    assert "validation photos held out: new10.png" not in caplog.text
    assert "training data changed since the run began (3 training images" in caplog.text
    caplog.clear()
    write_photos(tmp_path / "other", count=4, seed=5)
    shutil.copy(tmp_path / "other" / "photo2.png", photos / "photo2.png")  # the same size, other pixels
    resume(config.out_dir, {"total_iters": "4"})
    assert "training data changed since the run began" in caplog.text


def test_a_resume_with_another_batch_size_says_so_and_not_that_the_data_changed(tmp_path, caplog):
    """`--set batch_size=4` on resume (allowed: its batches differ) was told as "the training data changed since the
    run began", over the same pictures."""
    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    train(config)
    resume(config.out_dir, {"total_iters": "3", "batch_size": "4"})
    assert "training data changed" not in caplog.text
    assert "batch_size 2 → 4 since the run began (4 training images (8 batches per epoch) then, 4 training " \
           "images (4 batches per epoch) now)" in caplog.text


def _ctrl_c_at_step(monkeypatch, step: int, times: int = 1) -> None:
    """A real SIGINT sent to this process `times` times during the `step`-th generator step (from its EMA update), as
    a Ctrl-C in the middle of an iteration."""
    import os
    import signal

    from vsr.training import trainer

    steps = 0

    def ema_update_and_ctrl_c(*args) -> None:
        nonlocal steps
        steps += 1
        trainer_ema_update(*args)
        if steps == step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)

    trainer_ema_update = trainer.ema_update
    monkeypatch.setattr(trainer, "ema_update", ema_update_and_ctrl_c)


def test_a_ctrl_c_finishes_the_iteration_saves_it_and_the_resume_continues_exactly(tmp_path, straight_psnr_run,
                                                                                   monkeypatch):
    """A Ctrl-C lost every iteration since the last save (save_every: up to 250 in small_cpu_psnr); it now ends the
    iteration under way and saves the state a scheduled save writes, from which the run resumes bit for bit."""
    config = dataclasses.replace(straight_psnr_run, out_dir=str(tmp_path / "run"))  # (save_every=100: none before)
    _ctrl_c_at_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(config)
    assert stopped.value.stopped_at == 3
    assert load_state(config.out_dir)["iteration"] == 3
    assert (tmp_path / "run" / "models" / "iter_0000003.pth").is_file()
    assert [row["iteration"] for row in read_csv(tmp_path / "run" / "train.csv")] == [1, 2, 3]
    monkeypatch.undo()
    resume(config.out_dir)
    assert _losses(tmp_path / "run") == _losses(Path(straight_psnr_run.out_dir))
    _assert_states_equal(load_state(straight_psnr_run.out_dir), load_state(config.out_dir))


def test_a_second_ctrl_c_stops_at_once_keeping_the_last_saved_state(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, total_iters=6, save_every=2, val_holdout=0)
    _ctrl_c_at_step(monkeypatch, 3, times=2)
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(config)
    assert not hasattr(stopped.value, "stopped_at")
    assert load_state(config.out_dir)["iteration"] == 2
    assert temporaries_of(tmp_path / "run" / "state.pt") == []


def test_a_second_ctrl_c_while_the_state_is_saved_leaves_it_whole(tmp_path, monkeypatch):
    """The second Ctrl-C, come while torch.save writes, is held back until the state file is whole and renamed."""
    import os
    import signal

    config = tiny_config(tmp_path, total_iters=6, save_every=100, val_holdout=0)
    _ctrl_c_at_step(monkeypatch, 3)
    real_save = torch.save

    def save_with_a_ctrl_c(state, file, *args, **kwargs):
        if isinstance(state, dict) and "optimizer_g" in state:  # (the run's state, not a model's export)
            os.kill(os.getpid(), signal.SIGINT)
        return real_save(state, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_with_a_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    assert load_state(config.out_dir)["iteration"] == 3
    assert temporaries_of(tmp_path / "run" / "state.pt") == []
    monkeypatch.undo()
    assert resume(config.out_dir).iteration == 6  # (and the snapshot the stop cut off is written)
    assert (tmp_path / "run" / "models" / "iter_0000003.pth").is_file()


def test_a_longer_run_past_the_end_of_its_cosine_period_says_how_and_follows_a_new_period(tmp_path):
    """total_iters raised past cosine_period on resume restarted the learning rate at its full value, unsaid; the
    period could not change on resume, while the recipe says to scale it with total_iters."""
    cosine = {"scheduler": "cosine_restarts", "lr": 5e-4, "val_holdout": 0, "save_every": 100}
    config = tiny_config(tmp_path, total_iters=4, cosine_period=4, **cosine)
    train(config)
    with pytest.raises(OptionError) as refused:
        resume(config.out_dir, {"total_iters": "8"})
    assert str(refused.value) == (
        "total_iters=8: the learning rate would restart at lr=0.0005 after iteration 4, the end of a cosine period "
        "(4); to anneal it over the longer run: --set cosine_period=8, or to restart it on purpose: --set "
        "cosine_period=4")
    resume(config.out_dir, {"total_iters": "8", "cosine_period": "8"})
    straight = dataclasses.replace(config, out_dir=str(tmp_path / "straight"), total_iters=8, cosine_period=8)
    train(straight)
    rates = [row["lr"] for row in read_csv(tmp_path / "run" / "train.csv")]
    assert rates[4:] == [row["lr"] for row in read_csv(tmp_path / "straight" / "train.csv")][4:]
    assert rates[4] < rates[0] == 5e-4 and load_state(config.out_dir)["config"]["cosine_period"] == 8

    again = dataclasses.replace(config, out_dir=str(tmp_path / "again"))
    train(again)
    resume(again.out_dir, {"total_iters": "6", "cosine_period": "4"})  # (the restart asked for)
    assert [row["lr"] for row in read_csv(tmp_path / "again" / "train.csv")][4] == 5e-4
