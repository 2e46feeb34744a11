"""What a training run reports: CSV files (always), TensorBoard (when installed) and a PNG of the curves.

    OUT_DIR/train.csv   iteration, epoch, lr, the losses of that iteration, it/s (of the training iterations since
                        the row before, validations left out), seconds since the run started
    OUT_DIR/val.csv     iteration, PSNR and SSIM (Y and RGB) of the EMA model and of bicubic on the held-out images,
                        seconds since the run started
    OUT_DIR/tb/         TensorBoard event files (`tensorboard --logdir OUT_DIR/tb`)
    OUT_DIR/curves.png  with --plot (matplotlib)

On resume, rows past the resumed iteration (written after the last checkpoint, before the run stopped) are
dropped, so the files read as if the run had never stopped.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vsr.errors import OptionError, OutputError
from vsr.fsutil import write_bytes_atomic

log = logging.getLogger(__name__)

TRAIN_CSV = "train.csv"
VAL_CSV = "val.csv"
PLOT_FILE = "curves.png"
METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
VAL_FIELDS = ("iteration", *METRICS, *(f"bicubic_{name}" for name in METRICS), "elapsed_s")


def train_fields(stage: str) -> tuple[str, ...]:
    losses = ("l_pix",) if stage == "psnr" else ("l_pix", "l_percep", "l_g_gan", "l_g_total", "l_d", "d_real", "d_fake")
    return ("iteration", "epoch", "lr", *losses, "it_per_s", "elapsed_s")


def counted(number: int, thing: str, things: str | None = None) -> str:
    """`number` and its noun in agreement, "1 file", "2 files" (`things`: a plural other than THING + s); the log
    said "1 files that are no image or video"."""
    return f"{number} {thing if number == 1 else things or thing + 's'}"


class TrainingClock:
    """Seconds spent on training iterations: `now` (time.perf_counter) less the time spent `paused`, as each validation
    is. The rate and ETA of the log lines and train.csv's it_per_s are read from it, and the progress bar is moved past
    each pause: a validation on a CPU takes a minute or more, and counted in, the rate after it read 0.00 it/s, its
    ETA an hour."""

    def __init__(self, now: Callable[[], float] = time.perf_counter):
        self._now = now
        self._paused_seconds = 0.0  # all pauses' so far
        self.last_pause = 0.0  # the last pause's seconds

    def __call__(self) -> float:
        return self._now() - self._paused_seconds

    @contextmanager
    def paused(self) -> Iterator[None]:
        started = self._now()
        try:
            yield
        finally:
            self.last_pause = self._now() - started
            self._paused_seconds += self.last_pause


class RunLog:
    """Appends rows to the CSV files and mirrors them to TensorBoard. Only rank 0 of a DDP run makes one."""

    def __init__(self, out_dir: Path, stage: str, resumed_at: int | None = None, tensorboard: bool = True):
        self.out_dir = out_dir
        self.files = {TRAIN_CSV: train_fields(stage), VAL_CSV: VAL_FIELDS}
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for name, fields in self.files.items():
                rows = read_csv(out_dir / name) if resumed_at is not None and (out_dir / name).is_file() else []
                kept = [row for row in rows if row["iteration"] <= resumed_at] if resumed_at is not None else []
                text = io.StringIO()
                writer = csv.DictWriter(text, fieldnames=fields)
                writer.writeheader()
                writer.writerows({key: _format(row.get(key)) for key in fields} for row in kept)
                # (atomically: a resume that cannot write it keeps the log it had)
                write_bytes_atomic(out_dir / name, text.getvalue().encode())
            self.writer = _tensorboard_writer(out_dir / "tb", purge_step=resumed_at) if tensorboard else None
        except OSError as error:
            raise OutputError(f"{out_dir}: cannot write the run's logs ({error.strerror or error})") from None

    def train(self, row: dict) -> None:
        self._append(TRAIN_CSV, row, "train")

    def validation(self, row: dict) -> None:
        self._append(VAL_CSV, row, "val")

    def _append(self, name: str, row: dict, group: str) -> None:
        fields = self.files[name]
        try:
            with open(self.out_dir / name, "a", newline="") as file:
                csv.DictWriter(file, fieldnames=fields).writerow({key: _format(row.get(key)) for key in fields})
        except OSError as error:  # (a full disk: the last state.pt resumes the run)
            raise OutputError(f"{self.out_dir / name}: cannot write ({error.strerror or error})") from None
        if self.writer is not None:
            try:
                for key, value in row.items():
                    if key != "iteration" and value is not None:
                        self.writer.add_scalar(f"{group}/{key}", value, row["iteration"])
                self.writer.flush()
            except OSError as error:
                raise OutputError(f"{self.out_dir / 'tb'}: cannot write the TensorBoard log "
                                  f"({error.strerror or error})") from None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            self.close()
        except OSError:  # (TensorBoard's last flush on a full disk: where the run failed, its own error is said)
            if error is None:
                raise

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            finally:
                if getattr(threading.excepthook, "quiets_tensorboard", False):  # (the process's hook, as it was)
                    threading.excepthook = threading.excepthook.default


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the exact float: resumed runs compare equal to uninterrupted ones
    return str(value)


def _tensorboard_writer(folder: Path, purge_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional (pip install 'vsr[train]')
        log.info("TensorBoard is not installed: logging to CSV only")
        return None
    _quiet_tensorboard_thread()
    return SummaryWriter(str(folder), purge_step=None if purge_step is None else purge_step + 1)


def _quiet_tensorboard_thread() -> None:
    """TensorBoard's writer thread prints the error of a write it made (a full disk) as a traceback, into the line
    that says it; the next flush() raises it again in the training loop, which says it in one line."""
    if getattr(threading.excepthook, "quiets_tensorboard", False):
        return
    default = threading.excepthook

    def hook(args) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            default(args)

    hook.quiets_tensorboard, hook.default = True, default
    threading.excepthook = hook


def read_csv(path: str | Path) -> list[dict[str, float]]:
    """The rows of a run's CSV file as numbers (iteration and epoch as ints; empty cells left out)."""
    rows = []
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            parsed = {key: float(value) for key, value in row.items() if value not in ("", None)}
            for key in ("iteration", "epoch"):
                if key in parsed:
                    parsed[key] = int(parsed[key])
            rows.append(parsed)
    return rows


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise OptionError("--plot needs matplotlib: pip install 'vsr[train]' (or pip install matplotlib)") from error


def plot_curves(out_dir: str | Path, path: str | Path | None = None) -> Path:
    """Draw the training losses and the validation PSNR/SSIM (model vs bicubic) of a run into a PNG."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    out_dir = Path(out_dir)
    path = Path(path) if path is not None else out_dir / PLOT_FILE
    train = read_csv(out_dir / TRAIN_CSV) if (out_dir / TRAIN_CSV).is_file() else []
    val = read_csv(out_dir / VAL_CSV) if (out_dir / VAL_CSV).is_file() else []
    figure, (losses, psnr_axis, ssim_axis) = plt.subplots(1, 3, figsize=(16, 4.5))
    iterations = [row["iteration"] for row in train]
    for key in [k for k in (train[0] if train else {}) if k.startswith(("l_", "d_"))]:
        values = [row.get(key, math.nan) for row in train]
        if key.startswith("l_") and all(v > 0 for v in values if not math.isnan(v)):
            line, = losses.plot(iterations, values, alpha=0.25)
            losses.plot(iterations, _smooth(values), color=line.get_color(), label=key)
    losses.set_yscale("log")
    losses.set(title="training losses (faint: per logged iteration)", xlabel="iteration")
    for axis, metric, unit in ((psnr_axis, "psnr", "dB"), (ssim_axis, "ssim", "")):
        steps = [row["iteration"] for row in val]
        for channel, style in (("y", "-"), ("rgb", ":")):
            axis.plot(steps, [row.get(f"{metric}_{channel}", math.nan) for row in val], style, color="C0",
                      marker="o", markersize=3, label=f"model ({channel.upper()})")
            axis.plot(steps, [row.get(f"bicubic_{metric}_{channel}", math.nan) for row in val], style,
                      color="C3", label=f"bicubic ({channel.upper()})")
        axis.set(title=f"validation {metric.upper()} {unit}".strip(), xlabel="iteration")
    for axis in (losses, psnr_axis, ssim_axis):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    plt.close(figure)
    write_bytes_atomic(path, png.getvalue())  # (a run stopped while drawing left a cut-short curves.png)
    return path


def _smooth(values: list[float], window: int = 10) -> list[float]:
    """Trailing moving average (the curve's trend through per-iteration noise)."""
    smoothed, total, queue = [], 0.0, []
    for value in values:
        queue.append(value)
        total += value
        if len(queue) > window:
            total -= queue.pop(0)
        smoothed.append(total / len(queue))
    return smoothed
