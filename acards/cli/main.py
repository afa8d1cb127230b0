"""The root command group and what every command shares: coded errors in, exit codes out, and the
settings the environment gives, read once here (``Settings`` on the click context) and passed down."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from acards import __version__
from acards.errors import AcardsError, Problem, codes
from acards.settings import Settings

FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                      help="text for people, json for programs")


def handled(command):
    """Turn AcardsError into printed problems and SPEC §8 exit codes; hide tracebacks unless --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from acards.evidence.cachekey import collected_warnings

        debug = click.get_current_context().find_root().params.get("debug", False)
        fmt = kwargs.get("fmt", "text")
        with collected_warnings() as warnings:  # library code records warnings; they are printed here
            try:
                return command(*args, **kwargs)
            except AcardsError as error:
                if debug:
                    raise
                _warn(warnings)
                _fail(error.problems, fmt, error.exit_code)
            except KeyboardInterrupt:
                click.echo("interrupted", err=True)
                sys.exit(130)
            except click.exceptions.Exit:
                raise
            except Exception as error:  # noqa: BLE001 — the one place unexpected errors are caught
                if debug:
                    raise
                problem = Problem(codes.INTERNAL_ERROR, f"{type(error).__name__}: {error}",
                                  "this is a bug in acards: rerun with --debug and report the traceback")
                _warn(warnings)
                _fail([problem], fmt, problem.exit_code)
            finally:
                _warn(warnings)

    return wrapper


def _warn(warnings: list[Problem]) -> None:
    """Print the warnings the command recorded (cache.entry-rejected), each once, on stderr."""
    if warnings:
        from acards.present.text import warnings_text

        click.echo(warnings_text(warnings), err=True)
        warnings.clear()


def read_file(path: Path, what: str = "file") -> bytes:
    """A file named on the command line (an envelope, a report, a checkpoint): a regular file of at
    most 64 MiB, read without blocking on a FIFO or device (acards.files.read_input)."""
    from acards.files import read_input

    return read_input(path, what=what)


def trusted_keys(paths) -> dict:
    from acards.attest.keys import keyid, load_public_key

    keys = [load_public_key(path) for path in paths]
    return {keyid(key): key for key in keys}


def settings() -> Settings:
    """The settings the root group read from the environment for this command."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Settings):  # a command invoked without the root group
        root.obj = Settings.from_environ()
    return root.obj


def read_passphrase(path: Path | None = None, confirm: bool = False) -> bytes | None:
    """ACARDS_KEY_PASSPHRASE if set, else a prompt on a terminal; None when there is neither."""
    value = settings().key_passphrase
    if value is not None:
        return value.encode("utf-8")
    if sys.stdin.isatty():
        return click.prompt(f"passphrase{f' for {path}' if path else ''}", hide_input=True,
                            confirmation_prompt=confirm, err=True).encode("utf-8")
    return None


def _fail(problems: list[Problem], fmt: str, code: int) -> None:
    from acards.present.text import count, dumps, problems_text

    if fmt == "json":
        click.echo(dumps({"ok": False, "exit_code": code, "problems": [p.to_dict() for p in problems]}))
    else:
        click.echo(problems_text(problems), err=True)
        click.echo(count(len(problems), "problem"), err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="acards")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of coded errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:  # noqa: ARG001 — `handled` reads --debug from the context
    """Acceptance Cards: verifiable claims that a safe fine-tuning defense works.

    Write a card with `acards init`, check it with `acards validate` and `acards check`.
    """
    ctx.obj = Settings.from_environ()
