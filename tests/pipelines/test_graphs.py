"""Static-shape graphs: keys, static buffers, padding and eviction on the CPU, through the recording backend that
stands in for a CUDA graph; real CUDA graphs and torch.compile on a GPU (marked `gpu`)."""

import logging

import pytest
import torch
from torch import nn

from vsr.errors import OptionError
from vsr.models import zoo
from vsr.models.rrdbnet import RRDBNet
from vsr.models.spec import LoadedModel, ModelSpec
from vsr.models.srvgg import SRVGGNetCompact
from vsr.pipelines.engine import Engine
from vsr.pipelines.graphs import GraphedModel, RecordingBackend, backend_for

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def tiny_rrdbnet() -> LoadedModel:
    torch.manual_seed(0)
    hyperparameters = {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    spec = ModelSpec("RRDBNet", 4, hyperparameters=hyperparameters, supports_half=False)
    return LoadedModel(RRDBNet(**hyperparameters).eval(), spec, name="tiny-rrdbnet")


def tiny_srvgg() -> LoadedModel:
    torch.manual_seed(0)
    hyperparameters = {"num_feat": 4, "num_conv": 2, "upscale": 4}
    spec = ModelSpec("SRVGGNetCompact", 4, hyperparameters=hyperparameters)
    return LoadedModel(SRVGGNetCompact(**hyperparameters).eval(), spec, name="tiny-srvgg")


MODELS = {"rrdbnet": tiny_rrdbnet, "srvgg": tiny_srvgg}


def record_batch_sizes(module: nn.Module) -> list[int]:
    """The batch size of every input `module` is called with, from now on."""
    sizes: list[int] = []
    module.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    return sizes


@pytest.mark.parametrize("name", MODELS)
def test_recorded_graph_equals_eager_exactly(name):
    module = MODELS[name]().module
    graphed = GraphedModel(module, RecordingBackend(), batch_size=4)
    frames = torch.rand(4, 3, 12, 16)
    with torch.inference_mode():
        assert torch.equal(graphed(frames), module(frames))  # same ops on the same batch: bit for bit


def test_one_capture_per_shape_then_replays():
    module = tiny_srvgg().module
    graphed = GraphedModel(module, RecordingBackend(), batch_size=2)
    calls = record_batch_sizes(module)
    batches = [torch.rand(2, 3, 8, 8) for _ in range(3)]
    results = [graphed(batch) for batch in batches]
    assert (graphed.captures, graphed.replays) == (1, 3)
    assert graphed.shapes == [(2, 3, 8, 8, torch.float32)]
    assert len(calls) == 1 + 3  # the recording "capture" runs the module once, as a CUDA capture traces it once
    with torch.inference_mode():
        # Each result is the caller's own copy: later replays, which overwrite the static output, leave it alone.
        for batch, result in zip(batches, results):
            assert torch.equal(result, module(batch))


def test_a_partial_batch_is_padded_to_the_graph_and_sliced_back():
    module = tiny_rrdbnet().module
    graphed = GraphedModel(module, RecordingBackend(), batch_size=4)
    calls = record_batch_sizes(module)
    frames = torch.rand(5, 3, 8, 12)
    out = graphed(frames)  # 4 + 1 frames: the single frame replays the batch-4 graph
    assert out.shape == (5, 3, 32, 48)
    assert (graphed.captures, graphed.replays) == (1, 2)
    assert set(calls) == {4}
    with torch.inference_mode():
        torch.testing.assert_close(out, module(frames), atol=1e-6, rtol=0)


def test_different_sizes_get_separate_graphs_and_the_least_recent_is_evicted():
    module = tiny_srvgg().module
    graphed = GraphedModel(module, RecordingBackend(), batch_size=1, max_graphs=2)
    small, wide, tall = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 12), torch.rand(1, 3, 12, 8)
    for frames in (small, wide, small):
        graphed(frames)
    assert graphed.captures == 2
    assert graphed.shapes == [(1, 3, 8, 12, torch.float32), (1, 3, 8, 8, torch.float32)]
    graphed(tall)  # a third shape: the least recently used (wide) goes
    assert graphed.shapes == [(1, 3, 8, 8, torch.float32), (1, 3, 12, 8, torch.float32)]
    graphed(small)
    assert graphed.captures == 3 and graphed.shapes[-1] == (1, 3, 8, 8, torch.float32)
    with torch.inference_mode():
        assert torch.equal(graphed(wide), module(wide))  # captured again, evicting tall
    assert graphed.captures == 4
    assert graphed.shapes == [(1, 3, 8, 8, torch.float32), (1, 3, 8, 12, torch.float32)]


def test_dtype_and_call_batch_size_are_part_of_the_key():
    graphed = GraphedModel(tiny_srvgg().module.to(torch.bfloat16), RecordingBackend(), batch_size=4)
    frames = torch.rand(3, 3, 8, 8, dtype=torch.bfloat16)
    graphed(frames)
    graphed(frames, batch_size=3)
    assert graphed.shapes == [(4, 3, 8, 8, torch.bfloat16), (3, 3, 8, 8, torch.bfloat16)]


def test_the_backend_follows_the_device():
    assert isinstance(backend_for(torch.device("cpu")), RecordingBackend)


@pytest.mark.parametrize("name", MODELS)
def test_engine_with_graphs_on_the_cpu_equals_engine_without(name):
    model = MODELS[name]()
    frames = (torch.rand(5, 3, 10, 14) * 255).to(torch.uint8)  # 4 + 1 frames at batch size 4
    graphs = Engine(model, device="cpu", cuda_graphs="on", batch_size=4)
    eager = Engine(model, device="cpu", cuda_graphs="off", batch_size=4)
    assert graphs.graphed is not None and eager.graphed is None
    calls = record_batch_sizes(graphs.graphed.module)
    assert torch.equal(graphs.upscale(frames), eager.upscale(frames))
    assert (graphs.graphed.captures, graphs.graphed.replays) == (1, 2)
    assert set(calls) == {4}  # the fifth frame ran padded to the full batch


def test_a_model_without_parameters_is_never_graphed():
    """A resizing baseline's matrices live in a bounded process-wide cache that a graph's replays would not keep
    alive (helper-135's review): it runs eagerly, even where graphs are asked for."""
    bicubic = zoo.load("bicubic", scale=2)
    assert Engine(bicubic, device="cpu", cuda_graphs="on").graphed is None
    assert Engine(tiny_rrdbnet(), device="cpu", cuda_graphs="on").graphed is not None


def test_tiling_with_graphs_equals_tiling_without():
    """A 16×64 frame at tile 16, overlap 4 is 5 tiles; at batch size 4 they run as 3 + 2, the 2 padded to 3."""
    model = tiny_rrdbnet()
    frames = torch.rand(2, 3, 16, 64)
    options = {"device": "cpu", "precision": "fp32", "tile": 16, "tile_overlap": 4, "batch_size": 4}
    graphs = Engine(model, cuda_graphs="on", **options)
    calls = record_batch_sizes(graphs.graphed.module)
    tiled = graphs.upscale(frames)
    torch.testing.assert_close(tiled, Engine(model, cuda_graphs="off", **options).upscale(frames), atol=1e-6, rtol=0)
    assert graphs.graphed.shapes == [(3, 3, 16, 16, torch.float32)]
    assert graphs.graphed.replays == 2 * 2  # two frames, two tile batches each
    assert set(calls) == {3}


def test_graphs_are_on_by_default_only_on_cuda():
    model = tiny_srvgg()
    assert not Engine(model, device="cpu").cuda_graphs
    assert Engine(model, device="cpu", cuda_graphs="on").cuda_graphs
    if torch.cuda.is_available():
        assert Engine(model, device="cuda").cuda_graphs


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cuda_graphs": "yes"}, r"unknown cuda_graphs value 'yes'; expected one of auto, on, off"),
        ({"cuda_graphs": True}, r"unknown cuda_graphs value True"),
        ({"compile": "yes"}, r"compile must be true or false, not 'yes'"),
    ],
)
def test_bad_graph_and_compile_options_are_one_line_errors(options, message):
    with pytest.raises(OptionError, match=message) as raised:
        Engine(tiny_srvgg(), device="cpu", **options)
    assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_compiled_module_through_recorded_graphs_equals_eager():
    """torch.compile on the CPU (inductor, ~20 s here) under the same static-buffer protocol as on CUDA."""
    model = tiny_srvgg()
    frames = torch.rand(3, 3, 12, 16)
    compiled = Engine(model, device="cpu", compile=True, cuda_graphs="on", batch_size=2)
    eager = Engine(model, device="cpu", cuda_graphs="off", batch_size=2)
    torch.testing.assert_close(compiled.upscale(frames), eager.upscale(frames), atol=1e-5, rtol=0)
    assert compiled.graphed.captures == 1


# GPU checks. Tolerances: graphs and eager run the same network, but not always the same kernels: the graph runs the
# last frame padded to batch 4 where eager runs batch 1, and cuDNN autotuning picks algorithms per shape. Results may
# then differ by a few units in the last place: fp16 4e-3 (its step near 1.0 is 2^-10 ≈ 1e-3), bf16 3e-2 (2^-7 ≈
# 8e-3), and fp32 2e-3, because cuDNN convolutions in fp32 use TF32 (fp16's 10-bit mantissa) unless told otherwise.
# Outputs are clamped to [0, 1].
TOLERANCES = {"fp32": 2e-3, "fp16": 4e-3, "bf16": 3e-2}


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("name", MODELS)
def test_cuda_graphs_equal_eager_on_cuda(name, precision):
    model = MODELS[name]()
    frames = torch.rand(5, 3, 24, 32, device="cuda")  # 4 + 1: the last frame replays the batch-4 graph padded
    graphs = Engine(model, device="cuda", precision=precision, cuda_graphs="on", batch_size=4)
    eager = Engine(model, device="cuda", precision=precision, cuda_graphs="off", batch_size=4)
    first, second = graphs.upscale(frames), graphs.upscale(frames.flip(0))
    expected = eager.upscale(frames)
    torch.testing.assert_close(first, expected, atol=TOLERANCES[precision], rtol=0)
    torch.testing.assert_close(second, expected.flip(0), atol=TOLERANCES[precision], rtol=0)
    assert (graphs.graphed.captures, graphs.graphed.replays) == (1, 4)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graphs_with_tiles_and_host_frames():
    """uint8 frames in host memory, tiled: tiles replay one graph, results come back through pinned memory."""
    model = tiny_rrdbnet()
    frames = (torch.rand(2, 3, 40, 72) * 255).to(torch.uint8)
    options = {"device": "cuda", "precision": "fp32", "tile": 32, "tile_overlap": 8, "batch_size": 4}
    graphs = Engine(model, cuda_graphs="on", **options)
    out = graphs.upscale(frames)
    assert out.device.type == "cpu" and out.dtype == torch.uint8
    expected = Engine(model, cuda_graphs="off", **options).upscale(frames)
    assert (out.int() - expected.int()).abs().max() <= 1  # a rounding step apart at most
    assert graphs.graphed.captures == 1
    whole = Engine(model, device="cuda", precision="fp32", cuda_graphs="on")
    assert whole.upscale(frames).is_pinned()  # whole frames are copied back through pinned memory


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cuda_graphs", ["on", "off"])
def test_compile_on_cuda_equals_eager(cuda_graphs, caplog):
    model = tiny_srvgg()
    frames = torch.rand(3, 3, 24, 32, device="cuda")
    compiled = Engine(model, device="cuda", precision="fp16", compile=True, cuda_graphs=cuda_graphs, batch_size=2)
    eager = Engine(model, device="cuda", precision="fp16", cuda_graphs="off", batch_size=2)
    with caplog.at_level(logging.WARNING):
        out = compiled.upscale(frames)
    torch.testing.assert_close(out, eager.upscale(frames), atol=TOLERANCES["fp16"], rtol=0)
    assert "NaN" not in caplog.text


def test_out_of_memory_is_told_by_type_or_by_what_cuda_says():
    """Instantiating a captured graph, or a cuBLAS/cuDNN workspace, fails out of memory as a plain RuntimeError:
    taken as any other error, it ended the run instead of halving the batch."""
    from vsr.pipelines.graphs import _out_of_memory_in

    assert _out_of_memory_in(RuntimeError("CUDA error: out of memory"))
    assert _out_of_memory_in(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"))
    try:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except torch.cuda.OutOfMemoryError:
            raise RuntimeError("Capture must end on the same stream it began on.")  # (ending a failed capture)
    except RuntimeError as error:
        assert _out_of_memory_in(error)
    assert not _out_of_memory_in(RuntimeError("Expected all tensors to be on the same device"))


def test_a_video_given_an_engine_is_decoded_in_the_engines_batches(tmp_path):
    """upscale_video with an engine of its own batch size (as bench/device_check.py gives it, batch 8): the frames
    come in batches of that size, not of the options' default 4, which replayed the batch-8 graph padded with 4
    copies, twice the work, in every end-to-end row whose batch was not 4."""
    from tests.pipelines.clips import make_clip
    from vsr.pipelines.upscale import VideoOptions, upscale_video

    model = tiny_srvgg()
    engine = Engine(model, device="cpu", precision="fp32", cuda_graphs="on", batch_size=8)
    calls = record_batch_sizes(engine.graphed.module)
    clip = make_clip(tmp_path / "clip.mp4", frames=7, size=(32, 24))
    result = upscale_video(clip, tmp_path / "out.mkv", video=VideoOptions(codec="ffv1", dedup=None), engine=engine)
    assert result.frames == 7
    assert (engine.graphed.captures, engine.graphed.replays) == (1, 1)  # the 7 frames in one batch of 8
    assert set(calls) == {8}
