"""Interoperability: the files `save_model` writes load in spandrel (chaiNNer, ComfyUI) and compute the same image.

spandrel is installed without its dependencies. Importing it pulls in `torchvision.transforms.functional` (LaMa,
RestoreFormer) and `einops` (several transformer architectures) at import time, though neither is used by the ESRGAN
or Compact architectures tested here; torchvision does not even import beside the CPU torch wheel. So, only where a
module is absent, a stand-in providing just the names spandrel imports is placed in sys.modules while spandrel is
imported; calling any of them fails loudly.
"""

import importlib.util
import sys
import types
from unittest import mock

import pytest
import torch

from vsr.models.checkpoint import load_model, save_model
from vsr.models.detect import detect
from vsr.models.rrdbnet import RRDBNet
from vsr.models.srvgg import SRVGGNetCompact

# module name → the names spandrel imports from it (grep "torchvision\|einops" in site-packages/spandrel).
STAND_INS = {
    "torchvision": [],
    "torchvision.transforms": [],
    "torchvision.transforms.functional": ["InterpolationMode", "rotate", "normalize"],
    "einops": ["rearrange", "reduce", "repeat"],
    "einops.layers": [],
    "einops.layers.torch": ["Rearrange", "Reduce"],
}


def _stand_in(module_name: str, names: list[str]) -> types.ModuleType:
    module = types.ModuleType(module_name)

    def unavailable(*args, **kwargs):
        raise RuntimeError(f"{module_name} is a test stand-in: not available")

    for name in names:
        setattr(module, name, unavailable)
    return module


def _import_spandrel():
    missing = {
        name: _stand_in(name, names)
        for name, names in STAND_INS.items()
        if importlib.util.find_spec(name.split(".")[0]) is None
    }
    # patch.dict restores sys.modules afterwards; the imported spandrel keeps working through its own references.
    with mock.patch.dict(sys.modules, missing):
        import spandrel

        return spandrel


spandrel = _import_spandrel()


def _tiny_rrdbnet(scale: int) -> RRDBNet:
    torch.manual_seed(scale)
    model = RRDBNet(scale=scale, num_feat=8, num_block=2, num_grow_ch=32)  # spandrel fixes growth channels at 32
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    return model.eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdbnet_files_load_in_spandrel(tmp_path, scale, suffix):
    model = _tiny_rrdbnet(scale)
    save_model(model, detect(model.state_dict()), tmp_path / "net")

    descriptor = spandrel.ModelLoader().load_from_file(tmp_path / f"net{suffix}")
    assert descriptor.architecture.id == "ESRGAN"
    assert descriptor.scale == scale
    assert (descriptor.input_channels, descriptor.output_channels) == (3, 3)

    ours = load_model(tmp_path / f"net{suffix}")
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        theirs_out = descriptor.model.eval()(x)
        ours_out = ours.module(x)
    assert ours_out.shape == theirs_out.shape == (1, 3, 8 * scale, 12 * scale)
    torch.testing.assert_close(ours_out, theirs_out, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours_out, model(x), rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("upscale", [4, 2])
def test_srvgg_files_load_in_spandrel(tmp_path, upscale, suffix):
    torch.manual_seed(upscale)
    model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=upscale, act_type="prelu").eval()
    save_model(model, detect(model.state_dict()), tmp_path / "compact")

    descriptor = spandrel.ModelLoader().load_from_file(tmp_path / f"compact{suffix}")
    assert descriptor.architecture.id == "Compact"
    assert descriptor.scale == upscale

    ours = load_model(tmp_path / f"compact{suffix}")
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours.module(x), descriptor.model.eval()(x), rtol=0, atol=1e-6)
