"""Which authentication schemes a logout ends, as NpgsqlRest's ``@logout`` signs out of
the schemes it names (``Cookies`` but not ``Bearer``, say) and all when it names none.

Two schemes: ``session`` (the cookies and the server-side session) and ``bearer`` (the
``Authorization: Bearer`` token and the token in ``LOGOUT_TOKEN_COOKIE``, with their
records in ``LOGOUT_TOKEN_KEYS`` and that cookie, and at the everywhere URI every JWT of
the subject).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

__all__ = ["ALL_SCHEMES", "Scheme", "parse_schemes"]

Scheme = Literal["session", "bearer"]
#: Every scheme, in the order events list them.
ALL_SCHEMES: tuple[Scheme, ...] = ("session", "bearer")


def parse_schemes(values: Iterable[str]) -> tuple[Scheme, ...] | None:
    """The schemes named by the ``LOGOUT_SCHEME_PARAM`` values (each comma-separated,
    the parameter possibly repeated; case and spaces ignored), in :data:`ALL_SCHEMES`
    order; every scheme when none is named; None when a name is unknown."""
    named: set[str] = set()
    for value in values:
        named.update(part.strip().lower() for part in value.split(",") if part.strip())
    if not named:
        return ALL_SCHEMES
    if not named <= set(ALL_SCHEMES):
        return None
    return tuple(s for s in ALL_SCHEMES if s in named)
