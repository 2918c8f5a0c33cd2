"""The install's one error type (its own module so the low-level helpers can raise it)."""

from __future__ import annotations

from dc2tasks.products.errors import InputError


class InstallError(InputError):
    """The install stopped; what was installed before is unchanged (the message says why)."""
