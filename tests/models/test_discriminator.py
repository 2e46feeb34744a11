"""VGG-style discriminator: BasicSR's parameter names and shapes, a BasicSR-style checkpoint loading strictly,
output shape, input-size checks."""

import pytest
import torch

from vsr.errors import InputError, OptionError
from vsr.models.checkpoint import read_state_dict
from vsr.models.discriminator import VGGStyleDiscriminator


def _basicsr_layout(num_in_ch=3, nf=64, input_size=128):
    """BasicSR's VGGStyleDiscriminator (basicsr/archs/discriminator_arch.py), written out layer by layer:
    (name, kind, in, out) in definition order."""
    layers = [
        ("conv0_0", "conv3b", num_in_ch, nf), ("conv0_1", "conv4", nf, nf), ("bn0_1", "bn", nf, nf),
        ("conv1_0", "conv3", nf, nf * 2), ("bn1_0", "bn", nf * 2, nf * 2),
        ("conv1_1", "conv4", nf * 2, nf * 2), ("bn1_1", "bn", nf * 2, nf * 2),
        ("conv2_0", "conv3", nf * 2, nf * 4), ("bn2_0", "bn", nf * 4, nf * 4),
        ("conv2_1", "conv4", nf * 4, nf * 4), ("bn2_1", "bn", nf * 4, nf * 4),
        ("conv3_0", "conv3", nf * 4, nf * 8), ("bn3_0", "bn", nf * 8, nf * 8),
        ("conv3_1", "conv4", nf * 8, nf * 8), ("bn3_1", "bn", nf * 8, nf * 8),
        ("conv4_0", "conv3", nf * 8, nf * 8), ("bn4_0", "bn", nf * 8, nf * 8),
        ("conv4_1", "conv4", nf * 8, nf * 8), ("bn4_1", "bn", nf * 8, nf * 8),
    ]  # fmt: skip
    if input_size == 256:
        layers += [
            ("conv5_0", "conv3", nf * 8, nf * 8), ("bn5_0", "bn", nf * 8, nf * 8),
            ("conv5_1", "conv4", nf * 8, nf * 8), ("bn5_1", "bn", nf * 8, nf * 8),
        ]  # fmt: skip
    layers += [("linear1", "linear", nf * 8 * 4 * 4, 100), ("linear2", "linear", 100, 1)]
    shapes = {}
    for name, kind, cin, cout in layers:
        if kind.startswith("conv"):
            size = 3 if kind.startswith("conv3") else 4
            shapes[f"{name}.weight"] = (cout, cin, size, size)
            if kind == "conv3b":
                shapes[f"{name}.bias"] = (cout,)
        elif kind == "bn":
            for suffix in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{name}.{suffix}"] = (cout,)
            shapes[f"{name}.num_batches_tracked"] = ()
        else:
            shapes[f"{name}.weight"] = (cout, cin)
            shapes[f"{name}.bias"] = (cout,)
    return shapes


@pytest.mark.parametrize("input_size", [128, 256])
def test_parameter_names_and_shapes_are_basicsrs(input_size):
    model = VGGStyleDiscriminator(num_feat=64, input_size=input_size)
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert list(actual.items()) == list(_basicsr_layout(input_size=input_size).items())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (10 if input_size == 128 else 12)
    assert [(c.kernel_size, c.stride) for c in convs[:2]] == [((3, 3), (1, 1)), ((4, 4), (2, 2))]


def test_a_basicsr_checkpoint_loads_strictly(tmp_path):
    generator = torch.Generator().manual_seed(0)
    state_dict = {
        key: torch.randn(shape, generator=generator) if shape else torch.tensor(7)
        for key, shape in _basicsr_layout(nf=8).items()
    }
    torch.save({"params": state_dict}, tmp_path / "net_d_5000.pth")  # how BasicSR saves net_d
    model = VGGStyleDiscriminator(num_feat=8)
    model.load_state_dict(read_state_dict(tmp_path / "net_d_5000.pth"), strict=True)
    assert torch.equal(model.linear2.weight, state_dict["linear2.weight"])


def test_one_raw_score_per_image():
    torch.manual_seed(0)
    model = VGGStyleDiscriminator(num_feat=4)
    scores = model(torch.rand(3, 3, 128, 128))
    assert scores.shape == (3, 1)
    assert scores.requires_grad and torch.isfinite(scores).all()
    assert scores.std() > 0  # batch norm in training mode: different images, different scores
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 128, 128)).shape == (2, 1)
        assert VGGStyleDiscriminator(num_feat=2, input_size=256).eval()(torch.rand(1, 3, 256, 256)).shape == (1, 1)


def test_sizes_are_checked():
    with pytest.raises(OptionError, match="input_size 64"):
        VGGStyleDiscriminator(input_size=64)
    with pytest.raises(InputError, match="96×96, expected 128×128"):
        VGGStyleDiscriminator(num_feat=2)(torch.rand(1, 3, 96, 96))
