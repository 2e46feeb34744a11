"""What the engine and `vsr probe` count from a network's convolutions: work and the largest activation."""

import pytest
from torch import nn

from vsr.models import zoo
from vsr.models.detect import build, spec_for
from vsr.models.spec import ModelSpec, largest_activation_per_input_pixel, macs_per_input_pixel


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
