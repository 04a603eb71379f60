"""``python -m dreamwire`` is the ``dreamwire`` command."""

from dreamwire.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
