"""Warnings of the command (xstereo_gpu.diagnostics.run_with_warnings): the warning filters are respected."""

from __future__ import annotations

import pytest

from xstereo_gpu.errors import InputError


def test_cli_warnings_respect_the_filters(capsys):
    import warnings

    from xstereo_gpu.diagnostics import run_with_warnings
    from xstereo_gpu.errors import InputWarning, warn

    def old_api(args):
        warnings.warn("old", DeprecationWarning, stacklevel=2)
        return 0

    with pytest.raises(DeprecationWarning):  # pytest's filterwarnings makes it an error; the CLI keeps that
        run_with_warnings(old_api, None, "x")

    def suspicious(args):
        warn("f.cxi:/d", "7", "1 .. 2")
        return 0

    assert run_with_warnings(suspicious, None, "run") == 0
    assert capsys.readouterr().err == "xstereo run: warning: f.cxi:/d: found 7; plausible: 1 .. 2\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        with pytest.raises(
            InputError, match=r"f.cxi:/d: found 7; expected 1 .. 2 \(a warning, turned into an error"
        ):
            run_with_warnings(suspicious, None, "run")
