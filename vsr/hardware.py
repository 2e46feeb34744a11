"""What this machine computes fast, for the layers that choose a precision (the engine, the trainer)."""

import torch


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX: Intel since Cooper Lake, AMD since Zen 4).

    There oneDNN runs bf16 convolutions at about twice its fp32 rate (measured on a 2-core AMD EPYC: 2.2× for
    RRDBNet ×4 and animevideov3 inference, 1.7× for a small RRDBNet's training steps under autocast); elsewhere it
    emulates bf16, 2.5× (AVX-512) to 6× (AVX2) slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so asked for with care
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)
