"""What this machine computes fast and holds, for the layers that choose a precision or a batch (the engine, the
trainer)."""

import ctypes
import functools
from pathlib import Path

import torch

from vsr.errors import InputError


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX: Intel since Cooper Lake, AMD since Zen 4).

    There oneDNN runs bf16 convolutions at about twice its fp32 rate (measured on a 2-core AMD EPYC: 2.2× for
    RRDBNet ×4 and animevideov3 inference, 1.7× for a small RRDBNet's training steps under autocast); elsewhere it
    emulates bf16, 2.5× (AVX-512) to 6× (AVX2) slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so asked for with care
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def available_memory() -> int | None:
    """Bytes of memory this process may still take: Linux's MemAvailable, or less where the process's cgroup (a
    container's limit) leaves less. None where neither can be read (other systems)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    for limit_file, usage_file in (("memory.max", "memory.current"),  # cgroup v2, then v1
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = int(Path("/sys/fs/cgroup", usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit():  # "max": no limit
            available = min(available, max(0, int(limit) - usage))
        break
    return available


def give_back_freed_memory() -> None:
    """Hand back to the system what this process has freed and still holds (glibc's malloc_trim; nothing where the
    C library has none). glibc keeps what threads free in their own arenas: reading 200 1024×768 PNGs into the
    training pool (450 MB of pixels) left 1.3 GB more resident, freed by FFmpeg's decoding threads and never used
    again, so a pool measured by its pixels passed its share of memory three times over."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # (not glibc: macOS, musl, Windows)
        return None


def in_bytes(count: int) -> str:
    """A size in memory, in words: "1.2 GB", "350.0 MB"."""
    return f"{count / 1e9:.1f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


def check_memory(need: int, what: str, remedy: str = "") -> None:
    """An InputError where `need` bytes are more than this process may take (`available_memory`): on
    Linux running out is no exception to catch but the kernel's OOM killer, and torch asked for 49 GB says only
    that its allocator failed. `what`: the work in words, "path: a 16000x16000 image upscaled to 64000x64000";
    `remedy`: what to do about it, if anything."""
    available = available_memory()
    if available is not None and need > available:
        raise InputError(f"{what} needs about {in_bytes(need)} of memory, more than the {in_bytes(available)} "
                         f"available here{'; ' + remedy if remedy else ''}")
