"""``python -m pylog``: the ``pylog`` command line."""

from pylog.cli import run

run()
