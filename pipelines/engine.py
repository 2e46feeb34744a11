"""The inference engine: frames in, upscaled frames out, in the same order.

The engine owns everything between a decoded frame and an upscaled one: moving frames to the compute device, the
conversion to float, padding to the model's size multiple, tiling, precision, channels_last, an optional final resize
(to a factor, `outscale`, or to a size, `width`/`height`), and the conversion back to the caller's dtype and device.
Every model call goes through `Engine._run_model`, so CUDA graphs and other per-call tricks have exactly one place to
live.

Tiling bounds memory for large frames. Tiles of at most `tile` × `tile` input pixels overlap their neighbours by at
least `tile_overlap` pixels. Near an edge shared with a neighbour a tile's output is wrong (the network sees zero
padding instead of the image), and for RRDBNet the error reaches far: measured with RealESRGAN_x4plus on a photo, the
largest difference from the untiled output was 34 uint8 levels 4 pixels from a tile edge, 12 at 16, 8 at 32, 1.2 at
48, below 1 from 52 and 0.3 at 64. So across each overlap both tiles discard a wide margin and cross-fade linearly over
the middle eighth (weights summing to one): discarding removes the edge error, the cross-fade hides what is left.

On CUDA the model runs through CUDA graphs (`pipelines/graphs.py`; `cuda_graphs`), optionally compiled with
torch.compile (`compile`), with cuDNN autotuning on. Reduced precision is guarded: a batch whose fp16 or bf16 output
has NaN/inf values is recomputed in a precision with more range (bf16, then fp32), with one warning line.
Results bound for host memory are copied through pinned memory without blocking, and synchronised once per call.

Frames that do not fit in the device's memory are not an error while something smaller fits: on an out-of-memory
error the engine halves its batch size, then cuts the frames into tiles (half the frame's side, then halving), retries
the same frames, and keeps the smaller setting for the frames that follow, with one warning line per step.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re

import torch
from torch.nn import functional as F

from vsr.errors import InputError, OptionError
from vsr.hardware import available_memory, cpu_computes_bf16, in_bytes
from vsr.models.resample import resize
from vsr.models.rrdbnet_fused import fuse_rrdbnet
from vsr.models.spec import LoadedModel, ModelSpec, largest_activation_per_input_pixel
from vsr.pipelines.graphs import GraphedModel, backend_for

logger = logging.getLogger(__name__)

# Overlap between neighbouring tiles, in input pixels. With the real RealESRGAN_x4plus, tiled and untiled outputs
# differ by at most one uint8 level at this overlap (tests/pipelines/test_engine.py measures it).
DEFAULT_TILE_OVERLAP = 128
# On the CPU a forward pass holds only as many frames (or tiles) as keep its largest convolution output within this
# many bytes, whatever the batch size. Batching buys oneDNN nothing there (RRDBNet's convolutions took the same time
# per frame at batch 1 and 4), while the memory-bound work between them (concatenations, activations, residuals) got
# slower per frame as the tensors outgrew the caches, and tensors over glibc's largest mmap threshold (32 MiB) are
# fresh pages at every allocation, faulted in and zeroed by the kernel. Measured on a 2-core Xeon (AMX) in bf16, batch
# 4 → 1 frame per pass, model only: realesrgan-x4plus 1.16-1.27× at 160×90 (end to end on the sample 1.00-1.19×),
# 1.46× at 320×180; animevideov3 1.61× at 640×360 (end to end 1.45-1.48×); at 160×90 and 320×180, where its batch of 4
# stays within the limit, batch 1 was no faster.
CPU_PASS_BYTES = 32 << 20
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"
CUDA_GRAPH_CHOICES = ("auto", "on", "off")


def check_names(*, device: str | torch.device = "auto", precision: str = "auto") -> str:
    """One line for a device or precision that is no such thing (not whether this machine has it: `vsr batch` checks
    its jobs so, for a cluster's machines too). Returns the device's name as `resolve_device` reads it."""
    text = str(device).strip().lower()
    if text not in ("auto", "cpu") and not re.fullmatch(r"cuda(?::\d+)?", text):
        raise OptionError(f"unknown device {device!r}; expected one of {DEVICE_CHOICES}")
    if precision != "auto" and precision not in PRECISIONS:
        raise OptionError(f"unknown precision {precision!r}; expected one of auto, {', '.join(PRECISIONS)}")
    return text


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → the first CUDA device if there is one, else the CPU; "cpu", "cuda" and "cuda:N" are taken as asked."""
    text = check_names(device=device)
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not torch.cuda.is_available():
        raise OptionError(f"device {text!r} asked for, but CUDA is not available here (no GPU or a CPU-only torch)")
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise OptionError(f"device cuda:{index} does not exist; this machine has cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def resolve_precision(precision: str, device: torch.device, spec: ModelSpec, cpu_bf16: bool | None = None) -> str:
    """"auto" → on the CPU bf16 for networks where the CPU has bf16 instructions (`cpu_bf16`, asked of the CPU when
    None), else fp32; on CUDA fp16, or bf16 where the model's fp16 is known to overflow (RRDBNet).

    bf16 is what the GPU runs RRDBNet in too; against fp32 its frames differ by 0.87 levels of 255 on average for
    RRDBNet ×4 and 0.21 for animevideov3 (PSNR 45.0 and 54.8 dB between the two, 8 frames of the sample clip).
    `--precision fp32` keeps fp32."""
    check_names(precision=precision)
    if not (spec.supports_bfloat16 or spec.supports_half):  # the resampling baselines, which should be exact
        if precision in ("bf16", "fp16"):
            bits = {"bf16": 8, "fp16": 11}[precision]
            logger.warning("%s runs in fp32: %s's %d significant bits would make it inexact", spec.architecture,
                           precision, bits)
        return "fp32"
    if device.type != "cuda":
        if precision == "fp16":
            raise OptionError("precision fp16 needs a CUDA device (CPU fp16 convolutions are slow); use fp32 or bf16")
        if cpu_bf16 is None:
            cpu_bf16 = cpu_computes_bf16()
        if precision == "bf16" and not cpu_bf16 and spec.supports_bfloat16:
            logger.warning("this CPU has no bf16 instructions: bf16 is emulated, slower than fp32")
        if precision == "auto":
            return "bf16" if cpu_bf16 and spec.supports_bfloat16 else "fp32"
        return precision
    if precision != "auto":
        if precision == "bf16" and torch.cuda.get_device_capability(device) < (8, 0):
            logger.warning("this GPU (compute capability %d.%d) has no bf16 tensor cores: bf16 is emulated, slower "
                           "than fp16 or fp32", *torch.cuda.get_device_capability(device))
        if precision == "fp16" and not spec.supports_half:
            logger.warning(
                "%s can overflow in fp16; batches with NaN/inf are redone in bf16 or fp32", spec.architecture
            )
        return precision
    if spec.supports_half:
        return "fp16"
    if spec.supports_bfloat16 and torch.cuda.get_device_capability(device) >= (8, 0):
        return "bf16"
    return "fp32"


def engine_precision(precision: str, device: torch.device, spec: ModelSpec, strength: float = 1.0) -> str:
    """What an Engine computes in: `resolve_precision`, but fp32 where the model does not run (`strength` 0: only the
    Lanczos resize, in fp32, as summaries say)."""
    resolved = resolve_precision(precision, device, spec)
    return "fp32" if strength == 0 else resolved


def recovery_precisions(precision: str, bf16_supported: bool) -> list[str]:
    """The precisions, in order, to recompute a batch in when `precision` gave NaN/inf values.

    Overflow is a matter of range: bf16 has fp32's range at fp16's cost, so it comes first where the device has it;
    fp32 is the last resort. fp32 itself has nothing to fall back to.
    """
    if precision == "fp16" and bf16_supported:
        return ["bf16", "fp32"]
    return ["fp32"] if precision in ("fp16", "bf16") else []


def balanced_batch_size(count: int, batch_size: int) -> int:
    """The smallest batch size that still needs no more than ceil(count / batch_size) batches.

    9 tiles at batch size 4 become 3 batches of 3 rather than 4 + 4 + 1: with CUDA graphs the last batch is padded to
    the full size, so even batches waste the least work.
    """
    batches = math.ceil(count / batch_size)
    return math.ceil(count / batches)


def _half_up(value: float, step: int = 1) -> int:
    """`value` rounded to a multiple of `step` (at least one step), halves up: Python's round() rounds them to even."""
    return max(step, math.floor(value / step + 0.5) * step)


LARGEST_SIDE = 65536  # pixels: beyond any encoder's and image format's limits, and any memory


def _check_a_pixel(width: int, height: int, out_w: float, out_h: float) -> None:
    """One line where a side sized as asked rounds to no pixel: it was made the smallest the format allows (1 or 2)
    without a word."""
    if min(out_w, out_h) < 0.5:
        made = f"{round(out_w, 3):g}x{round(out_h, 3):g}"
        raise OptionError(f"a {width}x{height} frame sized as asked would be {made} pixels, less than one on a side: "
                          "ask for a larger --outscale, --width or --height")


def check_sizing(outscale: float | None, width: int | None, height: int | None) -> None:
    """One line for a bad final size: `outscale` (a factor) or `width`/`height` (see `Engine.output_size`)."""
    is_number = isinstance(outscale, (int, float)) and not isinstance(outscale, bool)
    if outscale is not None and not (is_number and 0 < outscale <= 64):
        shown = f"{outscale:g}" if is_number else repr(outscale)  # (as given: 0, not 0.0)
        raise OptionError(f"--outscale must be a factor above 0 and at most 64, not {shown}")
    for name, side in (("width", width), ("height", height)):
        if side is not None and (isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= LARGEST_SIDE):
            raise OptionError(f"--{name} must be a whole number of pixels from 1 to {LARGEST_SIDE}, not {side!r}")
    if outscale is not None and (width, height) != (None, None):
        raise OptionError("give --outscale or --width/--height, not both")


def scale_label(scale: float, width: int | None = None, height: int | None = None) -> str:
    """The tag in default output names: a factor (4 → "x4", 2.5 → "x2.5"), else the size asked for (a height of
    2160 → "2160p", a width of 3840 → "3840w", both → "3840x2160")."""
    if width is not None and height is not None:
        return f"{width}x{height}"
    if height is not None:
        return f"{height}p"
    if width is not None:
        return f"{width}w"
    return f"x{scale:g}"


def _positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def check_numbers(*, tile: int, tile_overlap: int, batch_size: int, strength: float) -> None:
    """One line for an engine number out of its range, before a model is loaded (`vsr batch` checks its jobs so)."""
    _positive_int("--tile", tile, 0)
    _positive_int("--tile-overlap", tile_overlap, 0)
    _positive_int("--batch-size", batch_size, 1)
    is_number = isinstance(strength, (int, float)) and not isinstance(strength, bool)
    if not (is_number and 0 <= strength <= 1):
        raise OptionError(f"--strength must be a number from 0 to 1, not {strength!r}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of side `tile` covering [0, length), evenly spread, neighbours overlapping ≥ `overlap`."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def overlap_split(overlap: int) -> tuple[int, int]:
    """(discarded margin, cross-fade width) in input pixels for neighbours overlapping by `overlap`."""
    ramp = overlap // 8
    return (overlap - ramp) // 2, ramp


def tile_overlap_for(tile: int | None, tile_overlap: int | None) -> int | None:
    """--tile-overlap as given; else, for a --tile too small for the default overlap (a tile holds the overlap and a
    cross-fade: 144 pixels for 128), half the tile, which leaves it room whatever the model's size multiple; else
    None (the default). A --tile given alone was refused for an overlap the user never asked for."""
    if tile_overlap is not None or tile is None or tile <= 0:  # (no tiles, or a --tile that is refused as such)
        return tile_overlap
    return None if tile >= DEFAULT_TILE_OVERLAP + overlap_split(DEFAULT_TILE_OVERLAP)[1] else tile // 2


def blend_weights(length: int, tile: int, starts: list[int], overlap: int, scale: int) -> list[torch.Tensor]:
    """Per tile, the weights of its `tile·scale` output pixels along one axis; at each output pixel they sum to 1.

    From each edge shared with a neighbour: the discarded margin weighs 0, then a linear ramp, then 1 (see
    `overlap_split`), sized by how much the two really overlap (`tile_starts` spreads tiles evenly, often more than
    `overlap` apart: sized by `overlap` alone, a small --tile-overlap left seams, 27 levels at 0 where the tiles
    overlapped by 88 pixels). Two neighbours thus cross-fade with weights summing to one; the normalisation below
    keeps the sum at one where more than two meet.
    """
    size = min(tile, length) * scale
    distance = torch.arange(size, dtype=torch.float64) + 0.5  # from the tile's first edge to each pixel centre
    weights = []
    for index, start in enumerate(starts):
        weight = torch.ones(size, dtype=torch.float64)
        before = starts[index - 1] + tile - start if index > 0 else None  # (the overlap with each neighbour)
        after = start + tile - starts[index + 1] if index + 1 < len(starts) else None
        for shared, d in ((before, distance), (after, size - distance)):
            if shared is not None:
                discard, ramp = (part * scale for part in overlap_split(max(overlap, shared)))
                weight *= ((d - discard) / ramp).clamp(0, 1) if ramp > 0 else (d > discard).double()
        weights.append(weight)
    total = torch.zeros(length * scale, dtype=torch.float64)
    for start, weight in zip(starts, weights):
        total[start * scale : start * scale + size] += weight
    return [(w / total[s * scale : s * scale + size]).float() for s, w in zip(starts, weights)]


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom and right to a multiple, mirroring the image so the network sees natural content at the border."""
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    # Reflection needs the pad to be smaller than the side; only images of a pixel or two fall back to replication.
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class Engine:
    """Upscales batches of frames with one model on one device."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int = 0,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        batch_size: int = 4,
        outscale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        channels_last: bool = True,
        cuda_graphs: str = "auto",
        compile: bool = False,
        memory_budget: int | str | None = "auto",
        strength: float = 1.0,
    ):
        """The output is the model's scale, else `outscale` times the input, else `width` and/or `height` (see
        `output_size`). `cuda_graphs`: "auto" (on for CUDA devices, off on the CPU), "on" (on the CPU too, through the
        stand-in that the tests use) or "off"; never for a model without parameters. `compile`: run the network through
        torch.compile (one compilation per input shape, 16-45 s each for RRDBNet). `memory_budget`: the bytes a forward
        pass may take, which the batch and tiles are fitted to (`_fit_in_memory`), or None; "auto": on the CPU half the
        memory available (of this process's share of the cores), on a GPU None (its out-of-memory errors are caught
        instead). `strength`: how much of the model's picture the output is, the rest the input scaled with Lanczos (1:
        all the model's)."""
        self.model = model
        self.spec = model.spec
        self.device = resolve_device(device)
        self.precision = engine_precision(precision, self.device, self.spec, strength)
        self.dtype = PRECISIONS[self.precision]
        self.tile = _positive_int("--tile", tile, 0)
        self.tile_overlap = _positive_int("--tile-overlap", tile_overlap, 0)
        self.batch_size = _positive_int("--batch-size", batch_size, 1)
        # A tile must hold both its margins and both cross-fades, or its weights would vanish in the middle.
        smallest_tile = self.tile_overlap + max(1, overlap_split(self.tile_overlap)[1])
        self.smallest_tile = smallest_tile + -smallest_tile % self.spec.size_multiple
        if self.tile and self._tile_side() < self.smallest_tile:
            raise OptionError(
                f"--tile {self.tile} is too small for --tile-overlap {self.tile_overlap}: "
                f"use a --tile of at least {self.smallest_tile} pixels or a smaller --tile-overlap"
            )
        check_sizing(outscale, width, height)
        self.outscale = None if outscale is None or outscale == self.spec.scale else float(outscale)
        self.scale = self.outscale if self.outscale is not None else self.spec.scale
        self.width, self.height = width, height
        check_numbers(tile=tile, tile_overlap=tile_overlap, batch_size=batch_size, strength=strength)
        self.strength = float(strength)
        self.label = scale_label(self.scale, width, height)  # what names the default output: "x4", "2160p", ...
        # channels_last is what cuDNN's fast convolution kernels want; on the CPU (2 threads) it was measured as fast
        # or slightly faster too (full RRDBNet, 64×64: 1.35 s vs 1.45 s), so it is on by default everywhere.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if cuda_graphs not in CUDA_GRAPH_CHOICES:
            choices = ", ".join(CUDA_GRAPH_CHOICES)
            raise OptionError(f"unknown cuda_graphs value {cuda_graphs!r}; expected one of {choices}")
        if not isinstance(compile, bool):
            raise OptionError(f"compile must be true or false, not {compile!r}")
        # Never for a module without parameters (the resizing baselines, `-m bicubic`): there is no work to save, and
        # they take their resampling matrices from a process-wide cache of bounded size, which a graph's replays do
        # not keep alive; a matrix evicted by other sizes (a folder of photos) would be freed under a live graph.
        self.cuda_graphs = any(True for _ in model.module.parameters()) and (
            cuda_graphs == "on" or (cuda_graphs == "auto" and self.device.type == "cuda"))
        self.compiled = compile
        if self.device.type == "cuda":
            # Let cuDNN time its convolution algorithms once per shape and keep the fastest; video frames repeat one
            # shape, so the timing is paid once. (This is a process-wide setting.)
            torch.backends.cudnn.benchmark = True
        module = self._prepare(self.dtype)
        if compile:
            # The default mode uses no CUDA graphs of its own (unlike "reduce-overhead" and "max-autotune", whose
            # graph trees cannot be captured inside ours), so it composes with `cuda_graphs`. dynamic=False: frame
            # sizes are few and fixed, and kernels specialised to them are the fastest.
            module = torch.compile(module, dynamic=False)
        self._module = module
        # The graph runner, public so that callers (`vsr bench`, tests) can read its capture and replay counts.
        self.graphed = (
            GraphedModel(module, backend_for(self.device), batch_size=self.batch_size, memory_format=self.memory_format)
            if self.cuda_graphs
            else None
        )
        # Emulated bf16 (before Ampere) is correct but slow: such GPUs recompute in fp32 directly.
        bf16_supported = (
            self.device.type == "cuda"
            and self.spec.supports_bfloat16
            and torch.cuda.is_bf16_supported(including_emulation=False)
        )
        self._recovery = recovery_precisions(self.precision, bf16_supported)
        self._recovery_modules: dict[str, torch.nn.Module] = {}  # built on the first batch that overflows
        # On the CPU, running out of memory is no exception to catch but the kernel's OOM killer: the batch and tiles
        # are fitted beforehand to what a forward pass is predicted to need. The largest convolution output, its
        # input and one more such tensor (a residual, a dense block's concatenation) in the model's precision; for
        # realesrgan-x4plus on the CPU that predicts 12.3 kB per input pixel in fp32 and 6.1 in bf16, where the peak
        # resident memory grew by 10.0 and 5.5 (one 320×180 frame).
        # What is left of the memory (all of it, not this process's share): frames predicted to need more even in the
        # smallest tiles are refused in one line, where they ran into the OOM killer or a traceback from torch's
        # allocator (a 16000×9000 video with --outscale 1: 27.6 GB asked for at once).
        self._memory_left = None
        probe = memory_budget is not None  # (None: no probe pass, as for the tests' stand-ins of a GPU)
        if memory_budget == "auto":
            available = available_memory() if self.device.type == "cpu" else None
            # Worker processes (`--devices cpu,cpu`, `vsr batch --workers`) each get their share of the cores, and so
            # of the memory: a process's share follows its threads.
            share = min(1.0, torch.get_num_threads() / (os.cpu_count() or 1))
            memory_budget = None if available is None else int(available * share) // 2
            self._memory_left = available
        self.memory_budget = memory_budget
        largest = largest_activation_per_input_pixel(self.model.module, self.spec) if probe else 0
        if memory_budget is not None:
            self._bytes_per_pixel = 3 * largest * self.dtype.itemsize
        # Bytes of the largest convolution output per input pixel, where passes are sized by it (`_frames_per_pass`):
        # on the CPU, without graphs (whose batches are padded to the full batch size anyway).
        self._pass_bytes_per_pixel = (largest * self.dtype.itemsize
                                      if self.device.type == "cpu" and self.graphed is None else 0)
        self._fitted: set[tuple[int, int]] = set()  # the (padded) frame sizes fitted so far

    def __repr__(self) -> str:
        return (
            f"Engine({self.model.name or self.spec.architecture}, device={self.device}, precision={self.precision}, "
            f"tile={self.tile}, batch_size={self.batch_size}, scale={self.scale}, cuda_graphs={self.cuda_graphs}, "
            f"compile={self.compiled})"
        )

    def _prepare(self, dtype: torch.dtype) -> torch.nn.Module:
        # A private copy: the caller's module stays on its device and in fp32 (other engines may share it).
        # On the CPU in bf16, RRDBNet runs with its convolutions fused with the LeakyReLUs and residual adds that follow
        # them (models/rrdbnet_fused.py, a copy too): 1.16× at 160×90, 1.33× at 320×180, model only; in fp32, where
        # the convolutions take nearly all the time, it gained nothing. Not where torch.compile fuses by itself, and
        # not on a GPU: its path is captured in CUDA graphs and was not measured with the fused form.
        fuse = self.device.type == "cpu" and dtype == torch.bfloat16 and not self.compiled
        fused = fuse_rrdbnet(self.model.module) if fuse else None
        module = (fused if fused is not None else copy.deepcopy(self.model.module)).eval().requires_grad_(False)
        return module.to(device=self.device, dtype=dtype, memory_format=self.memory_format)

    def output_size(self, height: int, width: int, *, pixel_aspect: float = 1, turned: bool = False,
                    steps: tuple[int, int] = (1, 1)) -> tuple[int, int]:
        """The (height, width) that frames of `height` × `width` come out at.

        `width` and `height` asked of the engine are the sides a viewer sees: of a frame shown turned (a video's
        rotation of 90° or 270°: `turned`) and with square pixels (a video's sample aspect ratio, `pixel_aspect`,
        is applied, and the output's pixels are square). Given one, the other keeps the shown aspect ratio; given
        both, the output is the largest that fits inside them with that ratio (nothing is stretched). A side
        computed (from `outscale`, or the other side) is rounded to a multiple of its step in `steps`, (rows,
        columns) of the frame as stored: 2 where video chroma is subsampled that way (4:2:0 both, 4:2:2 columns);
        so is an odd side that the model's own scale makes (×3 or ×1 of an odd side); sides asked for are exact.
        """
        row_step, column_step = steps
        if self.width is None and self.height is None:
            scale = self.spec.scale if self.outscale is None else self.outscale
            _check_a_pixel(width, height, width * scale, height * scale)
            return _half_up(height * scale, row_step), _half_up(width * scale, column_step)
        shown_w, shown_h = width * float(pixel_aspect), height
        if turned:
            shown_w, shown_h = shown_h, shown_w
            row_step, column_step = column_step, row_step
        asked_sides = ((self.width, shown_w), (self.height, shown_h))
        factor = min(asked / shown for asked, shown in asked_sides if asked is not None)

        def sized(asked: int | None, shown: float, step: int) -> int:
            # The side that sets the factor is as asked; the other one, at most what was asked, is rounded.
            return asked if asked is not None and asked / shown == factor else _half_up(shown * factor, step)

        _check_a_pixel(width, height, shown_w * factor, shown_h * factor)
        out_w, out_h = sized(self.width, shown_w, column_step), sized(self.height, shown_h, row_step)
        if max(out_w, out_h) > LARGEST_SIDE:
            raise OptionError(f"a {width}x{height} frame sized as asked would be {out_w}x{out_h} (shown), over "
                              f"{LARGEST_SIDE} pixels on a side: give the other side too, as a box to fit inside")
        return (out_w, out_h) if turned else (out_h, out_w)

    def _run_model(self, batch: torch.Tensor, batch_size: int, unit: str = "frame") -> torch.Tensor:
        """The one place the network runs: float32 N×3×h×w on `self.device` (padded) → float32 output.

        With CUDA graphs, batches are computed at `batch_size` (smaller ones padded up to it). `unit` names what the
        batch holds ("frame" or "tile") in the warning about recomputed batches.
        """
        x = batch.to(self.dtype).contiguous(memory_format=self.memory_format)
        out = self.graphed(x, batch_size) if self.graphed is not None else self._module(x)
        if self._recovery and not torch.isfinite(out).all():
            out = self._recompute(batch, unit)
        return out.float()

    def _recompute(self, batch: torch.Tensor, unit: str) -> torch.Tensor:
        """ESRGAN-family models can overflow fp16 on some inputs (black or NaN frames): redo the batch in the
        precisions of `recovery_precisions` until the output is finite. Eagerly: it is rare, not worth a graph."""
        tried = []
        for precision in self._recovery:
            tried.append(precision)
            if precision not in self._recovery_modules:
                self._recovery_modules[precision] = self._prepare(PRECISIONS[precision])
            x = batch.to(PRECISIONS[precision]).contiguous(memory_format=self.memory_format)
            out = self._recovery_modules[precision](x)
            finite = bool(torch.isfinite(out).all())
            if finite:
                break
        logger.warning(
            "%s output of %d %s(s) had NaN/inf values; recomputed in %s%s",
            self.precision, batch.shape[0], unit, " then ".join(tried), "" if finite else ", still not finite",
        )
        return out

    @property
    def sized(self) -> bool:
        """Whether the output has a size asked for (`width`/`height`) rather than a factor."""
        return self.width is not None or self.height is not None

    @torch.inference_mode()
    def upscale(self, frames: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """N×3×H×W, uint8 in [0, 255] or float in [0, 1], on any device → upscaled; same dtype, device, order.
        `size`: the output's (height, width), where the caller computed it (a video's `output_size`)."""
        if frames.ndim != 4 or frames.shape[1] != self.spec.in_channels:
            raise InputError(f"expected frames shaped N×{self.spec.in_channels}×H×W, got {tuple(frames.shape)}")
        if frames.dtype != torch.uint8 and not frames.is_floating_point():
            raise InputError(f"expected uint8 or float frames, got {frames.dtype}")
        count, _, height, width = frames.shape
        out_h, out_w = size or self.output_size(height, width)
        # Results bound for host memory go to pinned memory, so the device-to-host copies need not block: the CPU goes
        # on to the next chunk while the last one is copied. One synchronisation at the end makes `out` safe to read.
        to_host = frames.device.type == "cpu" and self.device.type == "cuda"
        out = None  # made at the first chunk that does not hold all the frames
        padded_h, padded_w = (-height % self.spec.size_multiple + height), (-width % self.spec.size_multiple + width)
        if self.memory_budget is not None and (padded_h, padded_w) not in self._fitted:
            self._fit_in_memory(padded_h, padded_w)
        start = 0
        while start < count:
            tiled = self.tile > 0 and max(padded_h, padded_w) > self._tile_side()
            step = 1 if tiled else self._frames_per_pass(padded_h, padded_w)  # tiles are batched when tiling
            chunk = frames[start : start + step]
            try:
                x = self._to_float(chunk)
                if self.strength == 0:  # the source alone, scaled (no need of the model)
                    y = resize(x, (out_h, out_w), kernel="lanczos", antialias=True)
                else:
                    y = self._upscale_tiled(x, chunk.device) if tiled else self._upscale_whole(x)
                if y.shape[-2:] != (out_h, out_w):
                    # Real-ESRGAN resizes with Lanczos too; antialiasing matters below the model's scale.
                    y = resize(y, (out_h, out_w), kernel="lanczos", antialias=True)
                if 0 < self.strength < 1:  # GAN models' painted look, toned down with the source's own detail
                    plain = resize(x, (out_h, out_w), kernel="lanczos", antialias=True).to(y.device)
                    y = torch.lerp(plain.clamp_(0, 1), y.float().clamp(0, 1), self.strength)
                result = self._from_float(y, frames.dtype)
                if start == 0 and step >= count and self._own(result, frames):
                    # One chunk holds every frame (an image, a batch that fits): its result is the output. Copied
                    # into another buffer, a float 8K image ×4 took 6.4 GB more.
                    out = result.contiguous()
                else:
                    if out is None:
                        out = torch.empty((count, frames.shape[1], out_h, out_w), dtype=frames.dtype,
                                          device=frames.device, pin_memory=to_host)
                    out[start : start + step].copy_(result, non_blocking=to_host)
            except torch.cuda.OutOfMemoryError:
                fits = False  # shrink outside this block: the exception's traceback still holds the chunk's tensors
            else:
                fits = True
                start += step
            if not fits:
                x = y = result = None
                self._shrink_after_out_of_memory(padded_h, padded_w, tiled)
        if to_host:
            torch.cuda.current_stream(self.device).synchronize()
        if out is None:  # no frames
            out = torch.empty((0, frames.shape[1], out_h, out_w), dtype=frames.dtype, device=frames.device)
        return out

    def _own(self, result: torch.Tensor, frames: torch.Tensor) -> bool:
        """Whether `result`, upscaled from `frames`, may be handed out as it is: a tensor of its own where the frames
        are, not a CUDA graph's output buffer (the next batch writes into it), nor the frames themselves (where the
        output is the input's size and no model ran)."""
        return (result.device == frames.device and self.graphed is None
                and result.untyped_storage().data_ptr() != frames.untyped_storage().data_ptr())

    def _frames_per_pass(self, height: int, width: int) -> int:
        """How many frames (or tiles) of (padded) height × width one forward pass holds: the batch size, or on the
        CPU fewer, down to one, where their largest convolution output would exceed CPU_PASS_BYTES."""
        per_item = self._pass_bytes_per_pixel * height * width
        if per_item <= 0:
            return self.batch_size
        return max(1, min(self.batch_size, int(CPU_PASS_BYTES // per_item)))

    def _pass(self, height: int, width: int) -> tuple[bool, tuple[int, int], int]:
        """How frames of (padded) height × width run at the current setting: (tiled, the size of what one forward
        pass takes, a frame or a tile, how many of those it takes)."""
        tiled = self.tile > 0 and max(height, width) > self._tile_side()
        size = (min(self._tile_side(), height), min(self._tile_side(), width)) if tiled else (height, width)
        return tiled, size, self._frames_per_pass(*size)

    def _setting(self, height: int, width: int) -> str:
        """The batch and tiles frames of (padded) height × width run at, in words: "batch 4", "batch 1, tiles of
        480"."""
        tiled, _, per_pass = self._pass(height, width)
        return f"batch {per_pass}" + (f", tiles of {self._tile_side()}" if tiled else "")

    def _shrink(self, height: int, width: int) -> bool:
        """The next smaller setting for frames of (padded) height × width: half the batch, else tiles of half the
        frame's side, else half the tile. False where even the smallest tile runs alone already."""
        _, _, per_pass = self._pass(height, width)
        if per_pass > 1:
            self.batch_size = per_pass // 2
            return True
        tiled = self.tile > 0 and max(height, width) > self._tile_side()
        side = self._tile_side() if tiled else max(height, width)
        tile = side // 2 - side // 2 % self.spec.size_multiple
        if tile < self.smallest_tile:
            return False
        self.tile = tile
        return True

    def _shrink_after_out_of_memory(self, height: int, width: int, tiled: bool) -> None:
        """The next smaller setting after frames of (padded) height × width did not fit; InputError when even the
        smallest tile at batch 1 did not fit."""
        before = self._setting(height, width)
        if self.graphed is not None:
            self.graphed.clear()  # each captured graph holds a private memory pool sized for its shape
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if not self._shrink(height, width):
            side = self._tile_side() if tiled else max(height, width)
            raise InputError(
                f"{width}×{height} frames do not fit in the memory of {self.device}, even in tiles of {side} "
                f"pixels one at a time; free the device, use --device cpu, or a smaller --tile-overlap"
            )
        logger.warning("%d×%d frames did not fit in the memory of %s at %s; going on at %s",
                       width, height, self.device, before, self._setting(height, width))

    def _memory_need(self, height: int, width: int) -> int:
        """Bytes a forward pass over frames of (padded) height × width is predicted to take at the current setting,
        with the whole frames' float output (tiles are assembled into it)."""
        tiled, size, per_pass = self._pass(height, width)
        return int(self._bytes_per_pixel * size[0] * size[1] * per_pass) + self._output_bytes(height, width) * (
            1 if tiled else per_pass)

    def _output_bytes(self, height: int, width: int) -> int:
        """Bytes of one frame of (padded) height × width as the model's float output, which no tile makes smaller."""
        return height * width * self.spec.scale**2 * self.spec.out_channels * 4

    def _what_helps(self, height: int, width: int, memory: int) -> str:
        """What makes frames of (padded) height × width need less than `memory` bytes at the smallest setting."""
        if self._output_bytes(height, width) > memory:
            return (f"the model's ×{self.spec.scale} output alone takes {in_bytes(self._output_bytes(height, width))}"
                    f"; a model of a smaller scale takes less")
        return "a smaller --tile-overlap allows smaller tiles"

    def _fit_in_memory(self, height: int, width: int) -> None:
        """Shrink the setting as after an out-of-memory error (`_shrink`) until frames of (padded) height × width are
        predicted to fit `memory_budget`; one warning line when the setting changed."""
        self._fitted.add((height, width))
        need, before = self._memory_need(height, width), self._setting(height, width)
        while self._memory_need(height, width) > self.memory_budget and self._shrink(height, width):
            pass
        after = self._memory_need(height, width)
        if self._memory_left is not None and after > self._memory_left:
            raise InputError(f"{width}×{height} frames would need about {in_bytes(after)} of memory in "
                             f"{self.precision} even at {self._setting(height, width)}, more than the "
                             f"{in_bytes(self._memory_left)} available here; "
                             f"{self._what_helps(height, width, self._memory_left)}")
        if self._setting(height, width) == before and after <= self.memory_budget:
            return
        if self.graphed is not None:
            self.graphed.clear()
        # (where even the smallest tile is over the budget, that is said too: it ran over it without a word)
        beyond = "" if after <= self.memory_budget else (
            f", which still needs about {in_bytes(after)}: {self._what_helps(height, width, self.memory_budget)}")
        logger.warning("%d×%d frames would need about %s of memory at %s in %s, more than the %s this run allows "
                       "itself; going on at %s%s", width, height, in_bytes(need), before, self.precision,
                       in_bytes(self.memory_budget), self._setting(height, width), beyond)

    def _to_float(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(self.device, non_blocking=True)
        return x.float() / 255 if x.dtype == torch.uint8 else x.float()

    @staticmethod
    def _from_float(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if dtype == torch.uint8:
            return (y * 255).round_().clamp_(0, 255).to(torch.uint8)
        return y.clamp_(0, 1).to(dtype)

    def _upscale_whole(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        y = self._run_model(_pad_to_multiple(x, self.spec.size_multiple), self.batch_size)
        return y[..., : height * self.spec.scale, : width * self.spec.scale]

    def _tile_side(self) -> int:
        multiple = self.spec.size_multiple
        return max(multiple, self.tile - self.tile % multiple)

    def _upscale_tiled(self, x: torch.Tensor, out_device: torch.device) -> torch.Tensor:
        """One frame (1×3×H×W float on the compute device), tile by tile, assembled on `out_device`."""
        height, width = x.shape[-2:]
        padded = _pad_to_multiple(x, self.spec.size_multiple)
        length_h, length_w = padded.shape[-2:]
        tile, overlap, scale = self._tile_side(), self.tile_overlap, self.spec.scale
        tile_h, tile_w = min(tile, length_h), min(tile, length_w)
        starts_h = tile_starts(length_h, tile, overlap)
        starts_w = tile_starts(length_w, tile, overlap)
        weights_h = [w.to(out_device) for w in blend_weights(length_h, tile, starts_h, overlap, scale)]
        weights_w = [w.to(out_device) for w in blend_weights(length_w, tile, starts_w, overlap, scale)]
        positions = [(i, j) for i in range(len(starts_h)) for j in range(len(starts_w))]

        tiles_per_batch = balanced_batch_size(len(positions), self._frames_per_pass(tile_h, tile_w))

        out = torch.zeros((1, x.shape[1], length_h * scale, length_w * scale), device=out_device)
        for first in range(0, len(positions), tiles_per_batch):
            batch_positions = positions[first : first + tiles_per_batch]
            tiles = torch.cat(
                [padded[..., starts_h[i] : starts_h[i] + tile_h, starts_w[j] : starts_w[j] + tile_w]
                 for i, j in batch_positions]
            )
            results = self._run_model(tiles, tiles_per_batch, "tile").to(out_device)
            for (i, j), result in zip(batch_positions, results):
                top, left = starts_h[i] * scale, starts_w[j] * scale
                weight = weights_h[i][:, None] * weights_w[j][None, :]
                out[0, :, top : top + tile_h * scale, left : left + tile_w * scale] += result * weight
        return out[..., : height * scale, : width * scale]


def upscale_with_alpha(engine: Engine, frames: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """N×3×H×W RGB or N×4×H×W RGBA (uint8, or float in [0, 1]) → upscaled, as `Engine.upscale` (and `size`).

    Alpha goes through the model too, as a gray picture of three equal channels (Real-ESRGAN's default for images):
    bicubic alpha would be cheaper, but its soft edges would not line up with the model's sharpened color edges,
    leaving halos. That costs a second frame of compute per frame, except for a frame whose alpha is fully opaque:
    its alpha stays exactly opaque (the model would make 253 of some of its 255s), decided frame by frame so that the
    frames a batch holds (--batch-size, --dedup, segments) do not change a frame's alpha.
    """
    if frames.shape[1] != 4:
        return engine.upscale(frames, size)
    rgb, alpha = frames[:, :3], frames[:, 3:]
    opaque = 255 if frames.dtype == torch.uint8 else 1.0
    see_through = ~(alpha == opaque).flatten(1).all(1)
    if bool((alpha == 0).any()):
        rgb = bled(rgb, alpha)
    count = len(frames)
    out = engine.upscale(torch.cat([rgb, alpha[see_through].expand(-1, 3, -1, -1)]), size)
    upscaled_alpha = torch.full_like(out[:count, :1], opaque)
    if bool(see_through.any()):
        made = out[count:].float().mean(1, keepdim=True)
        if frames.dtype == torch.uint8:
            made = made.round()
        upscaled_alpha[see_through.to(out.device)] = made.to(out.dtype)
    return torch.cat([out[:count], upscaled_alpha], 1)


def bled(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """`rgb` whose fully transparent pixels take the colors of the visible ones around them (pull-push: the visible
    colors averaged over ever coarser grids, then each hidden pixel filled from the finest grid that has one).

    A hidden pixel's color is whatever its encoder left there (often black or a stray color), and the model and the
    resize spread it into the visible pixels beside it: a sprite's edge took a fringe of it (red up to 131 of 255 at
    an edge pixel, 64 inside the opaque area, where the hidden color was red). Visible pixels are left as they are."""
    visible = (alpha > 0).to(torch.float32)
    color = rgb.to(torch.float32) * visible
    grids = []
    while True:
        grids.append((color, visible))
        if max(color.shape[-2:]) == 1:
            break
        color = F.avg_pool2d(color, 2, ceil_mode=True)
        visible = F.avg_pool2d(visible, 2, ceil_mode=True)
    filled = color / visible.clamp_min(1e-12)  # (a frame with nothing visible stays black: nothing shows)
    for color, visible in reversed(grids[:-1]):
        coarser = F.interpolate(filled, size=color.shape[-2:], mode="nearest")
        filled = torch.where(visible > 0, color / visible.clamp_min(1e-12), coarser)
    if rgb.dtype == torch.uint8:
        filled = filled.round().to(torch.uint8)
    return torch.where(alpha == 0, filled.to(rgb.dtype), rgb)
