"""The public Python API. Everything the command line can do goes through here.

    import vsr
    vsr.upscale_image("photo.png", "photo.x4.png")
    result = vsr.upscale_video("movie.mp4", options=vsr.UpscaleOptions(model="realesr-animevideov3"))
    result = vsr.upscale_video_in_segments("movie.mp4", devices="0,1")  # one worker per GPU, resumable segments
    vsr.compare_videos("movie.mp4", "movie.x4.mp4")  # → movie.x4.compare.mp4, bicubic | upscaled
    engine = vsr.make_engine(vsr.UpscaleOptions())  # the model loaded once, for many calls (engine=engine)
    bigger = vsr.upscale_array(pixels, engine=engine)  # a numpy H×W×3 array in memory, no files

The work itself lives in vsr.pipelines.upscale (so that batch jobs and Ray tasks, in pipelines/, can use it
without importing upwards); this module is the stable name users import.
"""

from vsr.pipelines.upscale import (
    DEFAULT_SEGMENT_SECONDS,
    IMAGE_SUFFIXES,
    UpscaleOptions,
    VideoOptions,
    VideoResult,
    check_input,
    check_output,
    default_output_path,
    denoise_blend,
    is_image,
    load_model,
    make_engine,
    make_image_engine,
    output_label,
    parse_time,
    planned_output,
    scale_label,
    upscale_array,
    upscale_image,
    upscale_video,
    video_codec,
)
from vsr.pipelines.progress import KeptWarnings, warnings_kept
from vsr.pipelines.crop import parse_crop
from vsr.pipelines.dedup import parse_dedup
from vsr.pipelines.segments import upscale_video_in_segments
from vsr.compare import CompareOptions, compare_videos

__all__ = [
    "CompareOptions",
    "KeptWarnings",
    "DEFAULT_SEGMENT_SECONDS",
    "IMAGE_SUFFIXES",
    "UpscaleOptions",
    "VideoOptions",
    "VideoResult",
    "check_input",
    "check_output",
    "compare_videos",
    "default_output_path",
    "denoise_blend",
    "is_image",
    "load_model",
    "make_engine",
    "make_image_engine",
    "output_label",
    "parse_crop",
    "parse_dedup",
    "parse_time",
    "planned_output",
    "scale_label",
    "upscale_array",
    "upscale_image",
    "upscale_video",
    "upscale_video_in_segments",
    "video_codec",
    "warnings_kept",
]
