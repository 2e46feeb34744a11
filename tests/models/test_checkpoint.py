"""Checkpoint files: round trips through .pth and .safetensors, containers, safety, corrupt files, atomic saves."""

import builtins
import json
import logging
import os

import pytest
import safetensors
import safetensors.torch
import torch

from vsr.errors import ModelError, OutputError
from vsr.models.checkpoint import METADATA_KEY, load_model, read_state_dict, save_model
from vsr.models.detect import detect, spec_for
from vsr.models.rrdbnet import RRDBNet
from vsr.models.srvgg import SRVGGNetCompact


def _rrdbnet(seed: int = 0, scale: int = 4) -> RRDBNet:
    torch.manual_seed(seed)
    model = RRDBNet(scale=scale, num_feat=4, num_block=1, num_grow_ch=4)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    return model.eval()


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("scale", [4, 2, 1])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_rrdbnet_round_trip(tmp_path, scale, suffix):
    model = _rrdbnet(scale=scale)
    spec = detect(model.state_dict())
    pth, st = save_model(model, spec, tmp_path / "net")
    assert (pth.name, st.name) == ("net.pth", "net.safetensors")

    loaded = load_model(tmp_path / f"net{suffix}")
    assert loaded.spec == spec
    assert (loaded.name, loaded.source) == ("net", str(tmp_path / f"net{suffix}"))
    assert not loaded.module.training
    assert not any(parameter.requires_grad for parameter in loaded.module.parameters())
    assert _same_outputs(loaded.module, model)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_srvgg_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    model = SRVGGNetCompact(num_feat=4, num_conv=2, upscale=2).eval()
    save_model(model, detect(model.state_dict()), tmp_path / f"compact{suffix}")
    loaded = load_model(tmp_path / f"compact{suffix}")
    assert loaded.spec.architecture == "SRVGGNetCompact" and loaded.spec.scale == 2
    assert _same_outputs(loaded.module, model)


@pytest.mark.parametrize("given", ["model", "model.pth", "model.safetensors"])
def test_save_accepts_either_suffix_or_none(tmp_path, given):
    model = _rrdbnet()
    paths = save_model(model, detect(model.state_dict()), tmp_path / given)
    assert paths == (tmp_path / "model.pth", tmp_path / "model.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth", "model.safetensors"]


def test_saved_models_take_the_permissions_the_umask_gives_any_new_file(tmp_path):
    """A temporary file made by mkstemp is 0600: models (and the converted zoo weights) were their owner's alone."""
    umask = os.umask(0o022)
    try:
        model = _rrdbnet()
        for path in save_model(model, detect(model.state_dict()), tmp_path / "model"):
            assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)


def test_a_ctrl_c_as_a_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    """The temporary was opened before the block that removes it: a Ctrl-C as the open returned left an empty
    .model.pth.XXXXXXXX.tmp in a run's models/ for good (helper-84)."""
    real_open = os.open

    def then_ctrl_c(path, *args):
        descriptor = real_open(path, *args)
        if str(path).endswith(".tmp"):
            os.close(descriptor)
            raise KeyboardInterrupt
        return descriptor

    monkeypatch.setattr(os, "open", then_ctrl_c)
    model = _rrdbnet()
    with pytest.raises(KeyboardInterrupt):
        save_model(model, detect(model.state_dict()), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_saved_pth_holds_only_plain_tensors_under_params_ema(tmp_path):
    model = _rrdbnet()
    pth, _ = save_model(model, detect(model.state_dict()), tmp_path / "net")
    loaded = torch.load(pth, weights_only=True)
    assert list(loaded) == ["params_ema", METADATA_KEY]  # (what the .safetensors says, as strings)
    assert all(isinstance(value, str) for value in loaded[METADATA_KEY].values())
    state_dict = loaded["params_ema"]
    assert state_dict.keys() == model.state_dict().keys()
    for key, tensor in state_dict.items():
        assert type(tensor) is torch.Tensor and tensor.is_contiguous() and tensor.device.type == "cpu"
        # Each tensor owns its storage: no view into a bigger buffer was pickled.
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
        assert torch.equal(tensor, model.state_dict()[key])


def test_saved_safetensors_metadata(tmp_path):
    model = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=3, act_type="leakyrelu")
    spec = spec_for("SRVGGNetCompact", dict(num_feat=4, num_conv=1, upscale=3, act_type="leakyrelu"))
    _, st = save_model(model, spec, tmp_path / "net")
    with safetensors.safe_open(str(st), framework="pt") as file:
        metadata = file.metadata()
    assert metadata["architecture"] == "SRVGGNetCompact"
    assert metadata["scale"] == "3"
    assert json.loads(metadata["hyperparameters"]) == spec.hyperparameters
    assert metadata["vsr_version"] == "0.1.0"


def test_metadata_settles_what_shapes_cannot(tmp_path, caplog):
    """LeakyReLU has no weights: vsr's own .pth read as ReLU without a word (6 levels off); both files say it now,
    and a file that does not is said to be taken as ReLU."""
    config = dict(num_feat=4, num_conv=1, upscale=2, act_type="leakyrelu")
    torch.manual_seed(0)
    model = SRVGGNetCompact(**config).eval()
    pth, st = save_model(model, spec_for("SRVGGNetCompact", config), tmp_path / "net")
    x = torch.rand(1, 3, 6, 6) - 0.5  # negative values, where the two activations differ
    for path in (pth, st):
        loaded = load_model(path)
        assert loaded.spec.hyperparameters["act_type"] == "leakyrelu"
        with torch.no_grad():
            assert torch.equal(loaded.module(x), model(x))
    assert caplog.text == ""
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    assert load_model(tmp_path / "bare.pth").spec.hyperparameters["act_type"] == "relu"
    assert "ReLU or LeakyReLU (the weights cannot tell): taken as ReLU" in caplog.text


def test_metadata_contradicting_the_weights_loses(tmp_path, caplog):
    model = _rrdbnet()
    wrong = {"architecture": "RRDBNet", "hyperparameters": json.dumps({"num_feat": 64, "num_block": 23})}
    safetensors.torch.save_file(model.state_dict(), str(tmp_path / "net.safetensors"), metadata=wrong)
    with caplog.at_level(logging.WARNING, logger="vsr.models.checkpoint"):
        loaded = load_model(tmp_path / "net.safetensors")
    assert loaded.spec.hyperparameters["num_feat"] == 4
    assert "using the weights" in caplog.text
    assert _same_outputs(loaded.module, model)


# --- containers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["params", "params-ema", "state_dict", "model_state_dict", "model", "net",
                                       "bare", "module-prefixed", "netG-prefixed", "lightning", "net_g-and-net_d",
                                       "compiled-ddp", "netG-module", "generator-alone", "net_g-only"])
def test_containers_are_unwrapped(tmp_path, container):
    model = _rrdbnet()
    state_dict = model.state_dict()
    discriminator = {"conv0_0.weight": torch.zeros(4, 3, 3, 3), "linear1.bias": torch.zeros(100)}
    content = {
        "bare": state_dict,
        "module-prefixed": {f"module.{key}": value for key, value in state_dict.items()},
        "netG-prefixed": {f"netG.{key}": value for key, value in state_dict.items()},
        # A Lightning module holding both networks of a GAN, as its .ckpt saves them.
        "lightning": {"state_dict": {**{f"generator.{key}": value for key, value in state_dict.items()},
                                     **{f"discriminator.{key}": value for key, value in discriminator.items()}},
                      "epoch": 3, "global_step": 1200},
        "net_g-and-net_d": {**{f"net_g.module.{key}": value for key, value in state_dict.items()},
                            **{f"net_d.{key}": value for key, value in discriminator.items()}},
        # Stacked wrappers (torch.compile of a DDP model) and a generator saved alone were "unknown architecture";
        # a container of any other name alone ({"net_g": ...}) was "not a state dict" (spandrel unwraps it).
        "compiled-ddp": {f"_orig_mod.module.{key}": value for key, value in state_dict.items()},
        "netG-module": {"params_ema": {f"netG.module.{key}": value for key, value in state_dict.items()}},
        "generator-alone": {"state_dict": {f"generator.module.{key}": value for key, value in state_dict.items()}},
        "net_g-only": {"net_g": state_dict},
    }.get(container, {container: state_dict, "iter": 1000, "optimizer_name": "Adam"})
    torch.save(content, tmp_path / "net.pth")
    assert _same_outputs(load_model(tmp_path / "net.pth").module, model)


def test_params_ema_is_preferred_over_params(tmp_path):
    ema, raw = _rrdbnet(seed=1), _rrdbnet(seed=2)
    assert not _same_outputs(ema, raw)
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, tmp_path / "net.pth")
    assert _same_outputs(load_model(tmp_path / "net.pth").module, ema)
    assert read_state_dict(tmp_path / "net.pth").keys() == ema.state_dict().keys()


# --- refusals ------------------------------------------------------------------------------------------------------


class _CreatesMarker:
    """Unpickling this calls open(marker, "w"): a stand-in for arbitrary code in a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_pickle_with_objects_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"params_ema": _rrdbnet().state_dict(), "payload": _CreatesMarker(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match=r"evil\.pth: holds Python objects beyond tensors \(a whole pickled model"):
        load_model(tmp_path / "evil.pth")
    assert not marker.exists()
    # The payload is real: an unrestricted load does run it.
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


def _write_truncated_pth(tmp_path):
    pth, _ = save_model(_rrdbnet(), detect(_rrdbnet().state_dict()), tmp_path / "good")
    data = pth.read_bytes()
    (tmp_path / "bad.pth").write_bytes(data[: len(data) // 2])


def _write_truncated_safetensors(tmp_path):
    _, st = save_model(_rrdbnet(), detect(_rrdbnet().state_dict()), tmp_path / "good")
    data = st.read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("bad.pth", _write_truncated_pth),
        ("bad.safetensors", _write_truncated_safetensors),
        ("bad.pth", lambda tmp_path: (tmp_path / "bad.pth").write_text("this is a text file\n")),
        ("bad.ckpt", lambda tmp_path: (tmp_path / "bad.ckpt").write_bytes(b"")),
        ("bad.safetensors", lambda tmp_path: (tmp_path / "bad.safetensors").write_text("not json at all")),
    ],
    ids=["truncated-pth", "truncated-safetensors", "text", "empty", "garbage-safetensors"],
)
def test_unreadable_file_is_refused_with_its_path(tmp_path, name, write):
    write(tmp_path)
    with pytest.raises(ModelError) as raised:
        load_model(tmp_path / name)
    message = str(raised.value)
    # (torch's own words suggest unpickling the file: a torch file cut short is said to be so)
    reason = "cut short or damaged (a torch checkpoint is a zip archive" if write is _write_truncated_pth else (
        "not a torch checkpoint (neither the zip archive" if name.endswith((".pth", ".ckpt")) else
        "not a readable checkpoint (")
    assert message.startswith(f"{tmp_path / name}: {reason}")
    assert "\n" not in message


def test_a_torchscript_archive_is_one_line_that_does_not_suggest_unpickling(tmp_path, recwarn):
    """torch's refusal was two warning lines and a message inviting weights_only=False."""
    torch.jit.trace(SRVGGNetCompact(num_feat=4, num_conv=1).eval(), torch.rand(1, 3, 8, 8)).save(tmp_path / "jit.pt")
    with pytest.raises(ModelError) as raised:
        load_model(tmp_path / "jit.pt")
    assert str(raised.value) == (f"{tmp_path / 'jit.pt'}: a TorchScript archive (a compiled model), which vsr does not "
                                 "load; save the model's state_dict() as .pth or .safetensors")
    assert not [warning for warning in recwarn if "checkpoint" in warning.filename]


def test_files_that_are_no_pickle_are_not_said_to_hold_pickled_objects(tmp_path):
    """torch's weights-only refusal reads the same for JSON text and a pickled model; only a pickled object is one."""
    model = _rrdbnet()
    _, safetensors_path = save_model(model, detect(model.state_dict()), tmp_path / "net")
    (tmp_path / "renamed.pth").write_bytes(safetensors_path.read_bytes())
    (tmp_path / "page.pth").write_bytes(b"\xef\xbb\xbf<!DOCTYPE html><html>sign in</html>")
    (tmp_path / "text.pth").write_text('{"a": 1}')
    cases = {"renamed.pth": "a safetensors file (a length, then a JSON header), named as a torch file; name it "
                            "renamed.safetensors",
             "page.pth": "a web page (HTML), not a checkpoint",
             "text.pth": "not a torch checkpoint (neither the zip archive torch.save writes nor a pickle of tensors)"}
    for name, reason in cases.items():
        with pytest.raises(ModelError) as raised:
            load_model(tmp_path / name)
        assert str(raised.value).startswith(f"{tmp_path / name}: {reason}")


@pytest.mark.parametrize(
    ("content", "expected"),
    [([1, 2, 3], "holds a list"), ({"weights": 3}, "entry 'weights' holds a int"), ({}, "empty state dict")],
)
def test_file_that_is_not_a_state_dict_is_refused(tmp_path, content, expected):
    torch.save(content, tmp_path / "net.pth")
    with pytest.raises(ModelError, match=expected) as raised:
        load_model(tmp_path / "net.pth")
    assert str(tmp_path / "net.pth") in str(raised.value)


def test_missing_file_and_unsupported_suffix_name_the_file(tmp_path):
    with pytest.raises(ModelError, match=r"missing\.pth: no such checkpoint file"):
        load_model(tmp_path / "missing.pth")
    (tmp_path / "net.onnx").write_bytes(b"\0")
    with pytest.raises(ModelError, match=r"net\.onnx: unsupported checkpoint type '\.onnx'"):
        read_state_dict(tmp_path / "net.onnx")


def test_weights_of_an_unknown_architecture_are_refused_with_the_path(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match=r"other\.pth: unknown architecture: found keys encoder\.weight"):
        load_model(tmp_path / "other.pth")


def test_weights_that_do_not_fit_are_refused_with_path_and_key(tmp_path):
    state_dict = _rrdbnet().state_dict()
    del state_dict["conv_hr.bias"]
    torch.save(state_dict, tmp_path / "broken.pth")
    with pytest.raises(ModelError, match=r"broken\.pth: looks like RRDBNet .* does not fit it: missing conv_hr\.bias"):
        load_model(tmp_path / "broken.pth")


# --- atomic saving -------------------------------------------------------------------------------------------------


def test_saving_twice_overwrites_and_leaves_no_temporary_files(tmp_path):
    first, second = _rrdbnet(seed=1), _rrdbnet(seed=2)
    spec = detect(first.state_dict())
    save_model(first, spec, tmp_path / "net")
    save_model(second, spec, tmp_path / "net")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pth", "net.safetensors"]
    assert _same_outputs(load_model(tmp_path / "net.safetensors").module, second)


def test_failed_save_leaves_no_temporary_files(tmp_path):
    (tmp_path / "net.safetensors").mkdir()  # the target is a non-empty folder: the final rename must fail
    (tmp_path / "net.safetensors" / "keep").write_text("x")
    model = _rrdbnet()
    with pytest.raises(OutputError, match=r"net\.safetensors: cannot write checkpoint"):
        save_model(model, detect(model.state_dict()), tmp_path / "net")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("net.")) == []
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_module_that_does_not_match_the_spec_is_not_saved(tmp_path):
    model = _rrdbnet()
    with pytest.raises(ModelError, match="does not match RRDBNet"):
        save_model(model, spec_for("RRDBNet", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}), tmp_path / "net")
    assert list(tmp_path.iterdir()) == []


def test_a_web_page_in_a_checkpoints_place_is_said_to_be_one(tmp_path):
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(ModelError, match=r"page\.pth: a web page \(HTML\), not a checkpoint"):
        load_model(tmp_path / "page.pth")
