"""What the engine and `vsr probe` count from a network's convolutions: work and the largest activation."""

import pytest
import torch
from torch import nn

from vsr.models import zoo
from vsr.models.detect import build, spec_for
from vsr.models.spec import ModelSpec, _conv_outputs, largest_activation_per_input_pixel, macs_per_input_pixel


def zoo_network(name: str) -> tuple[nn.Module, ModelSpec]:
    entry = zoo.MODELS[name]
    spec = spec_for(entry.architecture, entry.hyperparameters)
    return build(spec), spec


@pytest.mark.parametrize("name, macs, largest", [("realesrgan-x4plus", 17.93e6, 1024),
                                                 ("realesr-animevideov3", 0.6192e6, 64)])
def test_the_zoo_networks_counts(name, macs, largest):
    """FIELD-NOTES: the full RRDBNet ×4 spends 17.93 M multiply-adds per input pixel."""
    module, spec = zoo_network(name)
    assert macs_per_input_pixel(module, spec) == pytest.approx(macs, rel=0.01)
    assert largest_activation_per_input_pixel(module, spec) == largest
    assert all(parameter.device.type == "cpu" for parameter in module.parameters())  # (counted on the meta device)


def test_the_shapes_counted_without_values_are_those_a_real_run_gives():
    module, spec = zoo_network("realesr-animevideov3")
    real = []
    hooks = [layer.register_forward_hook(lambda layer, inputs, output: real.append((layer, output.shape)))
             for layer in module.modules() if isinstance(layer, nn.Conv2d)]
    with torch.inference_mode():
        module(torch.zeros(1, 3, 16, 16))
    for hook in hooks:
        hook.remove()
    assert _conv_outputs(module, spec, 16) == real


class ReadsItsValues(nn.Module):
    """A forward that looks at a value, which a meta tensor does not have."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        if x.abs().max().item() > 1e9:
            return x
        return nn.functional.pixel_shuffle(self.conv(x), 2)


def test_a_network_that_reads_its_values_is_run_for_real():
    module = ReadsItsValues()
    spec = ModelSpec(architecture="ReadsItsValues", scale=2, in_channels=3, out_channels=2)
    runs = _conv_outputs(module, spec, 16)
    assert runs == [(module.conv, torch.Size([1, 8, 16, 16]))]
    assert macs_per_input_pixel(module, spec) == 8 * 3 * 9
