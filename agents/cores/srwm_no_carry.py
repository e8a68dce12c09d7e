"""SRWM without carry-over (ablation of Irie et al., ICML 2022; docs/design.md#srwm-without-carry-over).

The SRWM core of :mod:`agents.cores.srwm` whose fast-weight differences are reset at
the start of every unroll instead of being carried from one unroll to the next.

Within a ``forward()`` call it is exactly the SRWM (the state passed in is used, so
acting one step at a time still has memory inside the unroll). The class attribute
``carries_state_across_unrolls = False`` tells the runtime to start every unroll from
the episode-start state: the actor resets the state before entry 0 of each unroll and
re-acts on that entry, and stores that zero state as ``initial_core_state``, so the
behaviour policy is exactly the policy the learner re-runs. (The IDSIA code reset the
state inside every forward call instead, so its actors, calling one step at a time,
acted with no memory at all while its learner trained with memory.)
"""

from __future__ import annotations

from agents.core import register_core

from .srwm import SRWMCore


@register_core("srwm_no_carry")
class SRWMNoCarryCore(SRWMCore):
    """SRWM whose state the runtime resets at the start of every unroll."""

    carries_state_across_unrolls = False
