"""Built-in memory cores; importing this package registers them.

One module per core (see ``docs/adding_a_core.md`` to add one), plus
:mod:`agents.cores.layers`, the pieces the fast-weight cores share.
"""

from . import deltanet, fake_sr, ff, linear_transformer, lstm, sr_delta, srwm, srwm_no_carry  # noqa: F401
