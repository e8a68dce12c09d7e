"""Built-in memory cores; importing this package registers them.

One module per core (see "Adding a memory core" in README.md), plus
:mod:`agents.cores.layers`, the pieces the fast-weight cores share.
"""

from . import deltanet, fake_sr, ff, linear_transformer, lstm, sr_delta, srwm, srwm_no_carry  # noqa: F401
