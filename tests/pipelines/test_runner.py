"""The streaming runner: order, bounded queues, and errors from any stage."""

import threading

import pytest
import torch

from vsr.pipelines.frames import FrameBatch
from vsr.pipelines.runner import run_pipeline


def make_batches(count, produced=None):
    for i in range(count):
        if produced is not None:
            produced.append(i)
        yield FrameBatch(torch.full((1, 3, 2, 2), i, dtype=torch.uint8), [i * 10])


def double(batch):
    return FrameBatch(batch.frames * 2, batch.pts)


def test_batches_come_out_in_order_with_their_timestamps():
    written = []
    times = run_pipeline(make_batches(20), double, written.append)
    assert [b.pts for b in written] == [[i * 10] for i in range(20)]
    assert [int(b.frames[0, 0, 0, 0]) for b in written] == [2 * i for i in range(20)]
    assert times.frames == 20


def test_decoder_cannot_run_ahead_of_a_slow_encoder():
    produced, written = [], []
    release = threading.Event()
    max_ahead = []

    def slow_write(batch):
        # The first write blocks until the decoder has had every chance to run ahead.
        if not written:
            release.wait(timeout=1.0)
        max_ahead.append(len(produced) - len(written))
        written.append(batch)

    run_pipeline(make_batches(50, produced), double, slow_write, queue_size=2)
    # Two bounded queues of 2, plus one batch in each stage's hands: never the whole video.
    assert max(max_ahead) <= 2 + 2 + 3
    assert len(written) == 50


@pytest.mark.parametrize("stage", ["decode", "upscale", "write"])
def test_an_error_in_any_stage_stops_the_run_and_reaches_the_caller(stage):
    def batches():
        for i, batch in enumerate(make_batches(100)):
            if stage == "decode" and i == 5:
                raise ValueError("broken decode")
            yield batch

    def upscale(batch):
        if stage == "upscale" and batch.pts[0] == 50:
            raise ValueError("broken upscale")
        return batch

    def write(batch):
        if stage == "write" and batch.pts[0] == 50:
            raise ValueError("broken write")

    before = threading.active_count()
    with pytest.raises(ValueError, match=f"broken {stage}"):
        run_pipeline(batches(), upscale, write)
    assert threading.active_count() == before
