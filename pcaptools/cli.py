"""The ``pcaptools`` command: parse arguments, call one library function, render. No logic here."""

from __future__ import annotations

import sys

import typer

from pcaptools.errors import PcapError

app = typer.Typer(
    name="pcaptools",
    help="Where did my packet go? Decode, correlate and compare Kubernetes node captures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors.")) -> None:
    _state["debug"] = debug


# Commands are registered below, one block per command, each calling one library function.
# --- commands ---


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one actionable line and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=False)
    except PcapError as exc:
        if debug:
            raise
        print(f"pcaptools: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if debug:
            raise
        print(f"pcaptools: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pcaptools: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click --help and usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except Exception as exc:  # click usage errors carry their own message
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
