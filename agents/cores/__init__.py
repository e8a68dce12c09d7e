"""Built-in memory cores; importing this package registers them.

One module per core (see "Adding a memory core" in README.md), plus
:mod:`agents.cores.layers`, the pieces the fast-weight cores share.
"""

from . import (delta_rnn, deltanet, fake_sr, ff, gated_deltanet, linear_transformer, lstm,  # noqa: F401
               rec_delta, sr_delta, srwm, srwm_no_carry)
