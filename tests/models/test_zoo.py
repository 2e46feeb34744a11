"""The model zoo: the cache, conversion of the package's ncnn weights, downloads from a real local HTTP server."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import resource
import shutil
import socket
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest
import torch

from tests.processes import VSR, run_vsr
from vsr.errors import ModelError, OptionError, OutputError, WeightsUnavailableError
from vsr.models import zoo
from vsr.models.checkpoint import read_state_dict, save_model
from vsr.models.detect import build, spec_for
from vsr.models.ncnn import convert_ncnn

TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}  # RRDBNet small enough to build in milliseconds


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VSR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VSR_DOWNLOAD_BASE", raising=False)
    monkeypatch.delenv("VSR_NCNN_DIR", raising=False)
    return tmp_path / "home"


def _cache_files(home: Path) -> list[str]:
    """Everything under the cache, hidden temporaries included."""
    return sorted(str(path.relative_to(home)) for path in home.rglob("*")) if home.exists() else []


# ---------------------------------------------------------------------------------------------------------------
# Cache location and the table
# ---------------------------------------------------------------------------------------------------------------


def test_cache_dir_follows_vsr_home_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VSR_HOME", str(tmp_path / "vsr-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_dir() == tmp_path / "vsr-home"
    monkeypatch.delenv("VSR_HOME")
    assert zoo.cache_dir() == tmp_path / "xdg" / "vsr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert zoo.cache_dir() == tmp_path / "user" / ".cache" / "vsr"


def test_weights_path_and_is_cached(home):
    assert zoo.weights_path("realesrgan-x4plus") == home / "weights" / "realesrgan-x4plus.safetensors"
    assert zoo.weights_path("realesrgan-x2plus") == home / "weights" / "RealESRGAN_x2plus.pth"
    assert not zoo.is_cached("realesrgan-x4plus")
    assert zoo.is_cached("bicubic")  # nothing to fetch
    with pytest.raises(ModelError, match="baseline"):
        zoo.weights_path("lanczos")


def test_table_is_consistent():
    names = [entry.name for entry in zoo.list_models()]
    assert len(names) == len(set(names)) and zoo.DEFAULT_MODEL in names
    assert zoo.MODELS[zoo.DEFAULT_MODEL].ncnn_model is not None  # the default works offline
    files = {entry.filename for entry in zoo.list_models() if entry.url}
    assert len(files) == len([entry for entry in zoo.list_models() if entry.url])  # no two downloads share a file
    assert zoo.MODELS["realesrgan-x4plus"].num_parameters == 16_697_987
    assert zoo.MODELS["realesr-animevideov3-x2"].num_parameters == 621_424
    assert zoo.MODELS["bicubic"].num_parameters == 0


@pytest.mark.parametrize(
    ("architecture", "hyperparameters"),
    [
        ("RRDBNet", {**TINY, "scale": 2}),
        ("RRDBNet", {**TINY, "scale": 1, "num_in_ch": 1, "num_out_ch": 1}),
        ("SRVGGNetCompact", {"num_feat": 8, "num_conv": 2, "upscale": 3, "act_type": "relu"}),
        ("SRVGGNetCompact", {"num_feat": 8, "num_conv": 3}),
    ],
)
def test_parameter_count_from_hyperparameters_matches_the_built_network(architecture, hyperparameters):
    module = build(spec_for(architecture, hyperparameters))
    assert zoo._count_parameters(architecture, hyperparameters) == sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Package entries: conversion into the cache
# ---------------------------------------------------------------------------------------------------------------


def test_conversion_into_the_cache_is_complete_and_reused(home):
    model = zoo.load("realesr-animevideov3", progress=False)
    target = zoo.weights_path("realesr-animevideov3")
    assert _cache_files(home) == ["weights", "weights/realesr-animevideov3.safetensors"]  # no temporaries left
    assert model.spec.architecture == "SRVGGNetCompact" and model.spec.scale == 4
    assert model.source.startswith("package:")
    # The cached file holds exactly the converted weights.
    param, weights = (zoo.ncnn_dir() / f"REALESRGAN_ANIMAVIDEOV3_UP4X{suffix}" for suffix in (".param", ".bin"))
    converted = convert_ncnn(param, weights).state_dict
    cached = read_state_dict(target)
    assert cached.keys() == converted.keys()
    assert all(torch.equal(cached[key], converted[key]) for key in converted)

    mtime = target.stat().st_mtime_ns
    again = zoo.load("realesr-animevideov3", progress=False)
    assert target.stat().st_mtime_ns == mtime  # not converted a second time
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_x2_and_x3_share_the_x4_weights_and_downscale(home):
    x4 = zoo.load("realesr-animevideov3", progress=False)
    mtime = zoo.weights_path("realesr-animevideov3").stat().st_mtime_ns
    x2 = zoo.load("realesr-animevideov3-x2", progress=False)
    x3 = zoo.load("realesr-animevideov3-x3", progress=False)
    assert zoo.weights_path("realesr-animevideov3-x2") == zoo.weights_path("realesr-animevideov3")
    assert zoo.weights_path("realesr-animevideov3").stat().st_mtime_ns == mtime
    assert (x2.spec.scale, x3.spec.scale) == (2, 3)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        four = x4(x)
        assert x3(x).shape == (1, 3, 36, 30)
        two = x2(x)
    assert two.shape == (1, 3, 24, 20)
    expected = torch.nn.functional.interpolate(four, size=(24, 20), mode="bicubic", align_corners=False)
    assert torch.allclose(two, expected, atol=1e-6)


@pytest.mark.slow
def test_default_model_is_the_full_x4plus(home):
    model = zoo.load(zoo.DEFAULT_MODEL, progress=False)
    assert model.spec.architecture == "RRDBNet" and model.spec.hyperparameters["num_block"] == 23
    assert model.num_parameters == 16_697_987


@pytest.fixture
def package_copy(tmp_path, monkeypatch) -> Path:
    """The animevideov3 files copied into a folder that VSR_NCNN_DIR points at."""
    folder = tmp_path / "ncnn"
    folder.mkdir()
    for suffix in (".param", ".bin"):
        shutil.copy(zoo.ncnn_dir() / f"REALESRGAN_ANIMAVIDEOV3_UP4X{suffix}", folder)
    monkeypatch.setenv("VSR_NCNN_DIR", str(folder))
    return folder


def test_a_corrupted_package_file_is_refused(home, package_copy):
    weights = package_copy / "REALESRGAN_ANIMAVIDEOV3_UP4X.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit inside a weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as error:
        zoo.load("realesr-animevideov3", progress=False)
    assert "\n" not in str(error.value) and str(weights) in str(error.value)
    assert not zoo.is_cached("realesr-animevideov3")
    assert [name for name in _cache_files(home) if name != "weights"] == []


def test_a_missing_package_says_where_to_put_the_weights(home, package_copy):
    (package_copy / "REALESRGAN_ANIMAVIDEOV3_UP4X.bin").unlink()
    with pytest.raises(WeightsUnavailableError) as error:
        zoo.fetch("realesr-animevideov3")
    assert str(zoo.weights_path("realesr-animevideov3")) in str(error.value)


def test_a_wrong_network_in_the_cache_is_refused(home):
    target = zoo.weights_path("realesr-animevideov3")
    save_model(build(spec_for("RRDBNet", TINY)), spec_for("RRDBNet", TINY), target)
    with pytest.raises(ModelError, match="expected SRVGGNetCompact"):
        zoo.load("realesr-animevideov3", progress=False)


# ---------------------------------------------------------------------------------------------------------------
# Downloads, from a real HTTP server on 127.0.0.1
# ---------------------------------------------------------------------------------------------------------------


class _Server:
    """Serves `files` (name → bytes); names in `truncated` get a Content-Length 1000 bytes longer than the body."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncated: set[str] = set()
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = urllib.parse.urlsplit(self.path).path.lstrip("/")
                server.requests.append(name)
                server.authorizations.append(self.headers.get("Authorization"))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (1000 if name in server.truncated else 0)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(home, monkeypatch):
    server = _Server()
    monkeypatch.setenv("VSR_DOWNLOAD_BASE", server.url)
    yield server
    server.close()


@pytest.fixture
def tiny_checkpoint(tmp_path) -> bytes:
    spec = spec_for("RRDBNet", TINY)
    pth, _ = save_model(build(spec), spec, tmp_path / "made" / "tiny_x4.pth")
    return pth.read_bytes()


@pytest.fixture
def tiny_entry(monkeypatch, tiny_checkpoint) -> zoo.ZooEntry:
    """A table row like the release entries, for a file small enough to serve in a test."""
    entry = zoo.ZooEntry(
        name="tiny-x4",
        architecture="RRDBNet",
        scale=4,
        description="test",
        license="test",
        source="test",
        hyperparameters={**TINY, "scale": 4},
        filename="tiny_x4.pth",
        url="https://example.invalid/tiny_x4.pth",
        sha256=hashlib.sha256(tiny_checkpoint).hexdigest(),
        size=len(tiny_checkpoint),
    )
    monkeypatch.setitem(zoo.MODELS, entry.name, entry)
    return entry


def test_download_verifies_and_caches(home, server, tiny_entry, tiny_checkpoint):
    server.files["tiny_x4.pth"] = tiny_checkpoint
    model = zoo.load("tiny-x4", progress=True)  # stderr is not a tty under pytest: the bar is off
    assert model.spec.architecture == "RRDBNet" and model.spec.scale == 4
    with torch.no_grad():
        assert model(torch.rand(1, 3, 5, 6)).shape == (1, 3, 20, 24)
    assert _cache_files(home) == ["weights", "weights/tiny_x4.pth"]
    assert zoo.weights_path("tiny-x4").read_bytes() == tiny_checkpoint
    zoo.load("tiny-x4", progress=False)
    assert server.requests == ["tiny_x4.pth"]  # served once, then read from the cache


def test_a_damaged_cached_copy_is_said_as_such_and_fetched_again_when_asked(home, server, tiny_entry, tiny_checkpoint):
    """A cached file cut short was "cached" for good: its load failed without saying it is the cache's, and
    `vsr models --download` took it for fetched (helper-82)."""
    server.files["tiny_x4.pth"] = tiny_checkpoint
    zoo.weights_path("tiny-x4").parent.mkdir(parents=True)
    zoo.weights_path("tiny-x4").write_bytes(tiny_checkpoint[:1000])
    with pytest.raises(ModelError, match="it is the cached tiny-x4: `vsr models --download tiny-x4` fetches it again"):
        zoo.load("tiny-x4", progress=False)
    assert zoo.fetch("tiny-x4", progress=False, check=True).read_bytes() == tiny_checkpoint
    assert server.requests == ["tiny_x4.pth"]
    zoo.fetch("tiny-x4", progress=False, check=True)  # (whole: not fetched again)
    assert server.requests == ["tiny_x4.pth"]


def test_a_truncated_download_leaves_nothing(home, server, tiny_entry, tiny_checkpoint):
    server.files["tiny_x4.pth"] = tiny_checkpoint
    server.truncated.add("tiny_x4.pth")
    with pytest.raises(WeightsUnavailableError, match="stopped at"):
        zoo.fetch("tiny-x4", progress=False)
    assert _cache_files(home) == ["weights"]


def test_corrupted_content_leaves_nothing(home, server, tiny_entry, tiny_checkpoint):
    data = bytearray(tiny_checkpoint)
    data[-100] ^= 0xFF
    server.files["tiny_x4.pth"] = bytes(data)
    with pytest.raises(ModelError, match="sha256"):
        zoo.fetch("tiny-x4", progress=False)
    assert _cache_files(home) == ["weights"]


def test_a_published_size_mismatch_is_refused(home, server, tiny_checkpoint):
    server.files["realesr-general-x4v3.pth"] = tiny_checkpoint
    with pytest.raises(ModelError, match="expected 4885111"):
        zoo.fetch("realesr-general-x4v3", progress=False)
    assert _cache_files(home) == ["weights"]


def test_without_a_published_hash_the_network_itself_is_checked(home, server, tiny_checkpoint):
    assert zoo.MODELS["realesrnet-x4plus"].sha256 is None
    server.files["RealESRNet_x4plus.pth"] = b"not a checkpoint at all" * 100
    with pytest.raises(ModelError, match="not a usable checkpoint"):
        zoo.fetch("realesrnet-x4plus", progress=False)
    server.files["RealESRNet_x4plus.pth"] = tiny_checkpoint  # a valid checkpoint, but not RRDBNet 64/23
    with pytest.raises(ModelError, match="expected RRDBNet"):
        zoo.fetch("realesrnet-x4plus", progress=False)
    assert _cache_files(home) == ["weights"]


def test_a_missing_file_on_the_server_is_unavailable(home, server, tiny_entry):
    with pytest.raises(WeightsUnavailableError, match="404"):
        zoo.fetch("tiny-x4", progress=False)
    assert _cache_files(home) == ["weights"]


def test_an_unreachable_server_names_the_url_and_the_path(home, monkeypatch, tiny_entry):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("VSR_DOWNLOAD_BASE", f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsUnavailableError) as error:
        zoo.load("tiny-x4", progress=False)
    message = str(error.value)
    assert "\n" not in message
    assert f"http://127.0.0.1:{port}/tiny_x4.pth" in message
    assert str(zoo.weights_path("tiny-x4")) in message
    assert _cache_files(home) == ["weights"]


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints by URL, from the same server
# ---------------------------------------------------------------------------------------------------------------


def _url_cache_files(home: Path) -> list[str]:
    """The checkpoints cached from URLs (without the `.url` file beside each that names its URL)."""
    return [name for name in _cache_files(home)
            if name.startswith("weights/url/") and name.count("/") == 3 and not name.endswith(zoo.URL_FILE)]


def test_a_url_is_downloaded_once_and_then_works_offline(home, server, tiny_checkpoint):
    server.files["releases/4x-Tiny.pth"] = tiny_checkpoint
    url = f"{server.url}/releases/4x-Tiny.pth?download=true"  # as Hugging Face links are written
    model = zoo.load(url, progress=False)
    assert (model.spec.architecture, model.spec.scale) == ("RRDBNet", 4)
    assert (model.name, model.source) == ("4x-Tiny", url)
    cached = zoo.url_weights_path(url)
    assert _url_cache_files(home) == [str(cached.relative_to(home))] and cached.name == "4x-Tiny.pth"
    assert cached.read_bytes() == tiny_checkpoint and zoo.checkpoint_url(cached) == zoo.shown_url(url)
    server.close()  # offline from here on: the cache answers
    # Stopped after the download's rename, before its record: every later run used the file, none wrote the record
    # (helper-84).
    (cached.parent / zoo.URL_FILE).unlink()
    again = zoo.load(url, progress=False, scale=4)
    assert server.requests == ["releases/4x-Tiny.pth"] and zoo.checkpoint_url(cached) == zoo.shown_url(url)
    for name, tensor in model.module.state_dict().items():
        assert torch.equal(tensor, again.module.state_dict()[name]), name


def test_a_urls_token_and_password_are_not_shown_and_a_dot_name_is_listed(home, server, tiny_checkpoint):
    secret = server.url.replace("http://", "http://me:pw@") + "/missing.pth?token=s3cret"
    with pytest.raises(WeightsUnavailableError) as error:
        zoo.load(secret, progress=False)
    assert "s3cret" not in str(error.value) and "pw" not in str(error.value)
    assert f"{server.url}/missing.pth?…" in str(error.value)
    # A user and password in the URL are sent as Basic authorization (urllib took them for part of the host name:
    # "Name or service not known").
    server.files["private.pth"] = tiny_checkpoint
    zoo.load(server.url.replace("http://", "http://me:p%40ss@") + "/private.pth", progress=False)
    assert server.authorizations[-1] == "Basic " + base64.b64encode(b"me:p@ss").decode()
    server.files["..pth"] = tiny_checkpoint  # (a hidden name: it was cached, and left out of `vsr models`)
    zoo.load(f"{server.url}/..pth?token=s3cret", progress=False)
    (listed,) = [checkpoint for checkpoint in zoo.url_checkpoints() if checkpoint.name != "private.pth"]
    assert listed.name == "..pth" and zoo.checkpoint_url(listed) == f"{server.url}/..pth?…"
    # Nor printed by `vsr models --download`, nor kept on the disk (helper-82).
    server.files["other.pth"] = tiny_checkpoint
    result = run_vsr("models", "--download", server.url.replace("http://", "http://me:pw@") + "/other.pth?token=s3cret")
    assert result.returncode == 0 and result.stdout.startswith(f"{server.url}/other.pth?…: "), result.stderr
    assert not [path for path in home.rglob("*")
                if path.is_file() and any(secret in path.read_bytes() for secret in (b"s3cret", b"me:pw"))]


def test_a_url_whose_record_cannot_be_written_is_not_kept_without_it(home, server, tiny_checkpoint):
    """A full disk (here: a folder in its place) at the .url record was a traceback, and the checkpoint stayed
    cached, never to say where it came from."""
    server.files["model.pth"] = tiny_checkpoint
    url = f"{server.url}/model.pth"
    (zoo.url_weights_path(url).parent / zoo.URL_FILE).mkdir(parents=True)
    with pytest.raises(OutputError, match="cannot write there"):
        zoo.load(url, progress=False)
    assert not zoo.url_weights_path(url).exists()


def test_a_conversion_into_a_full_cache_names_the_cache_and_the_room_it_needs(home, tmp_path):
    """It named a temporary folder, gone by then. The file-size limit fills the disk here."""
    image = tmp_path / "in.png"
    image.write_bytes(Path("samples/bbb_frame.png").read_bytes())
    limit = (1 << 20, resource.RLIM_INFINITY)
    done = subprocess.run([*VSR, "upscale", image, "-m", "realesr-animevideov3", "-o", tmp_path / "out.png"],
                          capture_output=True, text=True, env={**os.environ, "VSR_HOME": str(home)},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limit))
    assert done.returncode == OutputError.exit_code and done.stderr.strip().splitlines() == [
        f"vsr: error: {home / 'weights'}: cannot write the converted realesr-animevideov3 there (OSError: [Errno 27] "
        "File too large); it takes about 5 MB free for a moment"]
    assert _cache_files(home) == ["weights"]


def test_two_urls_with_the_same_file_name_are_cached_apart(home, server, tmp_path):
    for scale in (2, 4):
        spec = spec_for("RRDBNet", {**TINY, "scale": scale})
        pth, _ = save_model(build(spec), spec, tmp_path / f"x{scale}" / "model.pth")
        server.files[f"x{scale}/model.pth"] = pth.read_bytes()
    assert [zoo.load(f"{server.url}/x{scale}/model.pth").spec.scale for scale in (2, 4)] == [2, 4]
    assert [zoo.load(f"{server.url}/x{scale}/model.pth").spec.scale for scale in (2, 4)] == [2, 4]
    assert len(_url_cache_files(home)) == 2 and len(server.requests) == 2


def test_a_url_that_serves_no_checkpoint_leaves_nothing_in_the_cache(home, server):
    server.files["model.pth"] = b"\n<!DOCTYPE html><html><body>Sign in to download</body></html>"
    with pytest.raises(ModelError, match="model.pth: the server sent a web page, not a checkpoint") as error:
        zoo.load(f"{server.url}/model.pth", progress=False)
    assert "\n" not in str(error.value)
    server.files["model.pth"] = b"PK\x03\x04 a zip, but not of a checkpoint"
    with pytest.raises(ModelError, match="model.pth: not a usable checkpoint"):
        zoo.load(f"{server.url}/model.pth", progress=False)
    with pytest.raises(WeightsUnavailableError, match=r"missing.safetensors \(HTTP 404"):
        zoo.load(f"{server.url}/missing.safetensors", progress=False)
    assert _cache_files(home) == ["weights", "weights/url"]  # no file, no temporary, no folder of its own


def test_a_full_disk_during_a_download_is_one_line_and_leaves_nothing(home, server, tiny_checkpoint, tmp_path):
    """The file-size limit makes the cache's disk full (EFBIG, as ENOSPC would) once 2000 bytes are written."""
    server.files["model.pth"] = tiny_checkpoint
    assert len(tiny_checkpoint) > 2000
    image = tmp_path / "in.png"
    image.write_bytes(Path("samples/bbb_frame.png").read_bytes())
    done = subprocess.run([*VSR, "upscale", image, "-m", f"{server.url}/model.pth", "-o", tmp_path / "out.png"],
                          capture_output=True, text=True, env={**os.environ, "VSR_HOME": str(home)},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY)))
    assert done.returncode == OutputError.exit_code and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"vsr: error: {zoo.url_weights_path(f'{server.url}/model.pth').parent}: cannot write the download of "
        f"{server.url}/model.pth there (File too large)"]
    assert _cache_files(home) == ["weights", "weights/url"] and not (tmp_path / "out.png").exists()


def test_malformed_and_overlong_urls_are_one_line_or_a_shorter_name(home, server, tiny_checkpoint):
    for url, message in [("http://[::1/x.pth", "not a URL (Invalid IPv6 URL)"),
                         ("http://127.0.0.1/a%00.pth", "not a URL (a NUL character in its path)")]:
        with pytest.raises(ModelError, match=re.escape(f"{url}: {message}")):
            zoo.load(url, progress=False)
    long_name = "m" * 240 + ".pth"  # the cache keeps 200 bytes of it, so that its temporary fits in 255
    server.files[long_name] = tiny_checkpoint
    assert zoo.load(f"{server.url}/{long_name}", progress=False).spec.scale == 4
    assert [len(Path(name).name) for name in _url_cache_files(home)] == [200]


def test_a_url_whose_name_does_not_say_the_format_is_refused_before_downloading(home, server):
    with pytest.raises(ModelError, match=r"'download' does not say the checkpoint's format.*give its path to -m"):
        zoo.load(f"{server.url}/file/d/1abc/download", progress=False)
    assert server.requests == [] and _cache_files(home) == []


# ---------------------------------------------------------------------------------------------------------------
# Names, paths and baselines
# ---------------------------------------------------------------------------------------------------------------


def test_baselines_upscale_without_weights(home):
    bicubic = zoo.load("bicubic")
    assert bicubic.spec.architecture == "Resample" and bicubic.spec.scale == 4 and bicubic.num_parameters == 0
    x = torch.rand(1, 3, 6, 7)
    assert bicubic(x).shape == (1, 3, 24, 28)
    lanczos = zoo.load("lanczos", scale=2)
    assert lanczos.spec.scale == 2 and lanczos(x).shape == (1, 3, 12, 14)
    with pytest.raises(OptionError, match="scale"):
        zoo.load("bicubic", scale=0)
    assert _cache_files(home) == []


def test_unknown_name_lists_the_known_ones(home):
    with pytest.raises(ModelError, match="realesrgan-x4plus") as error:
        zoo.load("no-such-model")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("typed, meant", [("realesrgan-x4plu", "realesrgan-x4plus"),
                                          ("RealESRGAN_x4plus", "realesrgan-x4plus"),
                                          ("realesr-animevideo3", "realesr-animevideov3"), ("no-such-model", None)])
def test_a_mistyped_name_says_which_one_was_meant(home, typed, meant):
    """Fifteen names followed it, the one meant among them, and nothing to tell it by."""
    for load in (zoo.load, zoo.get_entry):  # (`vsr upscale -m`, `vsr models --download`)
        with pytest.raises(ModelError, match=f"^unknown model {typed!r}") as error:
            load(typed)
        assert (f"(did you mean {meant}?)" in str(error.value)) if meant else "did you mean" not in str(error.value)


def test_a_checkpoint_path_that_is_not_there_is_named_without_the_zoo(home, tmp_path):
    """It was "unknown model 'runs/psnr/modl.pth': neither a file nor a known name (" and the fifteen zoo names."""
    missing = tmp_path / "runs" / "modl.pth"
    with pytest.raises(ModelError, match=f"^{re.escape(str(missing))}: no such checkpoint file \\(a model is a "
                                         "checkpoint file, a training run's folder, a zoo name or a URL\\)$"):
        zoo.load(missing)
    folder = tmp_path / "weights.safetensors"
    folder.mkdir()
    with pytest.raises(ModelError, match="weights.safetensors: is a folder, not a checkpoint file"):
        zoo.load(folder)


def test_a_folder_given_as_a_model_is_a_runs_model_or_names_the_checkpoints_in_it(home, tmp_path):
    """`-m runs/psnr`, a training run's folder, said "unknown model 'runs/psnr': neither a file nor a known name" and
    the fifteen zoo names; then that it is a folder. It is its model.pth (tests/training/test_trainer.py: or, while
    it trains, its state.pt); another folder names the checkpoints in it."""
    run = tmp_path / "runs" / "psnr"
    spec = spec_for("RRDBNet", TINY)
    save_model(build(spec), spec, run / "model.pth")  # (and model.safetensors beside it)
    (run / "train.csv").write_text("iteration\n")
    loaded = zoo.load(run)
    assert (loaded.source, loaded.name, loaded.spec) == (str(run / "model.pth"), "psnr", spec)
    (run / "model.pth").unlink()
    assert zoo.load(run).source == str(run / "model.safetensors")
    blends = tmp_path / "blends"
    save_model(build(spec), spec, blends / "a.pth")
    with pytest.raises(ModelError) as error:
        zoo.load(blends)
    assert str(error.value) == (f"{blends}: is a folder, not a checkpoint file; give a checkpoint file in it: "
                                f"{blends / 'a.pth'}, {blends / 'a.safetensors'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match=f"^{re.escape(str(empty))}: is a folder, not a checkpoint file; a model is a "
                                         "checkpoint file, a training run's folder, a zoo name or a URL$"):
        zoo.load(empty)


def test_a_checkpoint_path_loads_directly(home, tmp_path):
    spec = spec_for("RRDBNet", {**TINY, "scale": 2})
    _, safetensors_path = save_model(build(spec), spec, tmp_path / "mine.safetensors")
    model = zoo.load(safetensors_path)
    assert model.spec.scale == 2
    with pytest.raises(OptionError, match="×2"):
        zoo.load(safetensors_path, scale=4)


def test_a_network_entry_refuses_another_scale_and_suggests_one(home):
    with pytest.raises(OptionError, match="realesr-animevideov3-x2"):
        zoo.load("realesr-animevideov3", scale=2)


def test_concurrent_conversions_leave_one_whole_file(home):
    """Several fetches at once (threads here, processes in real life) each write their own temporary and rename it."""
    results, errors = [], []

    def fetch():
        try:
            results.append(zoo.fetch("realesr-animevideov3"))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(results)) == 1
    assert _cache_files(home) == ["weights", "weights/realesr-animevideov3.safetensors"]
    assert zoo.load("realesr-animevideov3").spec.architecture == "SRVGGNetCompact"
