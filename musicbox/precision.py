"""The precisions a bundle can ship (its variants), in one place and without numpy: the manifest's
schema, ``Bundle.open``, the config's ``[bundle] precision`` and the CLI's ``--precision`` read them
(the CLI imports this while it parses arguments, before any heavy module)."""

from __future__ import annotations

import typing
from typing import Literal

Precision = Literal["fp32", "int8", "int8_dynamic"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
"""Variant names, in the order ``Bundle`` prefers them when asked for the most exact one."""
PRECISION_CHOICES = ("auto", *PRECISIONS)
"""What a user may ask ``Bundle.open`` for (``[bundle] precision``, ``--precision``): ``auto`` or a variant."""
