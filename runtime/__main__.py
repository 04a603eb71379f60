"""``python -m dreamwire`` is the ``dreamwire`` command."""

from dreamwire.app.cli import entry

if __name__ == "__main__":
    entry()
