"""Frames that do not fit in the device's memory: the engine halves its batch, then tiles, and goes on.

On the CPU a network that raises CUDA's out-of-memory error above a number of input pixels stands in for a full GPU
(running out of host memory ends in the kernel's OOM killer, not an exception); the `gpu` test runs out of real GPU
memory under a per-process limit.
"""

import logging
import os
from pathlib import Path

import pytest
import torch

from tests.pipelines.test_engine import tiny_rrdbnet
from vsr.errors import InputError
from vsr.models.spec import LoadedModel
from vsr.hardware import available_memory
from vsr.pipelines.engine import Engine


# The stand-ins play a GPU: no budget of the CPU's memory (which would run them on a probe input first), exact fp32.
ON_CPU = {"device": "cpu", "precision": "fp32", "memory_budget": None}


class MemoryBound(torch.nn.Module):
    """The network, but a batch of more than `limit` input pixels raises the error CUDA's allocator would."""

    def __init__(self, network: torch.nn.Module, limit: int):
        super().__init__()
        self.network = network
        self.limit = limit
        self.tried: list[tuple[int, int, int]] = []  # (batch, height, width) of every call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tried.append((x.shape[0], x.shape[-2], x.shape[-1]))
        if x.shape[0] * x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate more than {self.limit} pixels")
        return self.network(x)


def bounded(limit: int) -> LoadedModel:
    model = tiny_rrdbnet()
    return LoadedModel(MemoryBound(model.module, limit), model.spec, name="bounded")


def memory_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if "did not fit" in record.getMessage()]


FRAMES = (torch.rand(4, 3, 32, 48, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)


@pytest.mark.parametrize("cuda_graphs", ["off", "on"])
def test_a_batch_that_does_not_fit_is_halved_and_the_smaller_batch_kept(cuda_graphs, caplog):
    engine = Engine(bounded(limit=2 * 32 * 48), **ON_CPU, batch_size=4, cuda_graphs=cuda_graphs)
    with caplog.at_level(logging.WARNING):
        out = engine.upscale(FRAMES)
        again = engine.upscale(FRAMES)
    expected = Engine(tiny_rrdbnet(), **ON_CPU, batch_size=2).upscale(FRAMES)
    assert (out.int() - expected.int()).abs().max() <= 1 and torch.equal(out, again)
    assert engine.batch_size == 2 and engine.tile == 0
    # One warning: the second call starts at the batch size that fitted.
    assert memory_warnings(caplog) == ["48×32 frames did not fit in the memory of cpu at batch 4; going on at batch 2"]
    if cuda_graphs == "on":
        assert engine.graphed.shapes == [(2, 3, 32, 48, torch.float32)]  # the graph of batch 4 was dropped


def test_a_frame_that_does_not_fit_alone_is_tiled(caplog):
    # Tiles of 24×24 fit, whole 32×48 frames do not: batch 4 → 2 → 1, then tiles of half the frame's longer side.
    engine = Engine(bounded(limit=24 * 24), **ON_CPU, batch_size=4, tile_overlap=8)
    with caplog.at_level(logging.WARNING):
        out = engine.upscale(FRAMES)
    expected = Engine(tiny_rrdbnet(), **ON_CPU, batch_size=1, tile=24, tile_overlap=8)
    expected = expected.upscale(FRAMES)
    assert (out.int() - expected.int()).abs().max() <= 1
    assert (engine.batch_size, engine.tile) == (1, 24)
    assert memory_warnings(caplog) == [
        "48×32 frames did not fit in the memory of cpu at batch 4; going on at batch 2",
        "48×32 frames did not fit in the memory of cpu at batch 2; going on at batch 1",
        "48×32 frames did not fit in the memory of cpu at batch 1; going on at batch 1, tiles of 24",
    ]
    assert max(b * h * w for b, h, w in engine._module.tried[-4:]) <= 24 * 24  # the last frame went tile by tile


def test_tiles_that_do_not_fit_are_halved():
    engine = Engine(bounded(limit=16 * 16), **ON_CPU, batch_size=1, tile=32, tile_overlap=8)
    out = engine.upscale(FRAMES[:1])
    assert engine.tile == 16
    expected = Engine(tiny_rrdbnet(), **ON_CPU, batch_size=1, tile=16, tile_overlap=8)
    expected = expected.upscale(FRAMES[:1])
    assert (out.int() - expected.int()).abs().max() <= 1


def test_when_even_the_smallest_tile_does_not_fit_the_error_is_one_line():
    # Overlap 8 needs tiles of at least 9 pixels: 32 → 16 still does not fit, and 8 would be too small.
    engine = Engine(bounded(limit=8 * 8), **ON_CPU, batch_size=1, tile=32, tile_overlap=8)
    with pytest.raises(InputError) as raised:
        engine.upscale(FRAMES[:1])
    assert str(raised.value) == (
        "48×32 frames do not fit in the memory of cpu, even in tiles of 16 pixels one at a time; "
        "free the device, use --device cpu, or a smaller --tile-overlap"
    )


def test_other_errors_are_not_taken_for_a_lack_of_memory():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("not a memory problem")

    model = tiny_rrdbnet()
    engine = Engine(LoadedModel(Broken(), model.spec), **ON_CPU, batch_size=4)
    with pytest.raises(RuntimeError, match="not a memory problem"):
        engine.upscale(FRAMES)
    assert engine.batch_size == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cuda_graphs", ["off", "on"])
def test_frames_too_large_for_the_gpu_are_batched_smaller_or_tiled(cuda_graphs, caplog):
    """Real CUDA out-of-memory errors under a per-process limit of half what one whole frame needs."""
    model = tiny_rrdbnet()
    frames = (torch.rand(4, 3, 256, 320, generator=torch.Generator().manual_seed(5)) * 255).to(torch.uint8)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    Engine(model, device="cuda", precision="fp32", batch_size=1, cuda_graphs="off").upscale(frames[:1])
    one_frame = torch.cuda.max_memory_allocated() - base
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + one_frame // 2) / total)
    try:
        engine = Engine(model, device="cuda", precision="fp32", batch_size=4, cuda_graphs=cuda_graphs,
                        tile_overlap=16)
        with caplog.at_level(logging.WARNING):
            out = engine.upscale(frames)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert engine.batch_size == 1 and engine.tile > 0 and memory_warnings(caplog)
    expected = Engine(model, device="cuda", precision="fp32", batch_size=1, tile=engine.tile, tile_overlap=16,
                      cuda_graphs="off").upscale(frames)
    assert (out.int() - expected.int()).abs().max() <= 1


# ---------------------------------------------------------------------------------------------------------------
# The CPU: the batch and tiles are fitted beforehand to a memory budget (its OOM killer leaves nothing to catch)
# ---------------------------------------------------------------------------------------------------------------


def test_on_the_cpu_the_batch_is_fitted_to_the_memory_budget_before_it_runs(caplog):
    # The tiny ×4 RRDBNet's largest convolution output: 8 channels at 16× the pixels, so 3 × 128 values × 4 bytes
    # = 1536 bytes per input pixel in fp32; a 48×32 frame is 1536 pixels, plus 4 × 16 × 3 × 4 bytes of float output.
    per_frame = 1536 * 1536 + 1536 * 16 * 3 * 4
    engine = Engine(tiny_rrdbnet(), device="cpu", precision="fp32", batch_size=4, memory_budget=3 * per_frame)
    with caplog.at_level(logging.WARNING):
        out = engine.upscale(FRAMES)
        again = engine.upscale(FRAMES)
    assert engine.batch_size == 2 and engine.tile == 0
    expected = Engine(tiny_rrdbnet(), **ON_CPU, batch_size=2).upscale(FRAMES)
    assert torch.equal(out, expected) and torch.equal(again, expected)
    assert [record.getMessage() for record in caplog.records] == [  # once: the size is fitted
        "48×32 frames would need about 10.6 MB of memory at batch 4 in fp32, more than the 8.0 MB this run allows "
        "itself; going on at batch 2"]


def test_on_the_cpu_frames_too_large_for_the_budget_at_batch_1_are_tiled():
    engine = Engine(tiny_rrdbnet(), device="cpu", precision="fp32", batch_size=2, tile_overlap=4,
                    memory_budget=1_000_000)
    out = engine.upscale(FRAMES[:2])
    assert (engine.batch_size, engine.tile) == (1, 12)  # 48 → 24 (1.2 MB) → 12 (0.5 MB)
    expected = Engine(tiny_rrdbnet(), **ON_CPU, batch_size=1, tile=12, tile_overlap=4).upscale(FRAMES[:2])
    assert torch.equal(out, expected)


def test_frames_that_do_not_fit_even_in_the_smallest_tile_say_so(caplog):
    """It went on over the budget without a word (helper-74)."""
    engine = Engine(tiny_rrdbnet(), device="cpu", precision="fp32", batch_size=1, tile_overlap=16,
                    memory_budget=1_000)
    with caplog.at_level(logging.WARNING):
        engine.upscale(FRAMES[:1])
    # (the model's float output, 295 kB, is alone over the budget: no tile makes that smaller)
    assert "which still needs about 1.2 MB: the model's ×4 output alone takes 0.3 MB; a model of a smaller scale " \
           "takes less" in caplog.text


def test_frames_over_the_memory_left_even_in_the_smallest_tile_are_one_line_before_the_model_runs(monkeypatch, caplog):
    """They went on over it, into the OOM killer or a traceback from torch's allocator (a 16000×9000 video with
    --outscale 1: 27.6 GB asked for at once)."""
    model = bounded(limit=10**9)  # (counts its calls)
    monkeypatch.setattr("vsr.pipelines.engine.available_memory", lambda: 300_000)
    engine = Engine(model, device="cpu", precision="fp32", batch_size=1, tile_overlap=4)
    # 48×32 ×4 as floats: 295 kB, under what is left; a tile of 6 (the smallest of overlap 4), 55 kB more
    with pytest.raises(InputError) as error:
        engine.upscale(FRAMES[:1])
    assert str(error.value) == ("48×32 frames would need about 0.4 MB of memory in fp32 even at batch 1, tiles of 6, "
                                "more than the 0.3 MB available here; a smaller --tile-overlap allows smaller tiles")
    monkeypatch.setattr("vsr.pipelines.engine.available_memory", lambda: 200_000)
    engine = Engine(model, device="cpu", precision="fp32", batch_size=1, tile_overlap=4)
    model.module.tried.clear()  # (the engine measured the network on a small input)
    with pytest.raises(InputError, match=r"more than the 0.2 MB available here; the model's ×4 output alone takes "
                                         r"0.3 MB; a model of a smaller scale takes less$"):
        engine.upscale(FRAMES[:1])
    assert model.module.tried == []  # refused before anything ran
    # Over the budget (half of it) but not over what is left: a warning, and it runs
    monkeypatch.setattr("vsr.pipelines.engine.available_memory", lambda: 600_000)
    engine = Engine(model, device="cpu", precision="fp32", batch_size=1, tile_overlap=4)
    with caplog.at_level(logging.WARNING):
        assert engine.upscale(FRAMES[:1]).shape == (1, 3, 128, 192)
    assert "which still needs about 0.4 MB: a smaller --tile-overlap allows smaller tiles" in caplog.text


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads Linux's /proc/meminfo")
def test_by_default_the_cpu_budget_is_half_the_memory_available(monkeypatch):
    meminfo = Path("/proc/meminfo").read_text()
    total = int(next(line for line in meminfo.splitlines() if line.startswith("MemTotal")).split()[1]) * 1024
    available = available_memory()
    assert 0 < available <= total
    # (read once: the other test process's allocations between two reads could move it by more than any margin)
    monkeypatch.setattr("vsr.pipelines.engine.available_memory", lambda: available)
    budget = Engine(tiny_rrdbnet(), device="cpu").memory_budget
    share = min(1.0, torch.get_num_threads() / os.cpu_count())  # a worker process's share follows its threads
    assert budget == int(available * share) // 2
