"""vsr: video super-resolution with ESRGAN.

The public API (`upscale_video`, `upscale_image`, `load_model`, ...) is imported lazily, so that `import vsr.errors`
or `import vsr.models.rrdbnet` stays light and the layers below never import the layers above.
"""

__version__ = "0.1.0"

__all__ = [
    "UpscaleOptions",
    "VideoOptions",
    "VideoResult",
    "upscale_image",
    "upscale_video",
    "upscale_video_in_segments",
    "upscale_array",
    "make_engine",
    "warnings_kept",
    "compare_videos",
    "CompareOptions",
    "load_model",
    "VsrError",
    "Cancelled",
]

_API = {"UpscaleOptions", "VideoOptions", "VideoResult", "upscale_image", "upscale_video", "upscale_video_in_segments",
        "upscale_array", "make_engine", "warnings_kept", "load_model", "compare_videos", "CompareOptions"}
_ERRORS = {"VsrError", "Cancelled"}


def __getattr__(name: str):
    if name in _API:
        from vsr import api

        return getattr(api, name)
    if name in _ERRORS:
        from vsr import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'vsr' has no attribute {name!r}")
