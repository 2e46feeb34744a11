"""Which x265 CRF gives the quality of x264's CRF 18 on upscaled 10-bit frames: size, PSNR and SSIM of each.

    ffmpeg -i samples/bbb_sample.mp4 -an -pix_fmt yuv420p10le -c:v ffv1 sample10.mkv
    vsr upscale sample10.mkv -m realesrgan-x4plus --codec libx264 --encoder-option qp=0 -o lossless.mkv
    python bench/crf_match.py lossless.mkv --crf 20 22 23 24

Each reference (a lossless 10-bit video, as above) is encoded as vsr encodes (PyAV, preset medium, 4:2:0 10-bit) with
libx264 at CRF 18 and libx265 at each CRF given, and judged against it by the ffmpeg command's psnr and ssim filters
(frames paired by number). One JSON line per encode.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

import av


def encode(reference: Path, output: Path, encoder: str, crf: int) -> None:
    with av.open(str(reference)) as source, av.open(str(output), "w") as target:
        stream = source.streams.video[0]
        encoded = target.add_stream(encoder, rate=stream.average_rate)
        encoded.width, encoded.height, encoded.pix_fmt = stream.width, stream.height, "yuv420p10le"
        encoded.codec_context.thread_type = "AUTO"
        options = {"crf": str(crf), "preset": "medium"}
        if encoder == "libx265":
            options["x265-params"] = "log-level=error"
        encoded.codec_context.options = options
        for frame in source.decode(stream):
            frame = frame.reformat(format="yuv420p10le")
            frame.pts = None
            target.mux(encoded.encode(frame))
        target.mux(encoded.encode())


def compared(reference: Path, output: Path, metric: str) -> str:
    """ffmpeg's summary line of `metric` (psnr or ssim) for `output` against `reference`."""
    graph = f"[0:v]setpts=N[a];[1:v]setpts=N[b];[a][b]{metric}"
    run = subprocess.run(["ffmpeg", "-nostdin", "-i", str(output), "-i", str(reference), "-lavfi", graph, "-f", "null",
                          "-"], capture_output=True, text=True, check=True)
    return run.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("references", nargs="+", type=Path)
    parser.add_argument("--crf", nargs="+", type=int, default=[20, 22, 23, 24], help="x265 CRFs to try")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for reference in arguments.references:
            for encoder, crf in [("libx264", 18)] + [("libx265", crf) for crf in arguments.crf]:
                output = Path(folder) / f"{reference.stem}.{encoder}.{crf}.mkv"
                encode(reference, output, encoder, crf)
                psnr = compared(reference, output, "psnr")
                ssim = compared(reference, output, "ssim")
                print(json.dumps({"reference": reference.name, "encoder": encoder, "crf": crf,
                                  "bytes": output.stat().st_size,
                                  "psnr_y": float(re.search(r"PSNR y:([\d.]+)", psnr).group(1)),
                                  "ssim": float(re.search(r"All:([\d.]+)", ssim).group(1))}), flush=True)


if __name__ == "__main__":
    main()
