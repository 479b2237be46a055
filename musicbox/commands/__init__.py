"""Subcommands of the ``musicbox`` CLI: argument declarations only; heavy imports happen in ``run``."""
