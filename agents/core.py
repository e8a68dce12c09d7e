"""The memory-core contract (docs/design.md#core-contract) and the core registry.

A memory core maps a time-major sequence of features to a sequence of outputs while
carrying a recurrent state::

    x: [T, B, input_size]  ->  y: [T, B, output_size]

The state is a dict of named tensors, each batch first (``[B, ...]``). Every core
describes its state with a :class:`StateSpec` so that actors and the learner can
allocate rollout buffers without guessing shapes. ``reset[t, b]`` true means: before
step ``t`` the state of row ``b`` goes back to its episode-start value (zeros for
DeltaNet and LSTM, zero difference from the slow weights for SRWM).

New cores register themselves by name::

    @register_core("my_core")
    class MyCore(MemoryCore):
        ...

and are built with ``make_core("my_core", input_size, **options)`` or selected on the
command line with ``--core my_core``. Any registered core is picked up by the shared
conformance suite in ``tests/test_core_conformance.py``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Tuple, Type

import torch
from torch import nn

State = Dict[str, torch.Tensor]


@dataclass(frozen=True)
class TensorSpec:
    """Shape (without the batch dimension) and dtype of one state tensor."""

    shape: Tuple[int, ...]
    dtype: torch.dtype = torch.float32


class StateSpec(dict):
    """``{name: TensorSpec}``: the named tensors of a core state, batch dimension omitted."""

    def allocate(self, batch_size: int, device=None, *, share_memory: bool = False,
                 pin_memory: bool = False, leading: Tuple[int, ...] = ()) -> State:
        """Zero tensors ``[*leading, batch_size, *shape]`` for every entry."""
        out = {}
        for name, spec in self.items():
            t = torch.zeros(*leading, batch_size, *spec.shape, dtype=spec.dtype, device=device)
            if share_memory:
                t.share_memory_()
            if pin_memory and torch.cuda.is_available():
                t = t.pin_memory()
            out[name] = t
        return out

    def check(self, state: Mapping[str, torch.Tensor], batch_size: int | None = None) -> None:
        """Raise ValueError if ``state`` does not match this spec."""
        if set(state) != set(self):
            raise ValueError(f"state keys {sorted(state)} do not match spec keys {sorted(self)}")
        for name, spec in self.items():
            t = state[name]
            if tuple(t.shape[1:]) != tuple(spec.shape) or t.dtype != spec.dtype:
                raise ValueError(
                    f"state tensor {name!r} has shape {tuple(t.shape)} dtype {t.dtype}, "
                    f"spec wants [B, {', '.join(map(str, spec.shape))}] {spec.dtype}")
            if batch_size is not None and t.shape[0] != batch_size:
                raise ValueError(f"state tensor {name!r} has batch {t.shape[0]}, expected {batch_size}")

    def to_plain(self) -> dict:
        """Plain-data form (for configs and checkpoints)."""
        return {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                for k, v in self.items()}


class MemoryCore(nn.Module):
    """Base class of every memory core.

    Subclasses set ``self.output_size`` and implement :meth:`state_spec` and
    :meth:`forward`. The default :meth:`initial_state` allocates zeros from the spec;
    override it when the episode-start state is not zero.
    """

    output_size: int
    #: False: the runtime resets the state at the start of every unroll (an ablation
    #: such as ``srwm_no_carry``); forward() itself always uses the state it is given.
    carries_state_across_unrolls: bool = True

    def state_spec(self) -> StateSpec:
        raise NotImplementedError

    def initial_state(self, batch_size: int, device=None) -> State:
        if device is None:
            p = next(self.parameters(), None)
            device = p.device if p is not None else None
        return self.state_spec().allocate(batch_size, device)

    def forward(self, x: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        """x: [T, B, input_size]; reset: bool [T, B] -> (y [T, B, output_size], new state)."""
        raise NotImplementedError

    def reference_forward(self, x: torch.Tensor, state: State, reset: torch.Tensor) -> Tuple[torch.Tensor, State]:
        """Optional slow reference of :meth:`forward`: the core's equations one time step at
        a time, written without its fast ops. A core that overrides it gets the maths check
        of the conformance suite (outputs, final state and every gradient against forward)."""
        raise NotImplementedError(f"{type(self).__name__} declares no per-step reference")

    @classmethod
    def has_reference(cls) -> bool:
        """True when the core overrides :meth:`reference_forward`."""
        return cls.reference_forward is not MemoryCore.reference_forward

    # -- optional: fast-weight diagnostics (``--core-diagnostics``) --------------------
    #: Set by :func:`set_core_diagnostics`; while true, forward() also records a few
    #: scalars about what it did (computed without gradient, outputs unchanged).
    diagnostics_enabled: bool = False

    def diagnostic_names(self) -> list:
        """Keys that :meth:`diagnostics` returns (``"<layer>/<name>"``); empty: none."""
        return []

    def diagnostics(self) -> Dict[str, float]:
        """Scalars recorded by the last forward() run with diagnostics enabled, keyed
        ``"<layer>/<name>"`` (the learner logs them as ``core/<layer>/<name>``)."""
        return dict(getattr(self, "_last_diagnostics", {}))


def set_core_diagnostics(core: MemoryCore, enabled: bool) -> None:
    """Turn the recording of :meth:`MemoryCore.diagnostics` on or off for ``core``."""
    core.diagnostics_enabled = bool(enabled)
    if not enabled:
        core.__dict__.pop("_last_diagnostics", None)


_CORES: Dict[str, Type[MemoryCore]] = {}


def register_core(name: str) -> Callable[[Type[MemoryCore]], Type[MemoryCore]]:
    """Class decorator: register a :class:`MemoryCore` under ``name``."""

    def deco(cls: Type[MemoryCore]) -> Type[MemoryCore]:
        if name in _CORES and _CORES[name] is not cls:
            raise ValueError(f"core name {name!r} is already registered by {_CORES[name].__qualname__}")
        if not (isinstance(cls, type) and issubclass(cls, MemoryCore)):
            raise TypeError(f"@register_core({name!r}) expects a MemoryCore subclass, got {cls!r}")
        _CORES[name] = cls
        cls.core_name = name
        return cls

    return deco


def _ensure_builtin_cores_loaded() -> None:
    import agents.cores  # noqa: F401  (registers the built-in cores)


def list_cores() -> list[str]:
    """Names of every registered core, sorted."""
    _ensure_builtin_cores_loaded()
    return sorted(_CORES)


def get_core_class(name: str) -> Type[MemoryCore]:
    _ensure_builtin_cores_loaded()
    if name not in _CORES:
        raise ValueError(f"unknown core {name!r}; known cores: {', '.join(sorted(_CORES))}")
    return _CORES[name]


def _option_parameters(name: str) -> list[inspect.Parameter]:
    sig = inspect.signature(get_core_class(name).__init__)
    return [p for p in sig.parameters.values() if p.name not in ("self", "input_size")
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def core_option_names(name: str) -> list[str]:
    """Keyword options the core's constructor accepts (besides ``input_size``): the core's
    declaration of the options it takes (``agents.model.core_options`` passes it the
    ``ModelConfig`` fields of these names)."""
    return [p.name for p in _option_parameters(name)]


def core_option_defaults(name: str) -> Dict[str, object]:
    """``{option: default}`` for the constructor's options that have a default (the core's
    own defaults, e.g. lstm's ``hidden_size=256``)."""
    return {p.name: p.default for p in _option_parameters(name) if p.default is not inspect.Parameter.empty}


def unregister_core(name: str) -> None:
    """Remove a registered core (for tests that register temporary cores)."""
    _CORES.pop(name, None)


def make_core(name: str, input_size: int, *, strict: bool = True, **options) -> MemoryCore:
    """Build the core registered as ``name``.

    With ``strict=False`` options the core does not accept are dropped (the command
    line passes one uniform set of core options to whichever core is chosen).
    """
    cls = get_core_class(name)
    accepted = core_option_names(name)
    unknown = [k for k in options if k not in accepted]
    if unknown and strict:
        raise ValueError(f"core {name!r} does not take option(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(accepted)}")
    kwargs = {k: v for k, v in options.items() if k in accepted}
    return cls(input_size, **kwargs)
