"""``python -m aligndepth.cli``: the ``aligndepth`` command."""

from aligndepth.cli import main

main()
