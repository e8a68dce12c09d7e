"""Random inputs of the fast-weight ops, shared by the kernel tests (``tests/``) and the
benchmark (``launch/bench_kernels.py``), so both exercise the same distributions.

Each builder draws, from the generator it is given and in a fixed order, CPU tensors in
a dict keyed by input name (the names the ``*_args`` helpers below unpack into an op's
arguments). The defaults are the tests' distributions; the benchmark passes smaller
state scales. Resets: :func:`reset_mask` builds named patterns (tests),
:func:`random_resets` a Bernoulli mask (benchmark).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from .srwm import SRWM_KEYS

RESET_PATTERNS = ("none", "all", "t0", "last", "consecutive", "boundaries", "random")
REC_DELTA_NAMES = ("q", "k", "v", "beta", "R_q", "R_k", "R_v", "r_b", "S", "y")


def reset_mask(patterns: List[str], T: int, chunk: int, seed: int) -> torch.Tensor:
    """bool [T, B]: column b follows ``patterns[b]`` (one of :data:`RESET_PATTERNS`);
    ``boundaries`` puts resets on and just before the backward's chunk edges."""
    gen = torch.Generator().manual_seed(1000 + seed)
    cols = []
    for p in patterns:
        col = torch.zeros(T, dtype=torch.bool)
        if p == "all":
            col[:] = True
        elif p == "t0":
            col[0] = True
        elif p == "last":
            col[T - 1] = True
        elif p == "consecutive":                 # three in a row (across t = 16 when T = 63)
            col[T // 4: T // 4 + 3] = True
        elif p == "boundaries":                  # on a chunk start and on the step before one
            col[chunk::chunk] = True
            col[chunk - 1::3 * chunk] = True
        elif p == "random":
            col = torch.rand(T, generator=gen) < 0.25
        elif p != "none":
            raise ValueError(f"unknown reset pattern {p!r}; choose from {', '.join(RESET_PATTERNS)}")
        cols.append(col)
    return torch.stack(cols, 1)


def random_resets(T: int, B: int, density: float, gen: torch.Generator) -> torch.Tensor:
    """bool [T, B], each entry set with probability ``density``."""
    return torch.rand(T, B, generator=gen) < density


def delta_rule_inputs(T: int, B: int, H: int, Dk: int, Dv: Optional[int] = None, *, gen: torch.Generator,
                      state_scale: float = 0.5, gated: bool = False, alpha_shift: float = 0.0,
                      alpha_scale: float = 2.0) -> Dict[str, torch.Tensor]:
    """q, k (softmax), v, beta (sigmoid), state; with ``gated`` also alpha =
    sigmoid(alpha_shift + alpha_scale N(0, 1)) in (0, 1)."""
    Dv = Dv or Dk
    a = {
        "q": torch.softmax(torch.randn(T, B, H, Dk, generator=gen), -1),          # [T, B, H, Dk]
        "k": torch.softmax(torch.randn(T, B, H, Dk, generator=gen), -1),          # [T, B, H, Dk]
        "v": torch.randn(T, B, H, Dv, generator=gen),                             # [T, B, H, Dv]
        "beta": torch.sigmoid(torch.randn(T, B, H, generator=gen)),               # [T, B, H]
        "state": state_scale * torch.randn(B, H, Dk, Dv, generator=gen),          # [B, H, Dk, Dv]
    }
    if gated:
        a["alpha"] = torch.sigmoid(alpha_shift + alpha_scale * torch.randn(T, B, H, generator=gen))
    return a


def linear_attention_inputs(T: int, B: int, H: int, Dk: int, Dv: Optional[int] = None, *,
                            gen: torch.Generator, state_scale: float = 0.5) -> Dict[str, torch.Tensor]:
    """q, k (softmax), v, state: the delta rule's inputs without beta."""
    a = delta_rule_inputs(T, B, H, Dk, Dv, gen=gen, state_scale=state_scale)
    del a["beta"]
    return a


def srwm_inputs(T: int, B: int, H: int, D: int, Dy: Optional[int] = None, *, gen: torch.Generator,
                x_scale: float = 2.0, delta_scale: float = 0.3) -> Dict[str, torch.Tensor]:
    """x = softmax(x_scale N(0, 1)), the slow weights ``W_<j>`` ~ N(0, 1/D) and the initial
    differences ``delta_<j>`` for j in y, q, k, b (Dy rows for y, default D)."""
    rows = {"y": Dy or D, "q": D, "k": D, "b": 4}
    a = {"x": torch.softmax(x_scale * torch.randn(T, B, H, D, generator=gen), -1)}   # [T, B, H, D]
    for n in SRWM_KEYS:
        a[f"W_{n}"] = torch.randn(H, rows[n], D, generator=gen) / D ** 0.5          # [H, rows, D]
    for n in SRWM_KEYS:
        a[f"delta_{n}"] = delta_scale * torch.randn(B, H, rows[n], D, generator=gen)  # [B, H, rows, D]
    return a


def rec_delta_inputs(T: int, B: int, H: int, D: int, *, gen: torch.Generator, state_scale: float = 0.5,
                     y_scale: float = 1.0) -> Dict[str, torch.Tensor]:
    """Pre-activations q, k, v, beta; recurrent slow weights R_q, R_k, R_v ~ N(0, 1/D),
    r_b; the state S and the previous output y (names :data:`REC_DELTA_NAMES`)."""
    r = lambda *s: torch.randn(*s, generator=gen)   # noqa: E731
    shapes = [(T, B, H, D), (T, B, H, D), (T, B, H, D), (T, B, H)]
    tensors = [r(*s) for s in shapes] + [r(H, D, D) / D ** 0.5 for _ in range(3)] + [r(H, D) / D ** 0.5]
    tensors += [state_scale * r(B, H, D, D), y_scale * r(B, H, D)]
    return dict(zip(REC_DELTA_NAMES, tensors))


def delta_rnn_inputs(T: int, B: int, H: int, D: int, *, gen: torch.Generator, state_scale: float = 0.5,
                     y_scale: float = 1.0) -> Dict[str, torch.Tensor]:
    """z (the feed-forward output), k (softmax), v, beta (sigmoid), the state R and y."""
    r = lambda *s: torch.randn(*s, generator=gen)   # noqa: E731
    return {"z": r(T, B, H, D), "k": torch.softmax(r(T, B, H, D), -1), "v": r(T, B, H, D),
            "beta": torch.sigmoid(r(T, B, H)), "R": state_scale * r(B, H, D, D), "y": y_scale * r(B, H, D)}


# ----------------------------------------------------------------------------- dict -> op arguments


def delta_rule_args(a: Dict[str, torch.Tensor]):
    """(q, k, v, beta, state) for :func:`agents.kernels.delta_rule` (alpha stays in ``a``)."""
    return a["q"], a["k"], a["v"], a["beta"], a["state"]


def srwm_args(a: Dict[str, torch.Tensor]):
    """(x, W_slow, delta) for :func:`agents.kernels.srwm`."""
    return a["x"], {n: a[f"W_{n}"] for n in SRWM_KEYS}, {n: a[f"delta_{n}"] for n in SRWM_KEYS}


def rec_delta_args(a: Dict[str, torch.Tensor]):
    """(q, k, v, beta, R, state) for :func:`agents.kernels.rec_delta`."""
    R = {"q": a["R_q"], "k": a["R_k"], "v": a["R_v"], "b": a["r_b"]}
    return a["q"], a["k"], a["v"], a["beta"], R, {"S": a["S"], "y": a["y"]}


def delta_rnn_args(a: Dict[str, torch.Tensor]):
    """(z, k, v, beta, state) for :func:`agents.kernels.delta_rnn`."""
    return a["z"], a["k"], a["v"], a["beta"], {"R": a["R"], "y": a["y"]}
