"""Running a network at fixed shapes from static buffers: CUDA graphs, behind a seam the CPU tests exercise.

A CUDA graph records every kernel of one forward pass once and replays them all with one launch, which removes the
Python and launch overhead of the hundreds of small kernels an ESRGAN-family network runs per batch. A graph is
frozen: it always reads the same input memory, writes the same output memory and works at the shapes it was
captured with. `GraphedModel` turns that into an ordinary `module(x)` call:

- one graph per input shape (batch, channels, height, width, dtype), captured on first use, kept in a small LRU
  cache;
- a batch smaller than the captured one (the last batch of a video, the last tiles of a frame) is padded up to it
  so it replays the same graph, and its output sliced back;
- the input is copied into the graph's static input buffer, the graph replayed, and its static output cloned.

How a graph is captured and replayed is one small backend object. `CudaGraphBackend` records a real CUDA graph;
`RecordingBackend`, for the CPU, records a closure that runs the module on the static input and writes into the
static output. Everything else (keys, buffers, padding, slicing, clones, eviction) is the same code on both, so the
CPU tests exercise exactly what the GPU runs.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Each captured graph keeps its own private memory pool (its activations and its static output) for as long as it
# lives, so an unbounded cache would grow GPU memory with every new frame size. Videos use one or two shapes (whole
# frames; with tiling, also the edge tiles of other sizes), so a few graphs are plenty; the least recently used goes.
DEFAULT_MAX_GRAPHS = 8
# PyTorch's CUDA graph examples warm up with 3 eager runs: they let cuDNN autotune (torch.backends.cudnn.benchmark)
# and the caching allocator settle before capture, when neither may allocate nor synchronise.
WARMUP_RUNS = 3

ShapeKey = tuple[int, int, int, int, torch.dtype]  # (batch, channels, height, width, dtype)


class CaptureBackend(Protocol):
    def capture(self, run: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
        """Record `run` (the module applied to a static input); return (replay, the static output replay writes)."""


class CudaGraphBackend:
    """Records `run` as a CUDA graph on `device`."""

    def __init__(self, device: torch.device):
        self.device = device

    def capture(self, run: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
        with torch.cuda.device(self.device):
            # Warm-up and capture run on one side stream (as in PyTorch's examples), away from the default stream
            # that the capture must not touch; the same stream for both keeps per-stream library handles (cuBLAS,
            # hipBLASLt) created outside the capture.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_RUNS):
                    run()
            torch.cuda.current_stream().wait_stream(stream)
            # The graph allocates from a private pool, and memory cannot be returned to the driver during a capture:
            # hand back what the warm-up left cached, so a capture that fits does not run out of memory.
            torch.cuda.empty_cache()
            graph = torch.cuda.CUDAGraph()
            try:
                # "thread_local": the decoder and encoder threads keep using CUDA (copies, pinned memory) while the
                # engine thread captures; the default "global" mode would fail the capture on their calls.
                with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                    output = run()
            except RuntimeError as error:
                # Ending a capture that ran out of memory can fail in turn, and instantiating the graph says it in
                # words: report the cause, which the engine answers with smaller batches or tiles.
                if not isinstance(error, torch.cuda.OutOfMemoryError) and _out_of_memory_in(error):
                    message = f"out of memory while capturing a CUDA graph ({error})"
                    raise torch.cuda.OutOfMemoryError(message) from error
                raise
        return graph.replay, output


class RecordingBackend:
    """The CPU stand-in for a CUDA graph: "capture" runs the module once to allocate the static output, and each
    replay runs it again on the static input and writes the result into that same output."""

    def capture(self, run: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
        output = run()

        def replay() -> None:
            output.copy_(run())

        return replay, output


def _out_of_memory_in(error: BaseException) -> bool:
    """Whether `error`, or an exception that led to it, is out of memory: torch's OutOfMemoryError, or what the
    driver, cuBLAS or cuDNN say when instantiating a graph or making a workspace fails ("CUDA error: out of memory",
    CUBLAS_STATUS_ALLOC_FAILED), which torch raises as plain errors."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, torch.cuda.OutOfMemoryError) or any(
                sign in str(seen) for sign in ("out of memory", "ALLOC_FAILED")):
            return True
        seen = seen.__context__
    return False


def backend_for(device: torch.device) -> CaptureBackend:
    return CudaGraphBackend(device) if device.type == "cuda" else RecordingBackend()


@dataclass
class _Graph:
    static_input: torch.Tensor
    static_output: torch.Tensor
    replay: Callable[[], None]


class GraphedModel:
    """`module(x)` for float N×C×H×W batches, run through captured graphs at fixed batch sizes.

    `captures` and `replays` count what happened, so callers (and tests) can see one capture per shape and replays
    after it.
    """

    def __init__(
        self,
        module: nn.Module,
        backend: CaptureBackend,
        *,
        batch_size: int,
        memory_format: torch.memory_format = torch.contiguous_format,
        max_graphs: int = DEFAULT_MAX_GRAPHS,
    ):
        if batch_size < 1 or max_graphs < 1:
            raise ValueError(f"batch_size and max_graphs must be >= 1, not {batch_size} and {max_graphs}")
        self.module = module
        self.backend = backend
        self.batch_size = batch_size
        self.memory_format = memory_format
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[ShapeKey, _Graph] = OrderedDict()
        self.captures = 0
        self.replays = 0

    @property
    def shapes(self) -> list[ShapeKey]:
        """The shapes with a graph, least recently used first."""
        return list(self._graphs)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """The module's output for `x`, computed at batch size `batch_size` (default: the one given at construction).

        A smaller batch is padded with copies of its last frame; a larger one runs in several replays.
        """
        batch_size = batch_size or self.batch_size
        if x.shape[0] > batch_size:
            return torch.cat([self(part, batch_size) for part in x.split(batch_size)])
        count = x.shape[0]
        key: ShapeKey = (batch_size, *x.shape[1:], x.dtype)
        graph = self._graphs.get(key)
        if graph is None:
            static_input = torch.empty(
                (batch_size, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=self.memory_format
            )
            self._fill(static_input, x)  # warm-up runs see real frames, not uninitialised memory
            replay, static_output = self.backend.capture(lambda: self.module(static_input))
            graph = self._remember(key, _Graph(static_input, static_output, replay))
            self.captures += 1
        else:
            self._graphs.move_to_end(key)
            self._fill(graph.static_input, x)
        graph.replay()
        self.replays += 1
        # The next replay overwrites the static output, while the caller keeps this result (tiles accumulate, batches
        # queue for the encoder): the caller gets its own copy of the frames it asked for.
        return graph.static_output[:count].clone()

    @staticmethod
    def _fill(static_input: torch.Tensor, x: torch.Tensor) -> None:
        count = x.shape[0]
        static_input[:count].copy_(x)
        if count < static_input.shape[0]:
            # Padding repeats the last frame: ordinary pixels, so the padded rows cannot trip the NaN/inf guard.
            static_input[count:].copy_(x[-1:])

    def clear(self) -> None:
        """Drop every graph (and with it the memory it holds); the next call of each shape captures anew."""
        self._graphs.clear()

    def _remember(self, key: ShapeKey, graph: _Graph) -> _Graph:
        self._graphs[key] = graph
        if len(self._graphs) > self.max_graphs:
            evicted, _ = self._graphs.popitem(last=False)
            logger.debug("dropped the graph for shape %s (keeping %d)", evicted, self.max_graphs)
        return graph
