"""Errors raised at the public boundary.

Every message names the field or file, the value found and what was expected, so that a beamline
user can fix the input without reading the code. The CLI turns :class:`InputError` into a message on
stderr and exit status 2.
"""

from __future__ import annotations

import warnings

__all__ = ["InputError", "InputWarning", "check", "warn"]


class InputError(ValueError):
    """Bad input: a file, a field or a parameter that cannot be used.

    Parameters
    ----------
    where : str
        The file, dataset or parameter at fault (``"shot.cxi:/entry_1/data_1/data"``, ``"--angles"``).
    found : str
        What was found there.
    expected : str
        What was expected instead.
    """

    def __init__(self, where: str, found: str, expected: str):
        self.where, self.found, self.expected = where, found, expected
        super().__init__(f"{where}: found {found}; expected {expected}")


def check(condition: bool, where: str, found: str, expected: str) -> None:
    """Raise :class:`InputError` unless ``condition`` holds."""
    if not condition:
        raise InputError(where, found, expected)


class InputWarning(UserWarning):
    """Suspicious but possible input: a value outside what is plausible, or a silent choice made for it.

    Parameters
    ----------
    where : str
        The file, dataset or parameter concerned.
    found : str
        What was found there.
    plausible : str
        What would be plausible.

    The message reads ``"<where>: found <found>; plausible: <plausible>"``. The CLI prints it on
    stderr as ``xstereo CMD: warning: ...`` (and as an error, exit status 2, when warnings are
    turned into errors, e.g. ``python -W error::UserWarning``).
    """

    def __init__(self, where: str, found: str, plausible: str):
        self.where, self.found, self.plausible = where, found, plausible
        super().__init__(f"{where}: found {found}; plausible: {plausible}")


def warn(where: str, found: str, plausible: str, *, stacklevel: int = 3) -> None:
    """Emit an :class:`InputWarning` naming the field, the value found and what is plausible."""
    warnings.warn(InputWarning(where, found, plausible), stacklevel=stacklevel)
