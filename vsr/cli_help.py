"""How `vsr ... --help` shows what each parameter takes, as well-made command lines do (ffmpeg, rclone, uv): a flag
shows nothing, an option its metavar (FILE, N, TIME, KEY=VALUE, ...), an argument its name (INPUT..., SOURCE).

Typer 0.29 writes a type in angle brackets beside every parameter and has no setting to leave it out: `<bool>` beside
a flag, which takes no value (`--compile <bool>` reads as needing one), `<str>` or `<int>` beside an option without a
metavar, and `<list[Path]>` beside an argument that its name already shows; its usage line writes a required argument
as `{INPUT}...`, and an argument without a metavar in lower case (`{source}`). Typer makes the parameter objects
itself, so `HelpCommand` and `HelpGroup` give theirs the display of the subclasses below, in `get_params`, which the
help, the usage line and the parser all read the parameters through.
"""

from __future__ import annotations

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _ShownOption(TyperOption):
    def display_type_rich(self, ctx) -> str | None:
        if self.is_flag or self.count:  # (it takes no value)
            return None
        return super().display_type_rich(ctx)  # its metavar (Typer's <type> where it has none: the tests refuse it)


class _ShownArgument(TyperArgument):
    @property
    def display_name_raw(self) -> str:
        """Its metavar, or its name in capitals, as the help texts name it (SOURCE, RECIPE); also in error messages."""
        return self.metavar or self.name.upper()

    def display_type_rich(self, ctx) -> str | None:
        return None  # (its name says what it is; the help text says the rest)

    def _usage_display_name(self) -> str:
        """INPUT..., [RECIPE]: as on the help's Arguments panel, in brackets where it may be left out."""
        name = self._rich_display_name()
        return name if self.required else f"[{name}]"


def _shown_readably(param):
    # (the subclasses add no state, only how the parameter is shown: a class change is all it takes)
    if type(param) is TyperOption:
        param.__class__ = _ShownOption
    elif type(param) is TyperArgument:
        param.__class__ = _ShownArgument
    return param


class HelpCommand(TyperCommand):
    """A `vsr` command whose parameters are shown readably (see the module's docstring)."""

    def get_params(self, ctx):
        return [_shown_readably(param) for param in super().get_params(ctx)]


class HelpGroup(TyperGroup):
    """The `vsr` group, its own options shown as its commands' are."""

    def get_params(self, ctx):
        return [_shown_readably(param) for param in super().get_params(ctx)]
