"""``python -m dirackit.bench``: see ``dirackit.bench`` for the subcommands."""
from .cli import main

main()
