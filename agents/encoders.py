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
``[N, output_size]`` in the dtype of its parameters.

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

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

ENCODERS = ("impala", "nature", "mlp")
ENCODER_INITS = ("standard", "torch", "orthogonal")
ORTHOGONAL_GAIN = 2 ** 0.5          # ReLU gain
DEFAULT_FEATURE_SIZE = {"impala": 256, "nature": 512, "mlp": 64}


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


class ImpalaResNet(nn.Module):
    """IMPALA ResNet for channel-first images [C, H, W]."""

    def __init__(self, obs_shape: Sequence[int], feature_size: int = 256,
                 channels: Sequence[int] = (16, 32, 32)):
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"impala encoder needs image observations [C, H, W], got {list(obs_shape)}")
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


class NatureCNN(nn.Module):
    """The DQN (Nature 2015) convolutional network for channel-first frame stacks."""

    def __init__(self, obs_shape: Sequence[int], feature_size: int = 512):
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"nature encoder needs image observations [C, H, W], got {list(obs_shape)}")
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


class MLPEncoder(nn.Module):
    """Flatten, then ``Linear + ReLU`` for each size in ``hidden_sizes`` (the last is the output)."""

    def __init__(self, obs_shape: Sequence[int], hidden_sizes: Sequence[int] = (64, 64)):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("mlp encoder needs at least one layer size, got hidden_sizes=()")
        self.obs_shape = tuple(obs_shape)
        n_in = 1
        for s in self.obs_shape:
            n_in *= s
        layers = []
        for size in hidden_sizes:
            layers += [nn.Linear(n_in, size), nn.ReLU()]
            n_in = size
        self.net = nn.Sequential(*layers)
        self.output_size = n_in

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # obs: [N, *obs_shape] -> [N, hidden_sizes[-1]]
        _check_obs(obs, self.obs_shape, "mlp")
        return self.net(_to_float(obs, self.net[0].weight.dtype).flatten(1))


def _dtype_name(obs_dtype) -> str:
    return str(obs_dtype).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")


def choose_encoder(obs_shape: Sequence[int], name: str = "auto") -> str:
    """The encoder ``make_encoder`` builds for ``obs_shape`` (``name`` "auto" picks by shape)."""
    valid = ("auto",) + ENCODERS
    if name not in valid:
        raise ValueError(f"unknown encoder {name!r}; valid encoders: {', '.join(valid)}")
    shape = tuple(obs_shape)
    if not shape or any((not isinstance(s, int)) or s < 1 for s in shape):
        raise ValueError(f"observation shape must be a non-empty tuple of positive ints, got {list(shape)}")
    if name in ("impala", "nature") and len(shape) != 3:
        raise ValueError(f"encoder {name!r} needs image observations [C, H, W], got shape {list(shape)}")
    if name != "auto":
        return name
    if len(shape) == 3:
        if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
            raise ValueError(f"image observations must be channel-first [C, H, W], got {list(shape)}")
        return "nature" if shape[1:] == (84, 84) else "impala"
    return "mlp"


def init_encoder(encoder: nn.Module, kind: str, init: str = "standard") -> nn.Module:
    """Initialise ``encoder`` (of kind ``kind``) in place; see the module docstring."""
    if init not in ENCODER_INITS:
        raise ValueError(f"unknown encoder init {init!r}; valid: {', '.join(ENCODER_INITS)}")
    if init == "torch" or (init == "standard" and kind != "nature"):
        return encoder
    for m in encoder.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, ORTHOGONAL_GAIN)
            nn.init.zeros_(m.bias)
    return encoder


def make_encoder(obs_shape: Sequence[int], obs_dtype="uint8", name: str = "auto",
                 feature_size: int | None = None, init: str = "standard") -> nn.Module:
    """Build the encoder for ``obs_shape``.

    ``name="auto"``: 3-D images [C, 84, 84] -> ``nature``; other 3-D images ([3, 64, 64]
    ProcGen and any other size) -> ``impala``; 1-D vectors and every other shape ->
    ``mlp`` (flattened). ``feature_size`` is the output size (IMPALA fc, Nature fc, last
    MLP layer); None takes each encoder's standard size (256, 512, 64). ``obs_dtype``
    (e.g. "uint8", "float32") is checked: uint8 inputs are scaled by 1/255. ``init``:
    ``standard``, ``torch`` or ``orthogonal`` (:func:`init_encoder`).
    """
    kind = choose_encoder(obs_shape, name)
    dtype = _dtype_name(obs_dtype)
    if dtype not in ("uint8", "float32", "float64", "float16", "int8", "int16", "int32", "int64", "bool"):
        raise ValueError(f"unsupported observation dtype {obs_dtype!r}")
    size = DEFAULT_FEATURE_SIZE[kind] if feature_size is None else feature_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"feature_size must be a positive integer, got {feature_size!r}")
    if init not in ENCODER_INITS:
        raise ValueError(f"unknown encoder init {init!r}; valid: {', '.join(ENCODER_INITS)}")
    if kind == "impala":
        enc = ImpalaResNet(obs_shape, size)
    elif kind == "nature":
        enc = NatureCNN(obs_shape, size)
    else:
        enc = MLPEncoder(obs_shape, (64, size))
    return init_encoder(enc, kind, init)
