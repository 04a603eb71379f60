"""``python -m runtime`` is the ``dreamwire`` command."""

from runtime.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
