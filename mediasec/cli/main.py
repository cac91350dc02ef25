"""``mediasec`` entry point: the verbs of shared/CLI.md, one error-to-exit mapping.

Each verb lives in its own module and registers itself on ``cli``; ``main()`` runs
the group and turns every exception into one line on stderr and a documented exit
code (``mediasec.cli.exits``).
"""

from __future__ import annotations

import sys

import click

from mediasec import __version__
from mediasec.cli.exits import CANNOT, report_error

__all__ = ["cli", "main"]


def _version() -> str:
    """The installed package's version (metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("mediasec")
    except PackageNotFoundError:
        return __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.version_option(_version(), prog_name="mediasec")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """DICOM secure media: protect files, build and verify File-sets and discs."""
    if ctx.invoked_subcommand is None:  # bare `mediasec`: the help, and success
        click.echo(ctx.get_help())
        ctx.exit(0)
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    if verbose:
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)


def _register() -> None:
    """Import the verb modules; each registers its commands on ``cli``."""
    from mediasec.cli import cmd_build, cmd_cms, cmd_verify  # noqa: F401
    from mediasec.cli import cmd_deid  # noqa: F401
    from mediasec.cli import cmd_net  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    _register()
    args = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in args or "-v" in args
    try:
        rv = cli.main(args=argv, prog_name="mediasec", standalone_mode=False)
    except click.exceptions.Abort:
        print("mediasec: aborted", file=sys.stderr)
        return CANNOT
    except click.exceptions.ClickException as exc:
        print(f"mediasec: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return exc.exit_code if exc.exit_code else CANNOT
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        print("mediasec: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:  # noqa: BLE001 - the one place that maps everything
        if isinstance(exc, SystemExit):
            return int(exc.code or 0)
        return report_error(exc, verbose=verbose)
    return int(rv or 0)


if __name__ == "__main__":  # run as the package module, not as a second copy of this one
    from mediasec.cli.main import main as _main
    sys.exit(_main())
