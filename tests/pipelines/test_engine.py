"""The inference engine on the CPU: padding, dtypes, batching, tiling, outscale and option checking."""

import copy
import logging
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from vsr.errors import InputError, OptionError
from vsr.hardware import cpu_computes_bf16
from vsr.models import zoo
from vsr.models.resample import Resample, resize
from vsr.models.rrdbnet import RRDBNet
from vsr.models.rrdbnet_fused import FusedRRDBNet, fuse_rrdbnet
from vsr.models.spec import LoadedModel, ModelSpec
from vsr.pipelines import engine as engine_module
from vsr.pipelines.engine import (
    DEFAULT_TILE_OVERLAP,
    Engine,
    balanced_batch_size,
    blend_weights,
    recovery_precisions,
    resolve_device,
    resolve_precision,
    tile_starts,
    upscale_with_alpha,
)

logger = logging.getLogger(__name__)


def tiny_rrdbnet(scale: int = 4, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    hyperparameters = {"scale": scale, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    net = RRDBNet(**hyperparameters).eval()
    spec = ModelSpec("RRDBNet", scale, hyperparameters=hyperparameters, size_multiple={4: 1, 2: 2, 1: 4}[scale],
                     supports_half=False)
    return LoadedModel(net, spec, name=f"tiny-x{scale}")


def bicubic_model(scale: int = 2) -> LoadedModel:
    return LoadedModel(Resample(scale), ModelSpec("Resample", scale, hyperparameters={"scale": scale},
                                                  supports_half=False, supports_bfloat16=False))


def astronaut(top: int, left: int, size: int) -> torch.Tensor:
    """A crop of a real photo (scikit-image's astronaut, public domain) as 1×3×size×size uint8."""
    import skimage.data  # here, not at the top: the GPU machines that run this file's gpu tests lack scikit-image

    image = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None]
    return image[..., top : top + size, left : left + size].contiguous()


@pytest.mark.parametrize("scale, multiple", [(2, 2), (1, 4)])
def test_odd_sizes_are_padded_by_reflection_and_cropped(scale, multiple):
    model = tiny_rrdbnet(scale)
    frames = torch.rand(2, 3, 13, 11)
    out = Engine(model, device="cpu", precision="fp32").upscale(frames)
    assert out.shape == (2, 3, 13 * scale, 11 * scale)
    pad_h, pad_w = -13 % multiple, -11 % multiple
    with torch.inference_mode():
        expected = model.module(F.pad(frames, (0, pad_w, 0, pad_h), mode="reflect"))[..., : 13 * scale, : 11 * scale]
    torch.testing.assert_close(out, expected.clamp(0, 1), atol=1e-5, rtol=0)


def test_uint8_and_float_inputs_give_the_same_picture():
    engine = Engine(tiny_rrdbnet(), device="cpu")
    frames = astronaut(200, 200, 24).repeat(2, 1, 1, 1)
    as_uint8 = engine.upscale(frames)
    as_float = engine.upscale(frames.float() / 255)
    assert as_uint8.dtype == torch.uint8 and as_float.dtype == torch.float32
    assert as_uint8.shape == as_float.shape == (2, 3, 96, 96)
    assert 0 <= as_float.min() and as_float.max() <= 1
    assert torch.equal(as_uint8, (as_float * 255).round().to(torch.uint8))
    as_double = engine.upscale(frames.double() / 255)
    assert as_double.dtype == torch.float64


def test_batches_are_cut_into_chunks_without_changing_results():
    frames = torch.rand(5, 3, 12, 10)
    model = tiny_rrdbnet()
    one_call = Engine(model, device="cpu", batch_size=5).upscale(frames)
    chunked = Engine(model, device="cpu", batch_size=2).upscale(frames)
    one_by_one = torch.cat([Engine(model, device="cpu", batch_size=1).upscale(f[None]) for f in frames])
    torch.testing.assert_close(chunked, one_call, atol=1e-6, rtol=0)
    torch.testing.assert_close(one_by_one, one_call, atol=1e-6, rtol=0)


def test_on_the_cpu_a_pass_holds_the_frames_whose_largest_activation_fits(monkeypatch):
    """CPU_PASS_BYTES bounds a pass's largest convolution output (cache and page faults, see the engine): fewer
    frames or tiles per pass than the batch size, the same output."""
    frames = (torch.rand(5, 3, 12, 10, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    model = tiny_rrdbnet()  # 8 channels at 16× the input pixels: 512 bytes per input pixel in fp32
    whole = Engine(model, device="cpu", precision="fp32", batch_size=4).upscale(frames)
    monkeypatch.setattr(engine_module, "CPU_PASS_BYTES", 2 * 512 * 12 * 10)  # two frames
    engine = Engine(model, device="cpu", precision="fp32", batch_size=4)
    passes = []
    engine._module.register_forward_pre_hook(lambda module, args: passes.append(args[0].shape[0]))
    assert torch.equal(engine.upscale(frames), whole)
    assert passes == [2, 2, 1] and engine.batch_size == 4
    passes.clear()
    tiled = Engine(model, device="cpu", precision="fp32", batch_size=4, tile=8, tile_overlap=2)
    tiled._module.register_forward_pre_hook(lambda module, args: passes.append(args[0].shape[0]))
    tiled.upscale(frames[:1])  # 4 tiles of 8×8 input pixels, 3 fit a pass: 2 passes, balanced (4 without it)
    assert passes == [2, 2]


def test_a_frames_alpha_does_not_depend_on_the_frames_beside_it():
    """Opaque frames kept exactly opaque alpha only in a batch without transparency: beside a transparent frame
    (another --batch-size, --dedup, a segment cut) their 255s went through the model and came out 253 (helper-52)."""
    engine = Engine(tiny_rrdbnet(), device="cpu", precision="fp32", batch_size=4)
    frames = torch.randint(0, 256, (2, 4, 8, 8), dtype=torch.uint8)
    frames[0, 3] = 255
    frames[1, 3, :, :4] = 0
    together = upscale_with_alpha(engine, frames)
    alone = torch.cat([upscale_with_alpha(engine, frame[None]) for frame in frames])
    assert torch.equal(together, alone)
    assert bool((together[0, 3] == 255).all()) and not bool((together[1, 3] == 255).all())


def test_channels_last_and_contiguous_agree():
    frames = torch.rand(2, 3, 16, 16)
    model = tiny_rrdbnet()
    a = Engine(model, device="cpu", channels_last=True).upscale(frames)
    b = Engine(model, device="cpu", channels_last=False).upscale(frames)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_on_the_cpu_rrdbnet_runs_fused_in_bf16_unless_compiled():
    model = tiny_rrdbnet()
    frames = astronaut(100, 100, 16)
    fused = Engine(model, device="cpu", precision="bf16")
    assert isinstance(fused._module, FusedRRDBNet)
    assert isinstance(Engine(model, device="cpu", precision="fp32")._module, RRDBNet)  # no gain measured in fp32
    compiled = Engine(model, device="cpu", precision="bf16", compile=True)._module  # torch.compile fuses by itself
    assert isinstance(compiled._orig_mod, RRDBNet)
    assert not isinstance(Engine(bicubic_model(), device="cpu", precision="bf16")._module, FusedRRDBNet)
    reference = Engine(model, device="cpu", precision="bf16")
    reference._module = reference._prepare(torch.float32).to(torch.bfloat16)  # the reference forward, in bf16
    assert isinstance(reference._module, RRDBNet)
    assert (fused.upscale(frames).int() - reference.upscale(frames).int()).abs().max() <= 1


def test_the_callers_model_is_left_untouched():
    model = tiny_rrdbnet()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    Engine(model, device="cpu", precision="bf16").upscale(torch.rand(1, 3, 8, 8))
    after = model.module.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())


def test_bf16_on_cpu_is_close_to_fp32():
    frames = astronaut(100, 100, 32).float() / 255
    model = tiny_rrdbnet()
    fp32 = Engine(model, device="cpu", precision="fp32").upscale(frames)
    bf16 = Engine(model, device="cpu", precision="bf16").upscale(frames)
    assert bf16.dtype == torch.float32
    assert (fp32 - bf16).abs().max() < 0.05


def test_tile_starts_cover_the_frame_with_the_requested_overlap():
    for length, tile, overlap in [(100, 40, 8), (97, 48, 16), (300, 160, 128), (48, 48, 16), (30, 48, 16)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and min(starts[-1] + tile, length) == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("length, tile, overlap, scale", [(100, 40, 16, 1), (97, 48, 16, 4), (300, 160, 128, 2)])
def test_blend_weights_sum_to_one_and_vanish_at_shared_edges(length, tile, overlap, scale):
    starts = tile_starts(length, tile, overlap)
    weights = blend_weights(length, tile, starts, overlap, scale)
    total = torch.zeros(length * scale)
    for start, weight in zip(starts, weights):
        total[start * scale : start * scale + weight.numel()] += weight
    torch.testing.assert_close(total, torch.ones_like(total))
    assert weights[0][0] == 1 and weights[0][-1] == 0  # frame border kept, shared edge discarded
    assert weights[1][0] == 0


def test_tiling_is_exact_for_a_local_model():
    """Bicubic reaches 2 pixels: with any sensible overlap, the blend must reproduce the untiled result exactly."""
    frames = torch.rand(2, 3, 50, 37)
    model = bicubic_model(2)
    whole = Engine(model, device="cpu").upscale(frames)
    tiled = Engine(model, device="cpu", tile=20, tile_overlap=8, batch_size=3).upscale(frames)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)


def test_a_small_overlap_asked_for_cross_fades_over_the_tiles_real_overlap():
    """Tiles spread evenly overlap more than asked, and the cross-fade was sized by what was asked: at overlap 0 the
    bicubic model's tiles (11 pixels of real overlap) met in a step, 66 levels off (helper-74)."""
    frames = torch.rand(1, 3, 37, 30)
    model = bicubic_model(2)
    assert tile_starts(37, 24, 0) == [0, 13]
    whole = Engine(model, device="cpu").upscale(frames)
    tiled = Engine(model, device="cpu", tile=24, tile_overlap=0).upscale(frames)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)


def _max_difference(model: LoadedModel, frames: torch.Tensor, tile: int) -> tuple[int, float]:
    """(max uint8 difference, max float difference × 255) between tiled and untiled output at the default overlap."""
    untiled = Engine(model, device="cpu", precision="fp32").upscale(frames.float() / 255)
    tiled_engine = Engine(model, device="cpu", precision="fp32", tile=tile)
    assert tiled_engine.tile_overlap == DEFAULT_TILE_OVERLAP
    tiled = tiled_engine.upscale(frames.float() / 255)
    as_uint8 = ((tiled * 255).round() - (untiled * 255).round()).abs().max().item()
    return int(as_uint8), (tiled - untiled).abs().max().item() * 255


def test_tiled_matches_untiled_within_one_level_tiny_model():
    frames = astronaut(60, 120, 320)  # two or more tiles each way at tile 160
    assert len(tile_starts(320, 160, DEFAULT_TILE_OVERLAP)) > 2
    uint8_diff, float_diff = _max_difference(tiny_rrdbnet(), frames, tile=160)
    logger.info("tiny RRDBNet, tiled vs untiled: max %d uint8 levels, %.4f float×255", uint8_diff, float_diff)
    assert uint8_diff <= 1 and float_diff < 1


@pytest.fixture(scope="module")
def realesrgan_x4plus(tmp_path_factory):
    """The default model, from the zoo (converted from the ncnn package into a private cache)."""
    return zoo.load("realesrgan-x4plus", progress=False)


@pytest.mark.slow
def test_tiled_matches_untiled_within_one_level_real_model(realesrgan_x4plus):
    """RRDBNet's influence reaches ~60 pixels: this is what DEFAULT_TILE_OVERLAP was chosen against. One seam is
    enough to show it (the tiny-model test above covers the 2-D layout), and a strip of 48 rows keeps the full model
    on 2 CPU cores to a quarter of the time that 2×2 tiles took."""
    frames = astronaut(100, 150, 160)[..., :48, :]  # tile 144 at overlap 128: two tiles overlapping by exactly 128
    assert tile_starts(160, 144, DEFAULT_TILE_OVERLAP) == [0, 16] and tile_starts(48, 144, DEFAULT_TILE_OVERLAP) == [0]
    uint8_diff, float_diff = _max_difference(realesrgan_x4plus, frames, tile=144)
    logger.info("RealESRGAN_x4plus, tiled vs untiled: max %d uint8 levels, %.4f float×255", uint8_diff, float_diff)
    assert uint8_diff <= 1 and float_diff < 1


@pytest.mark.slow
def test_the_fused_form_of_the_real_model_equals_its_reference_forward(realesrgan_x4plus):
    """fp32: within 1e-5. bf16: no further from fp32 than the reference forward in bf16 is (the fused convolutions
    add the residual in their fp32 accumulator and round once, where the reference rounds after each step)."""
    frames = astronaut(200, 180, 40).float() / 255
    reference = realesrgan_x4plus.module
    with torch.inference_mode():
        fp32 = reference(frames)
        torch.testing.assert_close(fuse_rrdbnet(reference)(frames), fp32, atol=1e-5, rtol=0)
        fused = fuse_rrdbnet(reference).to(torch.bfloat16)(frames.bfloat16()).float()
        bf16 = copy.deepcopy(reference).to(torch.bfloat16)(frames.bfloat16()).float()
    fused_error, reference_error = (fused - fp32).abs(), (bf16 - fp32).abs()
    logger.info("x4plus in bf16 against fp32: fused mean %.5f max %.4f, reference mean %.5f max %.4f",
                fused_error.mean(), fused_error.max(), reference_error.mean(), reference_error.max())
    assert fused_error.mean() < 1.1 * reference_error.mean() and fused_error.max() < 2 * reference_error.max()


@pytest.mark.slow
def test_outscale_resizes_the_model_output():
    model = tiny_rrdbnet()
    frames = torch.rand(1, 3, 15, 16)
    engine = Engine(model, device="cpu", outscale=3.5)
    assert engine.scale == 3.5 and engine.output_size(15, 16) == (53, 56)  # 52.5 rounds half up
    out = engine.upscale(frames)
    assert out.shape == (1, 3, 53, 56)
    native = Engine(model, device="cpu").upscale(frames)
    torch.testing.assert_close(out, resize(native, (53, 56), "lanczos").clamp(0, 1), atol=1e-5, rtol=0)
    assert Engine(model, device="cpu", outscale=4).outscale is None  # the model's own scale: nothing to resize
    shrunk = Engine(model, device="cpu", outscale=1, tile=12, tile_overlap=2).upscale(frames)
    assert shrunk.shape == (1, 3, 15, 16)


def test_empty_batches_and_bad_frames():
    engine = Engine(tiny_rrdbnet(), device="cpu")
    assert engine.upscale(torch.zeros(0, 3, 8, 9, dtype=torch.uint8)).shape == (0, 3, 32, 36)
    with pytest.raises(InputError, match="N×3×H×W"):
        engine.upscale(torch.rand(3, 8, 8))
    with pytest.raises(InputError, match="int32"):
        engine.upscale(torch.zeros(1, 3, 8, 8, dtype=torch.int32))


def test_device_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(OptionError, match=r"'gpu'.*auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")
    with pytest.raises(OptionError, match="cuda:x"):
        resolve_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_error():
    with pytest.raises(OptionError, match="CUDA is not available") as raised:
        Engine(tiny_rrdbnet(), device="cuda:0")
    assert "\n" not in str(raised.value)


def test_precision_choices(caplog):
    rrdb = tiny_rrdbnet().spec
    cpu = torch.device("cpu")
    # A CPU with bf16 instructions runs networks in bf16 (twice as fast), the resampling baselines in fp32 (exact).
    assert resolve_precision("auto", cpu, rrdb, cpu_bf16=True) == "bf16"
    assert resolve_precision("auto", cpu, bicubic_model().spec, cpu_bf16=True) == "fp32"
    assert resolve_precision("auto", cpu, rrdb, cpu_bf16=False) == "fp32"
    assert resolve_precision("fp32", cpu, rrdb, cpu_bf16=True) == "fp32"
    assert resolve_precision("bf16", cpu, rrdb, cpu_bf16=True) == "bf16"
    assert resolve_precision("bf16", cpu, bicubic_model().spec, cpu_bf16=True) == "fp32"  # even when asked
    assert "Resample runs in fp32: bf16's 8 significant bits would make it inexact" in caplog.text
    # On CUDA, "auto" is fp16 for models that are safe in it (the bf16 branch needs a real GPU to ask); the
    # baselines stay fp32 there too, even when asked (they ran in fp16, a level off in 4 % of values: helper-74).
    cuda = torch.device("cuda", 0)
    assert resolve_precision("auto", cuda, ModelSpec("SRVGGNetCompact", 4)) == "fp16"
    assert resolve_precision("auto", cuda, bicubic_model().spec) == "fp32"
    assert resolve_precision("fp16", cuda, zoo.load("lanczos").spec) == "fp32"
    assert "fp16's 11 significant bits" in caplog.text
    with pytest.raises(OptionError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu, rrdb)
    with pytest.raises(OptionError, match=r"'fp64'.*auto, fp32, fp16, bf16"):
        Engine(tiny_rrdbnet(), device="cpu", precision="fp64")


def test_bf16_on_a_cpu_without_bf16_instructions_is_said_to_be_slow(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_precision("bf16", torch.device("cpu"), tiny_rrdbnet().spec, cpu_bf16=False) == "bf16"
    assert "no bf16 instructions" in caplog.text


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads Linux's list of CPU flags")
def test_the_cpus_bf16_instructions_are_those_linux_lists():
    flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
                .split(":", 1)[1].split())
    assert cpu_computes_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
    expected = "bf16" if cpu_computes_bf16() else "fp32"
    assert Engine(tiny_rrdbnet(), device="cpu").precision == expected


def test_bad_engine_options():
    model = tiny_rrdbnet()
    with pytest.raises(OptionError, match="--batch-size must be an integer >= 1, not 0"):
        Engine(model, device="cpu", batch_size=0)
    with pytest.raises(OptionError, match="--tile must be an integer >= 0, not -1"):
        Engine(model, device="cpu", tile=-1)
    with pytest.raises(OptionError, match="--tile 100 is too small for --tile-overlap 128: use a --tile of at least "
                                          "144 pixels or a smaller --tile-overlap"):
        Engine(model, device="cpu", tile=100)
    with pytest.raises(OptionError, match=r"^--outscale must be a factor above 0 and at most 64, not 0$"):
        Engine(model, device="cpu", outscale=0)  # (as other options say it: the option's name, the value as given)
    with pytest.raises(OptionError, match=r"not 'x'$"):
        Engine(model, device="cpu", outscale="x")


def test_balanced_batch_sizes_keep_the_number_of_batches():
    assert [balanced_batch_size(count, 4) for count in (1, 4, 5, 6, 9, 10, 12)] == [1, 4, 3, 3, 3, 4, 4]
    assert balanced_batch_size(7, 1) == 1


def test_recovery_goes_to_more_range():
    assert recovery_precisions("fp16", bf16_supported=True) == ["bf16", "fp32"]
    assert recovery_precisions("fp16", bf16_supported=False) == ["fp32"]
    assert recovery_precisions("bf16", bf16_supported=True) == ["fp32"]
    assert recovery_precisions("fp32", bf16_supported=True) == []


class BeyondBfloat16(torch.nn.Module):
    """Scales by 3.4e38 and back. fp32 holds 3.4e38 (its largest value is 3.40282e38) and the scaled frames (in
    [0, 1]) stay finite; bf16's largest value is 3.3895e38, so in bf16 the gain itself rounds to inf and the output is
    NaN/inf. A genuine reduced-precision overflow, the kind fp16 has at 65504, that the CPU can run (it refuses fp16).
    """

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(3.4e38))

    def forward(self, x):
        return F.interpolate(x * self.gain, scale_factor=2) / self.gain


def _recompute_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "NaN/inf values" in r.getMessage()]


@pytest.mark.parametrize("cuda_graphs, tile, unit", [("off", 0, "frame"), ("on", 0, "frame"), ("on", 8, "tile")])
def test_reduced_precision_overflow_is_recomputed_with_one_warning(cuda_graphs, tile, unit, caplog):
    model = LoadedModel(BeyondBfloat16(), ModelSpec("BeyondBfloat16", 2))
    frames = torch.rand(2, 3, 8, 16)
    expected = F.interpolate(frames, scale_factor=2)
    with caplog.at_level(logging.WARNING):
        exact = Engine(model, device="cpu", precision="fp32", cuda_graphs=cuda_graphs, tile=tile, tile_overlap=2)
        fp32 = exact.upscale(frames)
    assert not _recompute_warnings(caplog)
    torch.testing.assert_close(fp32, expected, atol=1e-6, rtol=0)

    engine = Engine(model, device="cpu", precision="bf16", cuda_graphs=cuda_graphs, tile=tile, tile_overlap=2)
    with caplog.at_level(logging.WARNING):
        out = engine.upscale(frames)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)  # recomputed in fp32: exact, not bf16-close
    warnings = _recompute_warnings(caplog)
    if unit == "frame":
        assert warnings == ["bf16 output of 2 frame(s) had NaN/inf values; recomputed in fp32"]
    else:  # each 8×16 frame is three 8×8 tiles overlapping by 2 or more, run as one batch per frame
        assert tile_starts(16, 8, 2) == [0, 4, 8]
        assert warnings == ["bf16 output of 3 tile(s) had NaN/inf values; recomputed in fp32"] * 2


class Overflowing(torch.nn.Module):
    """Exceeds fp16's range (65504) in the middle, though input and output are ordinary; bf16 and fp32 hold it."""

    def forward(self, x):
        return F.interpolate(x * 1e5, scale_factor=2) / 1e5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cuda_graphs", ["on", "off"])
def test_fp16_overflow_is_redone_in_bf16_where_supported(cuda_graphs, caplog):
    model = LoadedModel(Overflowing(), ModelSpec("Overflowing", 2, supports_half=True))
    engine = Engine(model, device="cuda", precision="fp16", cuda_graphs=cuda_graphs)
    frames = torch.rand(2, 3, 8, 8, device="cuda")
    with caplog.at_level(logging.WARNING):
        out = engine.upscale(frames)
    assert torch.isfinite(out).all()
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    # bf16 keeps 8 bits of mantissa: after ×1e5, interpolation and ÷1e5, within 1e-2 of the fp32 result.
    torch.testing.assert_close(out, F.interpolate(frames, scale_factor=2), atol=1e-2 if bf16 else 1e-3, rtol=0)
    redo = "bf16" if bf16 else "fp32"
    assert _recompute_warnings(caplog) == [f"fp16 output of 2 frame(s) had NaN/inf values; recomputed in {redo}"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_overflow_beyond_bf16_ends_in_fp32(caplog):
    model = LoadedModel(BeyondBfloat16(), ModelSpec("BeyondBfloat16", 2, supports_half=True))
    engine = Engine(model, device="cuda", precision="fp16")
    frames = torch.rand(3, 3, 8, 8, device="cuda")
    with caplog.at_level(logging.WARNING):
        out = engine.upscale(frames)
    torch.testing.assert_close(out, F.interpolate(frames, scale_factor=2), atol=1e-5, rtol=0)
    redo = "bf16 then fp32" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    assert _recompute_warnings(caplog) == [f"fp16 output of 3 frame(s) had NaN/inf values; recomputed in {redo}"]


@pytest.mark.parametrize("tile", [0, 24], ids=["whole", "tiled"])
def test_strength_mixes_the_model_with_the_source_scaled_by_lanczos(tile):
    frames = 0.3 + 0.4 * torch.rand(2, 3, 20, 28)  # (mid-gray: no output is clamped)
    engines = {strength: Engine(bicubic_model(4), device="cpu", precision="fp32", tile=tile, tile_overlap=8,
                                strength=strength) for strength in (1.0, 0.25, 0.0)}
    model, mixed, plain = (engines[strength].upscale(frames) for strength in (1.0, 0.25, 0.0))
    assert torch.allclose(plain, resize(frames, (80, 112), kernel="lanczos"), atol=1e-6)
    assert not torch.allclose(model, plain, atol=1e-3)  # bicubic is not Lanczos: the mix can be seen
    assert torch.allclose(mixed, 0.25 * model + 0.75 * plain, atol=1e-6)
    # Each part is clipped to [0, 1] before the mix, so overshoots (Lanczos rings at edges) do not leak into it.
    edge = torch.zeros(1, 3, 20, 28)
    edge[..., 10:] = 1
    halfway = Engine(bicubic_model(4), device="cpu", precision="fp32", strength=0.5).upscale(edge)
    ends = [engines[strength].upscale(edge) for strength in (1.0, 0.0)]
    assert torch.allclose(halfway, (ends[0] + ends[1]) / 2, atol=1e-6)
    for bad in (1.5, -0.1, True, "1"):
        with pytest.raises(OptionError, match="strength must be a number from 0 to 1"):
            Engine(tiny_rrdbnet(), device="cpu", strength=bad)
    # Where the model does not run, summaries say the resize's precision, not the model's.
    assert Engine(tiny_rrdbnet(), device="cpu", precision="bf16", strength=0).precision == "fp32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("tile", [0, 24], ids=["whole", "tiled"])
def test_strength_on_cuda_with_frames_from_the_host(tile):
    """Tiles of host frames are put together on the host while the source is scaled on the GPU: the mix meets on
    the tiles' side, as on the CPU."""
    frames = 0.3 + 0.4 * torch.rand(2, 3, 20, 28)
    outputs = [Engine(bicubic_model(4), device=device, precision="fp32", tile=tile, tile_overlap=8, strength=0.5,
                      cuda_graphs="off").upscale(frames) for device in ("cpu", "cuda")]
    assert outputs[1].device.type == "cpu"
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-4, rtol=0)
