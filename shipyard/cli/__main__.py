"""``python -m shipyard.cli`` is the ``shipyard`` command."""

from shipyard.cli import main

main()
