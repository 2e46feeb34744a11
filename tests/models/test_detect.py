"""Architecture detection: round trips for both architectures, the older ESRGAN key families, and refusals."""

import pytest
import torch

from vsr.errors import ModelError
from vsr.models.detect import ARCHITECTURES, build, canonical_state_dict, detect, mismatches, spec_for
from vsr.models.rrdbnet import RRDBNet
from vsr.models.spec import ModelSpec
from vsr.models.srvgg import SRVGGNetCompact

RRDBNET_CONFIGS = [
    dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=2, num_grow_ch=4),
    dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=4, num_block=1, num_grow_ch=6),
    dict(num_in_ch=3, num_out_ch=3, scale=1, num_feat=6, num_block=3, num_grow_ch=4),
    dict(num_in_ch=1, num_out_ch=1, scale=4, num_feat=4, num_block=1, num_grow_ch=4),
    dict(num_in_ch=1, num_out_ch=1, scale=2, num_feat=4, num_block=1, num_grow_ch=4),
    dict(num_in_ch=4, num_out_ch=3, scale=4, num_feat=4, num_block=1, num_grow_ch=4),
]
SRVGG_CONFIGS = [
    dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4, act_type="prelu"),
    dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=0, upscale=2, act_type="prelu"),
    dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=3, upscale=1, act_type="prelu"),
    dict(num_in_ch=1, num_out_ch=1, num_feat=4, num_conv=1, upscale=3, act_type="prelu"),
    dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=2, upscale=4, act_type="relu"),
]


def _tiny_rrdbnet(**config) -> RRDBNet:
    torch.manual_seed(0)
    model = RRDBNet(**config)
    # ESRGAN's init is small: give every tensor a distinct, visible value so a wrong mapping changes the output.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize("config", RRDBNET_CONFIGS, ids=lambda c: f"x{c['scale']}-in{c['num_in_ch']}")
def test_rrdbnet_round_trip(config):
    model = _tiny_rrdbnet(**config)
    spec = detect(model.state_dict())
    assert spec.architecture == "RRDBNet"
    assert spec.hyperparameters == config
    assert spec.scale == config["scale"]
    assert (spec.in_channels, spec.out_channels) == (config["num_in_ch"], config["num_out_ch"])
    assert spec.size_multiple == {4: 1, 2: 2, 1: 4}[config["scale"]]
    assert spec.supports_half is False and spec.supports_bfloat16 is True

    rebuilt = build(spec)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, config["num_in_ch"], 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))


@pytest.mark.parametrize("config", SRVGG_CONFIGS, ids=lambda c: f"x{c['upscale']}-{c['act_type']}-nc{c['num_conv']}")
def test_srvgg_round_trip(config):
    torch.manual_seed(0)
    model = SRVGGNetCompact(**config).eval()
    spec = detect(model.state_dict())
    assert spec.architecture == "SRVGGNetCompact"
    assert spec.hyperparameters == config
    assert spec.scale == config["upscale"] and spec.size_multiple == 1
    assert spec.supports_half is True

    rebuilt = ARCHITECTURES[spec.architecture](**spec.hyperparameters)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, config["num_in_ch"], 6, 7)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))


def test_srvgg_without_activation_weights_is_assumed_relu():
    # ReLU and LeakyReLU have no parameters: the shapes cannot tell them apart (documented in detect).
    model = SRVGGNetCompact(num_feat=4, num_conv=2, upscale=2, act_type="leakyrelu")
    assert detect(model.state_dict()).hyperparameters["act_type"] == "relu"


def test_rrdbnet_input_channels_equal_to_four_outputs_read_as_scale_2():
    # The documented guess: a ×4 model with 12 input and 3 output channels has the shapes of a ×2 RGB model.
    model = RRDBNet(num_in_ch=12, num_out_ch=3, scale=4, num_feat=4, num_block=1, num_grow_ch=4)
    spec = detect(model.state_dict())
    assert (spec.scale, spec.in_channels) == (2, 3)


# --- the older ESRGAN key families, built from BasicSR names by the inverse mapping --------------------------------


def _to_2019(state_dict: dict) -> dict:
    """BasicSR names → ESRGAN 2019 (RRDBNet_arch.py: RRDB_trunk, trunk_conv, upconv1/2, HRconv)."""
    renamed = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "body":  # body.i.rdbk.convm.w → RRDB_trunk.i.RDBk.convm.w
            key = f"RRDB_trunk.{parts[1]}.RDB{parts[2][-1]}.{parts[3]}.{parts[4]}"
        else:
            old = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
            key = f"{old.get(parts[0], parts[0])}.{parts[1]}"
        renamed[key] = value
    return renamed


def _to_2018(state_dict: dict, num_block: int) -> dict:
    """BasicSR names → the original 2018 sequential model (model.0, model.1.sub.*, model.3/6/8/10)."""
    top = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3",
           "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}  # fmt: skip
    renamed = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "body":  # body.i.rdbk.convm.w → model.1.sub.i.RDBk.convm.0.w
            key = f"model.1.sub.{parts[1]}.RDB{parts[2][-1]}.{parts[3]}.0.{parts[4]}"
        else:
            key = f"{top[parts[0]]}.{parts[1]}"
        renamed[key] = value
    return renamed


@pytest.mark.parametrize("family", ["2018", "2019", "dataparallel", "basicsr"])
@pytest.mark.parametrize("scale", [4, 2])
def test_old_key_families_map_back_to_basicsr_names(family, scale):
    model = _tiny_rrdbnet(scale=scale, num_feat=4, num_block=2, num_grow_ch=4)
    original = model.state_dict()
    foreign = {
        "2018": lambda: _to_2018(original, num_block=2),
        "2019": lambda: _to_2019(original),
        "dataparallel": lambda: {f"module.{key}": value for key, value in _to_2019(original).items()},
        "basicsr": lambda: dict(original),
    }[family]()
    # The test really renamed the keys (ESRGAN 2019 kept conv_first and conv_last).
    kept = {"basicsr": set(original), "2019": {"conv_first.weight", "conv_first.bias", "conv_last.weight",
            "conv_last.bias"}}.get(family, set())  # fmt: skip
    assert set(foreign) & set(original) == kept

    canonical = canonical_state_dict(foreign)
    assert list(canonical) == list(original)
    assert all(canonical[key] is original[key] for key in original)

    spec = detect(canonical)
    assert spec.hyperparameters["scale"] == scale and spec.hyperparameters["num_block"] == 2
    rebuilt = build(spec)
    rebuilt.load_state_dict(canonical, strict=True)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))


def test_torch_compile_prefix_is_stripped():
    model = SRVGGNetCompact(num_feat=4, num_conv=1)
    prefixed = {f"_orig_mod.{key}": value for key, value in model.state_dict().items()}
    assert canonical_state_dict(prefixed).keys() == model.state_dict().keys()


# --- refusals ------------------------------------------------------------------------------------------------------


def test_unknown_state_dict_names_found_and_expected_keys():
    state_dict = {"encoder.0.weight": torch.zeros(4, 3, 3, 3), "decoder.weight": torch.zeros(3, 4, 1, 1)}
    with pytest.raises(ModelError) as raised:
        detect(state_dict)
    message = str(raised.value)
    assert "encoder.0.weight" in message and "decoder.weight" in message
    assert "RRDBNet" in message and "SRVGGNetCompact" in message
    assert "\n" not in message


def test_empty_state_dict_is_refused():
    with pytest.raises(ModelError, match="empty"):
        detect({})


def test_mismatches_names_missing_unexpected_and_misshapen_tensors():
    state_dict = _tiny_rrdbnet(num_feat=4, num_block=1, num_grow_ch=4).state_dict()
    module = build(detect(state_dict))
    assert mismatches(module, state_dict) == []
    del state_dict["conv_hr.weight"]
    state_dict["conv_up1.weight"] = torch.zeros(4, 4, 1, 1)
    state_dict["conv_extra.weight"] = torch.zeros(1)
    assert mismatches(module, state_dict) == [
        "missing conv_hr.weight",
        "unexpected conv_extra.weight",
        "conv_up1.weight has shape (4, 4, 1, 1), expected (4, 4, 3, 3)",
    ]


def test_original_esrgan_x2_layout_is_refused_with_an_explanation():
    # A ×2 original ESRGAN has one upsampling stage: model.0, model.1, model.3 (upconv), model.5 (HR), model.7 (last).
    x4 = _to_2018(_tiny_rrdbnet(num_feat=4, num_block=1, num_grow_ch=4).state_dict(), num_block=1)
    x2 = {key.replace("model.8.", "model.5.").replace("model.10.", "model.7."): value
          for key, value in x4.items() if not key.startswith("model.6.")}  # fmt: skip
    canonical = canonical_state_dict(x2)
    assert canonical.keys() == x2.keys()  # not renamed: the layout is not the ×4 one
    with pytest.raises(ModelError, match="original ESRGAN layout other than ×4"):
        detect(canonical)


def test_build_refuses_unknown_architecture_and_bad_hyperparameters():
    with pytest.raises(ModelError, match="unknown architecture 'EDSR'"):
        build(ModelSpec(architecture="EDSR", scale=4))
    with pytest.raises(ModelError, match="bad hyperparameters"):
        build(spec_for("RRDBNet", {"scale": 3, "num_feat": 4, "num_block": 1, "num_grow_ch": 4}))
    with pytest.raises(ModelError, match="bad hyperparameters"):
        build(spec_for("SRVGGNetCompact", {"num_layers": 3}))


def test_srvgg_mismatches_against_another_upscale():
    model = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2)
    spec = detect(model.state_dict())
    other = build(spec_for("SRVGGNetCompact", {**spec.hyperparameters, "upscale": 4}))
    assert mismatches(other, model.state_dict()) == ["body.4.bias has shape (12,), expected (48,)",
                                                     "body.4.weight has shape (12, 4, 3, 3), expected (48, 4, 3, 3)"]
