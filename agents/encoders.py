"""Observation encoders: observations -> feature vectors (docs/design.md#the-agent).

* ``impala``: the IMPALA ResNet of Espeholt et al., "IMPALA: Scalable Distributed
  Deep-RL with Importance Weighted Actor-Learner Architectures", ICML 2018, as used
  for ProcGen by Irie et al., ICML 2022: three stages of (conv 3x3, max-pool 3/2
  padding 1, two residual blocks relu-conv-relu-conv + skip) with 16, 32, 32
  channels, then ReLU, flatten, fc to ``feature_size`` (256), ReLU. On [3, 64, 64]
  the fc is 2048 -> 256.
* ``nature``: the DQN network of Mnih et al., "Human-level control through deep
  reinforcement learning", Nature 2015: conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1
  (ReLU after each), fc to ``feature_size`` (512), ReLU; for [4, 84, 84] Atari stacks.
* ``mlp``: fully connected layers with ReLU for vector (or any other) observations,
  flattened.

Every encoder maps ``[N, *obs_shape]`` (uint8 scaled by 1/255, or float) to
``[N, output_size]`` in the dtype of its parameters. Encoders are registered by name
like the memory cores (:func:`register_encoder`, ``--encoder NAME``); ``auto`` picks one
of the three above by the observation's shape (:func:`choose_encoder`).

Initialisation (``init``, see :func:`init_encoder`): ``standard`` gives each encoder the
initialisation its maintained PyTorch implementations use: the Nature CNN orthogonal
weights with gain sqrt(2) and zero biases (OpenAI baselines, Stable-Baselines3,
CleanRL), the IMPALA ResNet and the MLP PyTorch's defaults. ``torch`` keeps PyTorch's
defaults everywhere (torchbeast and the IDSIA code); ``orthogonal`` applies the
orthogonal init to every layer. Why it matters: with PyTorch's defaults (weight variance
1 / (3 fan_in)) each conv layer shrinks the signal, and on Atari frames, where only a
paddle and a ball move, the Nature CNN's features at initialisation vary across
observations 35x less than with the orthogonal init (measured on Pong: std over
observations 0.0007 vs 0.025) -- the policy starts blind to the state (docs/learning/pong.md).
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_INITS = ("standard", "torch", "orthogonal")
ORTHOGONAL_GAIN = 2 ** 0.5          # ReLU gain


class Encoder(nn.Module):
    """Base class of every encoder: ``Encoder(obs_shape, feature_size)`` maps observations
    ``[N, *obs_shape]`` to features ``[N, output_size]``.

    Subclasses set ``self.output_size`` (the core's input is built on it), raise
    ``ValueError`` naming an observation shape they cannot encode, and declare:

    * ``default_feature_size``: the output size ``--feature-size 0`` asks for;
    * ``standard_init``: what ``--encoder-init standard`` does to their weights,
      ``"torch"`` (keep PyTorch's defaults) or ``"orthogonal"`` (:func:`init_encoder`).
    """

    default_feature_size: int
    standard_init: str = "torch"
    output_size: int


_ENCODERS: Dict[str, Type[Encoder]] = {}


def register_encoder(name: str) -> Callable[[Type[Encoder]], Type[Encoder]]:
    """Class decorator: register an :class:`Encoder` under ``name`` (``--encoder name``)."""

    def deco(cls: Type[Encoder]) -> Type[Encoder]:
        if name == "auto":
            raise ValueError("encoder name 'auto' is reserved (it picks an encoder by the observation's shape)")
        if name in _ENCODERS and _ENCODERS[name] is not cls:
            raise ValueError(f"encoder name {name!r} is already registered by {_ENCODERS[name].__qualname__}")
        if not (isinstance(cls, type) and issubclass(cls, Encoder)):
            raise TypeError(f"@register_encoder({name!r}) expects an Encoder subclass, got {cls!r}")
        size = getattr(cls, "default_feature_size", None)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise TypeError(f"encoder {name!r}: set the class attribute default_feature_size "
                            f"(a positive int), got {size!r}")
        if cls.standard_init not in ("torch", "orthogonal"):
            raise TypeError(f"encoder {name!r}: standard_init must be 'torch' or 'orthogonal', "
                            f"got {cls.standard_init!r}")
        _ENCODERS[name] = cls
        cls.encoder_name = name
        return cls

    return deco


def list_encoders() -> list[str]:
    """Names of every registered encoder, sorted (``auto`` is not one: it picks among them)."""
    return sorted(_ENCODERS)


def get_encoder_class(name: str) -> Type[Encoder]:
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known encoders: auto, {', '.join(list_encoders())}")
    return _ENCODERS[name]


def unregister_encoder(name: str) -> None:
    """Remove a registered encoder (for tests that register temporary encoders)."""
    _ENCODERS.pop(name, None)


def _to_float(obs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 pixels -> [0, 1]; float observations are only cast."""
    if obs.dtype == torch.uint8:
        return obs.to(dtype) * (1.0 / 255.0)
    return obs.to(dtype)


def _check_obs(obs: torch.Tensor, obs_shape: Tuple[int, ...], encoder: str) -> None:
    if tuple(obs.shape[1:]) != tuple(obs_shape):
        raise ValueError(f"{encoder} encoder expects observations [N, {', '.join(map(str, obs_shape))}], "
                         f"got {list(obs.shape)}")


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


def _check_image_shape(obs_shape: Sequence[int], encoder: str) -> None:
    if len(obs_shape) != 3:
        raise ValueError(f"encoder {encoder!r} needs image observations [C, H, W], got shape {list(obs_shape)}")


@register_encoder("impala")
class ImpalaResNet(Encoder):
    """IMPALA ResNet for channel-first images [C, H, W]."""

    default_feature_size = 256

    def __init__(self, obs_shape: Sequence[int], feature_size: int = 256,
                 channels: Sequence[int] = (16, 32, 32)):
        super().__init__()
        _check_image_shape(obs_shape, "impala")
        self.obs_shape = tuple(obs_shape)
        c, h, w = self.obs_shape
        stages = []
        for ch in channels:
            stages.append(nn.Sequential(
                nn.Conv2d(c, ch, 3, stride=1, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                ResidualBlock(ch),
                ResidualBlock(ch)))
            c, h, w = ch, (h - 1) // 2 + 1, (w - 1) // 2 + 1        # max-pool 3/2 padding 1
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c * h * w, feature_size)                   # 2048 -> 256 on [3, 64, 64]
        self.output_size = feature_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # obs: [N, C, H, W] -> [N, feature_size]
        _check_obs(obs, self.obs_shape, "impala")
        # channels-last is about 2x faster for these convolutions on the CPU (and the GPU's tensor cores)
        x = _to_float(obs, self.fc.weight.dtype).contiguous(memory_format=torch.channels_last)
        x = self.stages(x)                                                  # [N, 32, H/8, W/8]
        x = F.relu(x).flatten(1)                                        # [N, 2048]
        return F.relu(self.fc(x))                                       # [N, feature_size]


@register_encoder("nature")
class NatureCNN(Encoder):
    """The DQN (Nature 2015) convolutional network for channel-first frame stacks."""

    default_feature_size = 512
    standard_init = "orthogonal"        # baselines, SB3, CleanRL

    def __init__(self, obs_shape: Sequence[int], feature_size: int = 512):
        super().__init__()
        _check_image_shape(obs_shape, "nature")
        self.obs_shape = tuple(obs_shape)
        c, h, w = self.obs_shape
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
        if h < 1 or w < 1:
            raise ValueError(f"nature encoder needs images of at least 36x36, got {list(obs_shape)}")
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU())
        self.fc = nn.Linear(64 * h * w, feature_size)                   # 3136 -> 512 on [4, 84, 84]
        self.output_size = feature_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # obs: [N, C, H, W] -> [N, feature_size]
        _check_obs(obs, self.obs_shape, "nature")
        x = _to_float(obs, self.fc.weight.dtype).contiguous(memory_format=torch.channels_last)
        x = self.convs(x).flatten(1)                                        # [N, 3136]
        return F.relu(self.fc(x))                                          # [N, feature_size]


@register_encoder("mlp")
class MLPEncoder(Encoder):
    """Flatten, then ``Linear + ReLU`` for each size in ``hidden_sizes`` and for ``feature_size``."""

    default_feature_size = 64

    def __init__(self, obs_shape: Sequence[int], feature_size: int = 64, hidden_sizes: Sequence[int] = (64,)):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        n_in = 1
        for s in self.obs_shape:
            n_in *= s
        layers = []
        for size in (*hidden_sizes, feature_size):
            layers += [nn.Linear(n_in, size), nn.ReLU()]
            n_in = size
        self.net = nn.Sequential(*layers)
        self.output_size = n_in

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # obs: [N, *obs_shape] -> [N, feature_size]
        _check_obs(obs, self.obs_shape, "mlp")
        return self.net(_to_float(obs, self.net[0].weight.dtype).flatten(1))


def _dtype_name(obs_dtype) -> str:
    return str(obs_dtype).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")


def choose_encoder(obs_shape: Sequence[int], name: str = "auto") -> str:
    """The encoder ``make_encoder`` builds for ``obs_shape``: ``name`` itself, or for "auto"
    the choice by shape: 3-D images [C, 84, 84] -> ``nature``; other 3-D images ([3, 64, 64]
    ProcGen and any other size) -> ``impala``; vectors and every other shape -> ``mlp``."""
    if name != "auto":
        get_encoder_class(name)                          # one line naming the known encoders
    shape = tuple(obs_shape)
    if not shape or any((not isinstance(s, int)) or s < 1 for s in shape):
        raise ValueError(f"observation shape must be a non-empty tuple of positive ints, got {list(shape)}")
    if name != "auto":
        return name
    if len(shape) == 3:
        if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
            raise ValueError(f"image observations must be channel-first [C, H, W], got {list(shape)}")
        return "nature" if shape[1:] == (84, 84) else "impala"
    return "mlp"


def init_encoder(encoder: Encoder, init: str = "standard") -> Encoder:
    """Initialise ``encoder`` in place: ``standard`` applies its class's ``standard_init``,
    ``torch`` keeps PyTorch's defaults, ``orthogonal`` initialises every conv and linear
    layer orthogonally (gain sqrt(2), zero biases); see the module docstring."""
    if init not in ENCODER_INITS:
        raise ValueError(f"unknown encoder init {init!r}; valid: {', '.join(ENCODER_INITS)}")
    if init == "standard":
        init = type(encoder).standard_init
    if init == "torch":
        return encoder
    for m in encoder.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, ORTHOGONAL_GAIN)
            nn.init.zeros_(m.bias)
    return encoder


def make_encoder(obs_shape: Sequence[int], obs_dtype="uint8", name: str = "auto",
                 feature_size: int | None = None, init: str = "standard") -> Encoder:
    """Build the encoder registered as ``name`` for ``obs_shape`` (``auto``: by shape,
    :func:`choose_encoder`). ``feature_size`` is the output size (IMPALA fc, Nature fc, last
    MLP layer); None takes the encoder's ``default_feature_size`` (256, 512, 64).
    ``obs_dtype`` (e.g. "uint8", "float32") is checked: uint8 inputs are scaled by 1/255.
    ``init``: ``standard``, ``torch`` or ``orthogonal`` (:func:`init_encoder`).
    """
    cls = get_encoder_class(choose_encoder(obs_shape, name))
    dtype = _dtype_name(obs_dtype)
    if dtype not in ("uint8", "float32", "float64", "float16", "int8", "int16", "int32", "int64", "bool"):
        raise ValueError(f"unsupported observation dtype {obs_dtype!r}")
    size = cls.default_feature_size if feature_size is None else feature_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"feature_size must be a positive integer, got {feature_size!r}")
    if init not in ENCODER_INITS:
        raise ValueError(f"unknown encoder init {init!r}; valid: {', '.join(ENCODER_INITS)}")
    return init_encoder(cls(tuple(obs_shape), size), init)
