"""`vsr --help` and each command's: a flag shows no value, an option the metavar it declares, an argument its name,
and every page fits an 80-column terminal.

Typer showed a type beside every parameter: `--compile <bool>` for a flag that takes no value (users read it as
needing one), `--width <int>`, `--data <list[Path]>`, `INPUT <list[Path]>`, and `{source}` on the usage line.
"""

import re

import pytest
import typer.main

from tests.processes import run_vsr
from vsr.cli import app

COMMAND = typer.main.get_command(app)
COMMANDS = [[], *[[name] for name in COMMAND.commands]]
# Typer's way of writing a type (<bool>, <int>, <list[Path]>, <path>, <float range>), and its required argument ({x})
TYPE = re.compile(r"<[a-z][\w\[\], |]*>")
BRACED = re.compile(r"\{\w+\}")


def help_page(command: list[str], columns: int) -> str:
    result = run_vsr(*command, "--help", check=True, env={"COLUMNS": str(columns)})
    return result.stdout


def rows(page: str) -> list[str]:
    """The lines of the page without the panels' borders, their words one space apart."""
    return [" ".join(line.strip("│╭╮╰╯─ ").split()) for line in page.splitlines()]


def params_of(command: list[str]):
    click_command = COMMAND.commands[command[0]] if command else COMMAND
    context = click_command.make_context(" ".join(["vsr", *command]), ["--help"], resilient_parsing=True)
    return click_command.get_params(context)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "vsr")
def test_help_shows_no_type_and_each_option_its_metavar_or_nothing(command):
    page = help_page(command, 200)
    assert not TYPE.findall(page)
    assert not BRACED.findall(page)
    lines = rows(page)
    for param in params_of(command):
        if param.param_type_name == "argument":
            name = param.metavar or param.name.upper()
            assert any(line.startswith((f"* {name} ", f"{name} ")) for line in lines), name
            continue
        long = [opt for opt in param.opts if opt.startswith("--")]
        short = [opt for opt in param.opts if not opt.startswith("--")]
        if param.is_flag:  # no value: the help text follows the names
            value = []
        else:
            assert param.metavar and re.fullmatch(r"[A-Z][A-Z_]*(=[A-Z]+|,\.\.\.)?", param.metavar), param.opts
            value = [param.metavar]
        first_words = " ".join(param.help.split()[:2])
        row = " ".join([*long, *short, *value, first_words])
        assert any(line.lstrip("* ").startswith(row) for line in lines), (row, page)


def test_flags_show_no_value_and_values_a_name_for_what_they_take():
    lines = rows(help_page(["upscale"], 200))
    for row in ("--compile torch.compile the model", "--overwrite Replace OUTPUT", "--quiet -q Errors only",
                "--help Show this message", "--output -o OUTPUT Output file", "--width PIXELS Final width",
                "--start TIME Start time", "--encoder-option KEY=VALUE An FFmpeg option", "--frames N Upscale at most",
                "--devices DEVICE,... Split a video"):
        assert any(line.startswith(row) for line in lines), row
    assert "Usage: vsr upscale [OPTIONS] INPUT..." in lines
    assert "* INPUT... Videos (mp4, mkv, mov, webm, ...), images (png, jpg, webp) or image sequences" in " ".join(lines)


@pytest.mark.parametrize("command, usage", [
    (["compare"], "vsr compare [OPTIONS] SOURCE UPSCALED"), (["train"], "vsr train [OPTIONS] [RECIPE]"),
    (["eval"], "vsr eval [OPTIONS] SOURCE..."), (["batch"], "vsr batch [OPTIONS] [IN_DIR OUT_DIR]"),
    (["interpolate"], "vsr interpolate [OPTIONS] PSNR_MODEL GAN_MODEL")])
def test_the_usage_line_names_the_arguments_as_the_help_texts_do(command, usage):
    assert f"Usage: {usage}" in rows(help_page(command, 120))


def test_a_missing_argument_is_named_as_the_help_names_it():
    result = run_vsr("compare")
    assert result.returncode == 2
    assert "Missing argument 'SOURCE'." in result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "vsr")
@pytest.mark.parametrize("columns", [80, 120])
def test_help_fits_the_terminal_with_every_option_whole(command, columns):
    page = help_page(command, columns)
    assert max(len(line) for line in page.splitlines()) <= columns
    assert "…" not in page  # (what rich writes for a cell cut short)
    words = set(" ".join(rows(page)).split())
    for param in params_of(command):
        if param.param_type_name == "option":
            assert set(param.opts) <= words, param.opts
