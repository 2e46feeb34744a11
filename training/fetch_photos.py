"""Fetch the natural photographs of four Debian wallpaper packages, as HR images to train and validate on.

    python -m vsr.training.fetch_photos /work/photos            # apt-get download, on Debian or Ubuntu
    python -m vsr.training.fetch_photos /work/photos --debs DIR # .deb files fetched before

The packages are fetched with `apt-get download` (no root, nothing installed) and unpacked with `dpkg-deb -x`.
They also hold renders, logos and abstract art, which teach a super-resolution model the wrong things, so the
photographs are named one by one in PHOTOS (chosen by looking at every picture). Each is halved by 2×2 area
averaging: the originals are JPEG-compressed and often soft, and halving averages away most of the compression
noise and blur, leaving a fair ground truth. They are written as 8-bit PNGs named `<package>-<picture>.png`.

DEST/LICENSES/ATTRIBUTION.txt lists every picture's package, version, source file, author and license (from the
package's machine-readable copyright file, and for Plasma from each wallpaper's metadata.json), and each package's
full copyright file is copied next to it. DEST/validation.txt names the photos `--set val_holdout=6` holds out.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from torch.nn import functional as F

from vsr.errors import InputError, OutputError, VsrError
from vsr.pipelines.images import Image, read_image, write_image

log = logging.getLogger("vsr.training.fetch_photos")

# package → (short name for file names, photographs inside it, relative to the unpacked package).
_PLASMA = "usr/share/wallpapers/{}/contents/images/{}"
PHOTOS: dict[str, tuple[str, list[str]]] = {
    "lomiri-wallpapers-16.04": ("lomiri", [
        f"usr/share/backgrounds/{name}.jpg" for name in (
            "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
            "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "analogpattern_by_Peter_Nerlich",
            "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
            "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
            "sunset_by_Aitzol_Berasategi",
        )  # umang_by_Abhishek_Mudgal is a digital gradient
    ]),
    "lxqt-themes": ("lxqt", [
        f"usr/share/lxqt/wallpapers/{name}" for name in (
            "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
            "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg",
        )  # the others are logos, origami and triangle patterns
    ]),
    "plasma-workspace-wallpapers": ("plasma", [
        _PLASMA.format(name, "2560x1600.jpg") for name in (
            "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
            "OneStandsOut", "Path", "summer_1am",
        )  # the others are renders and illustrations; the other sizes are links to these files
    ]),
    "mate-backgrounds": ("mate", [
        f"usr/share/backgrounds/mate/nature/{name}.jpg" for name in (
            "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
            "TwoWings", "Wood", "YellowFlower",
        )  # abstract/ and desktop/ are art
    ]),
}

# How many photos `--set val_holdout=6` keeps out of training, as README's run does (`data.split_photos`: those
# whose names hash lowest, the same on every machine); DEST/validation.txt names them.
VALIDATION_PHOTOS = 6

MIN_SIDE = 256  # after halving; smaller pictures are icons or previews, not training material


@dataclass
class Photo:
    output: str  # file name in DEST
    package: str
    version: str
    source: str  # path inside the package
    source_size: tuple[int, int]  # width, height
    size: tuple[int, int]
    copyright: str
    license: str


def fetch_photos(dest: Path, debs: Path | None = None) -> list[Photo]:
    """Write the halved photographs and their attribution into `dest`; returns what was written."""
    dest.mkdir(parents=True, exist_ok=True)
    licenses = dest / "LICENSES"
    licenses.mkdir(exist_ok=True)
    photos: list[Photo] = []
    with tempfile.TemporaryDirectory(prefix="vsr-photos-") as scratch:
        scratch = Path(scratch)
        folder = debs or _download(list(PHOTOS), scratch)
        for package, (_, files) in PHOTOS.items():
            deb = _find_deb(folder, package)
            root = scratch / package
            _run(["dpkg-deb", "-x", str(deb), str(root)])
            version = _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
            copyright_file = root / "usr/share/doc" / package / "copyright"
            stanzas = parse_copyright(copyright_file.read_text(encoding="utf-8", errors="replace"))
            shutil.copyfile(copyright_file, licenses / f"{package}.copyright")
            for extra in sorted({(root / f).parent / "License" for f in files}):  # lxqt's wallpapers/License
                if extra.is_file():
                    shutil.copyfile(extra, licenses / f"{package}.{extra.parent.name}-License.txt")
            for relative in files:
                photo = _halve(root, relative, package, version, stanzas, dest)
                if photo is not None:
                    photos.append(photo)
    _write_attribution(licenses / "ATTRIBUTION.txt", photos)
    (dest / "validation.txt").write_text("".join(f"{name}\n" for name in held_out(photos)))
    return photos


def held_out(photos: list[Photo]) -> list[str]:
    """The names of the photos `--set val_holdout=VALIDATION_PHOTOS` holds out of training."""
    from vsr.training.data import split_photos

    return [path.name for path in split_photos([photo.output for photo in photos], VALIDATION_PHOTOS / len(photos))[1]]


def _halve(root: Path, relative: str, package: str, version: str, stanzas: list[dict], dest: Path):
    source = root / relative
    if not source.is_file():
        log.warning("%s %s: %s is not in the package; skipped", package, version, relative)
        return None
    rgb = read_image(source).rgb
    height, width = rgb.shape[-2:]
    even = rgb[:, : height - height % 2, : width - width % 2]
    halved = F.avg_pool2d(even[None], 2)[0]  # 2×2 area average of the 8-bit values, rounded again when written
    if min(halved.shape[-2:]) < MIN_SIDE:
        log.warning("%s: %d×%d is too small to train on; skipped", relative, width, height)
        return None
    output = output_name(package, relative)
    write_image(dest / output, Image(rgb=halved))
    holder, license_name = copyright_for(stanzas, relative)
    metadata = root / PurePosixPath(relative).parent.parent.parent / "metadata.json"
    if package == "plasma-workspace-wallpapers" and metadata.is_file():  # each wallpaper names its author
        plugin = json.loads(metadata.read_text(encoding="utf-8"))["KPlugin"]
        holder = ", ".join(author["Name"] for author in plugin.get("Authors", [])) or holder
        license_name = plugin.get("License", license_name)
    if package == "lxqt-themes":  # the package's copyright file says LGPL for *; wallpapers/License overrides it
        notes = (source.parent / "License").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        holder = f"{notes[0]} (credits: {package}.wallpapers-License.txt)"
        license_name = next((line for line in notes if "creativecommons" in line), license_name)
    log.info("%s ← %s (%d×%d)", output, relative, width, height)
    return Photo(output, package, version, relative, (width, height), (halved.shape[-1], halved.shape[-2]),
                 holder, license_name)


def output_name(package: str, relative: str) -> str:
    """`<package short name>-<picture>.png`; a Plasma wallpaper is named by its folder (its files by their size)."""
    path = PurePosixPath(relative)
    stem = path.parent.parent.parent.name if package == "plasma-workspace-wallpapers" else path.stem
    return f"{PHOTOS[package][0]}-{stem}.png"


def parse_copyright(text: str) -> list[dict[str, str]]:
    """The paragraphs of a machine-readable debian/copyright file (DEP-5), as field → value (lines joined)."""
    stanzas, current, field = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                stanzas.append(current)
            current, field = {}, None
        elif line[0] in " \t" and field:
            current[field] += "\n" + line.strip()
        elif ":" in line:
            field, value = line.split(":", 1)
            current[field] = value.strip()
    return stanzas


def copyright_for(stanzas: list[dict[str, str]], installed: str) -> tuple[str, str]:
    """(Copyright, License) of the last `Files:` paragraph that matches an installed file (DEP-5: last wins).

    Patterns name files in the source tree, which installs elsewhere, so a pattern matches by file name
    ("16.04/Bridge.jpg" matches ".../backgrounds/Bridge.jpg"), and a directory pattern ("graphics/*") by a folder
    of that name in the installed path.
    """
    path = PurePosixPath(installed)
    found = ("see the package's copyright file", "see the package's copyright file")
    for stanza in stanzas:
        for pattern in stanza.get("Files", "").split():
            name, folder = PurePosixPath(pattern).name, PurePosixPath(pattern).parent.name
            if pattern == "*" or (name == "*" and folder in path.parts[:-1]) or (
                name != "*" and fnmatch.fnmatchcase(path.name, name)
            ):
                found = (stanza.get("Copyright", "?").replace("\n", "; "), stanza.get("License", "?").split("\n")[0])
    return found


def _write_attribution(path: Path, photos: list[Photo]) -> None:
    lines = [
        "Photographs from Debian packages, each halved (2×2 area average) and saved as PNG by",
        "`python -m vsr.training.fetch_photos`. Full license texts: the <package>.copyright files here.",
        "",
    ]
    for photo in photos:
        lines += [
            f"{photo.output} ({photo.size[0]}×{photo.size[1]})",
            f"  from {photo.package} {photo.version}: /{photo.source} ({photo.source_size[0]}×{photo.source_size[1]})",
            f"  copyright: {photo.copyright}",
            f"  license: {photo.license}",
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _download(packages: list[str], folder: Path) -> Path:
    if shutil.which("apt-get") is None:
        raise InputError("apt-get: not found; the photos come from Debian packages (use --debs with .deb files)")
    log.info("downloading %s", ", ".join(packages))
    _run(["apt-get", "download", *packages], cwd=folder)
    return folder


def _find_deb(folder: Path, package: str) -> Path:
    debs = sorted(folder.glob(f"{package}_*.deb"))
    if not debs:
        raise InputError(f"{folder}: no {package}_*.deb in it")
    return debs[-1]


def _run(command: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise InputError(f"{command[0]}: not found (needs a Debian or Ubuntu system)") from error
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError(f"{' '.join(command[:2])} failed: {last}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vsr.training.fetch_photos", description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path, help="folder to write the PNGs into (created if missing)")
    parser.add_argument("--debs", type=Path, help="folder holding the four .deb files already (skips apt-get)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.dest.exists() and not args.dest.is_dir():
            raise OutputError(f"{args.dest}: exists and is not a folder")
        photos = fetch_photos(args.dest, args.debs)
    except VsrError as error:
        log.error("error: %s", error)
        return error.exit_code
    megapixels = sum(p.size[0] * p.size[1] for p in photos) / 1e6
    log.info("%d photos, %.1f megapixels, in %s (--set val_holdout=%d holds out %s)", len(photos), megapixels,
             args.dest, VALIDATION_PHOTOS, ", ".join(held_out(photos)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
