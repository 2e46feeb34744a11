"""Shared fixtures: an isolated weights cache for the whole run, and tiny checkpoints."""

import os

import pytest
import torch

from vsr.models.checkpoint import save_model
from vsr.models.detect import spec_for
from vsr.models.rrdbnet import RRDBNet


@pytest.fixture(scope="session", autouse=True)
def vsr_home(tmp_path_factory):
    """Keep the user's cache out of the tests; subprocesses (the `vsr` command) inherit it."""
    home = tmp_path_factory.mktemp("vsr-home")
    previous = os.environ.get("VSR_HOME")
    os.environ["VSR_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("VSR_HOME", None)
    else:
        os.environ["VSR_HOME"] = previous


@pytest.fixture(scope="session")
def tiny_rrdbnet_checkpoint(tmp_path_factory):
    """A ×4 RRDBNet with 8 features and one block, saved as vsr saves models; fast enough for video tests."""
    torch.manual_seed(0)
    hyperparameters = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    module = RRDBNet(**hyperparameters)
    pth, _ = save_model(module, spec_for("RRDBNet", hyperparameters), tmp_path_factory.mktemp("tiny") / "tiny-x4")
    return pth
