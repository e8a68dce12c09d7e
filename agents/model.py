"""The agent: encoder -> memory core -> policy and value heads (docs/design.md#the-agent).

One model for every core: Irie et al., "A Modern Self-Referential Weight Matrix That
Learns to Modify Itself", ICML 2022 (ProcGen, SRWM) and Irie et al., "Going Beyond
Linear Transformers with Recurrent Fast Weight Programmers", NeurIPS 2021 (Atari),
both built on the IMPALA agent of Espeholt et al., ICML 2018. Data flow::

    obs [T, B, *obs_shape] --encoder--> features [T, B, F]
    [features, clip(reward, -c, c), one_hot(task)?] --> core input [T, B, F + 1 (+ num_tasks)]
    core(input, state, reset=done) --> [T, B, core.output_size], new state
    policy head (Linear) --> logits [T, B, A];   value head (Linear) --> baseline [T, B]
    action = sample(softmax(logits))   (only when asked: actions="sample"; argmax with
                                        actions="greedy"; uniform where the logits are not finite)

The action layout ``action_dims`` (:mod:`agents.action_dist`) is ``(A,)`` for a Discrete
action space, one categorical over the A logits and an action [T, B]; for a
MultiDiscrete space ``(n_1, ..., n_K)``, A = sum n_k logits cut into one categorical
per component, sampled independently, and an action [T, B, K].

The same call serves one-step acting (T = 1, state carried by the caller) and
whole-unroll learning (T = unroll length, from the unroll's stored initial state);
``done[t]`` resets the core state before step t. The state passed in is never
modified in place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from agents import action_dist
from agents.core import State, StateSpec, core_option_defaults, core_option_names, list_cores, make_core
from agents.cores.lstm import LSTM_LEGACY_OPTIONS
from agents.cores.srwm import SRWM_PAPER_OPTIONS
from agents.encoders import ENCODER_INITS, choose_encoder, list_encoders, make_encoder


@dataclass
class ModelConfig:
    """Model options; each field's ``help`` is its command-line help text."""

    core: str = field(default="srwm", metadata={
        "help": "memory core, one of the registered cores (ff, lstm, linear_transformer, deltanet, "
                "srwm, fake_sr, sr_delta, srwm_no_carry, rec_delta, delta_rnn, gated_deltanet, ...)"})
    encoder: str = field(default="auto", metadata={
        "help": "observation encoder: auto (by shape: [C,84,84] nature, other images impala, "
                "vectors mlp) or a registered encoder (impala, nature, mlp, ...)"})
    hidden_size: int = field(default=0, metadata={
        "help": "core width: d_model of the fast-weight cores (must equal num_heads x head_size), the "
                "LSTM's units, ff's width; 0 = the core's own default (256 for lstm as in the papers, "
                "128 = 8 x 16 for the others)"})
    num_layers: int = field(default=2, metadata={"help": "fast-weight layers in the core"})
    num_heads: int = field(default=8, metadata={"help": "heads per fast-weight layer"})
    head_size: int = field(default=16, metadata={"help": "size d of each head"})
    d_ff: int = field(default=512, metadata={"help": "inner size of each layer's feed-forward block"})
    dropout: float = field(default=0.0, metadata={"help": "dropout rate inside the core, in [0, 1)"})
    detach_each_step: bool = field(default=False, metadata={
        "help": "cut the gradient through the fast weights after every step (the original IDSIA "
                "learner); default: backpropagate through the whole unroll"})
    srwm_input_norm: str = field(default="layernorm", metadata={
        "help": "SRWM family (srwm, sr_delta, srwm_no_carry): 'layernorm' applies a LayerNorm to h "
                "before the per-head input softmax, x = softmax(s LN(h)); 'none' is the IDSIA RL "
                "layer's x = softmax(s h) (docs/srwm.md)", "choices": ("none", "layernorm")})
    srwm_input_scale: float = field(default=1.0, metadata={
        "help": "SRWM family: inverse temperature s of the input softmax (1 = the IDSIA RL layer)"})
    srwm_learn_input_scale: bool = field(default=False, metadata={
        "help": "SRWM family: learn s per head (initialised to --srwm-input-scale)"})
    srwm_beta_init: float = field(default=0.0, metadata={
        "help": "SRWM family: mean of the N(mean, 1/d) initialisation of W^b, the self-modification "
                "rates' weights (0 = the IDSIA RL layer; the paper's supervised layer uses -1 or 0)"})
    srwm_qk_init_scale: float = field(default=4.0, metadata={
        "help": "SRWM family: W^q and W^k are initialised N(0, scale^2 / d) (1 = the IDSIA RL layer; "
                "--core srwm_paper is the IDSIA RL layer whatever these options say)"})
    lstm_forget_bias: float = field(default=1.0, metadata={
        "help": "lstm: initial bias of the forget gate (1 as Gers et al. 2000 and Jozefowicz et al. 2015; "
                "0 starts the gate at 0.5, close to PyTorch's and torchbeast's zero-mean default)"})
    lstm_input_norm: str = field(default="layernorm", metadata={
        "help": "lstm: 'layernorm' normalises the core input (features, reward, task id) before the LSTM; "
                "'none' feeds it directly, as torchbeast (on Pong its unbounded ReLU features saturated "
                "the gates: docs/learning/README.md section 3)"})
    encoder_init: str = field(default="standard", metadata={
        "help": "encoder initialisation: standard (the Nature CNN orthogonal with gain sqrt(2) as in "
                "baselines/SB3/CleanRL, the others PyTorch's defaults), torch (PyTorch's defaults "
                "everywhere, as torchbeast and the IDSIA code) or orthogonal (every encoder layer)"})
    feature_size: int = field(default=256, metadata={
        "help": "encoder output size (IMPALA fc, Nature fc, last MLP layer); 0 = the encoder's "
                "standard size (IMPALA 256, Nature 512, MLP 64)"})
    use_task_id: bool = field(default=False, metadata={
        "help": "concatenate a one-hot task id to the features given to the core"})
    reward_clip: float = field(default=1.0, metadata={
        "help": "the reward fed to the core is clipped to [-c, c]; 0 feeds the raw reward"})
    encoder_dtype: str = field(default="float32", metadata={
        "help": "encoder precision: float32, or bfloat16 (mixed precision; the core and its fast "
                "weights stay float32)"})
    compile_encoder: bool = field(default=False, metadata={
        "help": "torch.compile the encoder (worth it on a GPU learner; slow to start)"})
    core_import: str = field(default="", metadata={
        "help": "comma list of Python modules to import before the core and encoder registries are "
                "read (a user's module that registers a core or an encoder); imported in every process"})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def validate_model_config(cfg: ModelConfig) -> None:
    """Raise ValueError naming the first bad option; builds nothing."""
    from envs.imports import import_modules
    import_modules(cfg.core_import, "--core-import")
    known = list_cores()
    if cfg.core not in known:
        raise ValueError(f"--core {cfg.core!r} is not a registered core; known cores: {', '.join(known)}")
    if cfg.encoder != "auto" and cfg.encoder not in list_encoders():
        raise ValueError(f"--encoder {cfg.encoder!r} is not a registered encoder; known encoders: "
                         f"auto, {', '.join(list_encoders())}")
    for name in ("num_layers", "num_heads", "head_size", "d_ff"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{_flag(name)} must be a positive integer, got {v!r}")
    if not isinstance(cfg.hidden_size, int) or isinstance(cfg.hidden_size, bool) or cfg.hidden_size < 0:
        raise ValueError(f"--hidden-size must be a positive integer (0 = the core's default), "
                         f"got {cfg.hidden_size!r}")
    if not isinstance(cfg.feature_size, int) or isinstance(cfg.feature_size, bool) or cfg.feature_size < 0:
        raise ValueError(f"--feature-size must be a non-negative integer (0 = encoder default), "
                         f"got {cfg.feature_size!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {cfg.dropout!r}")
    if not cfg.reward_clip >= 0.0:
        raise ValueError(f"--reward-clip must be >= 0 (0 = no clipping), got {cfg.reward_clip!r}")
    if cfg.encoder_init not in ENCODER_INITS:
        raise ValueError(f"--encoder-init {cfg.encoder_init!r} is unknown; valid: {', '.join(ENCODER_INITS)}")
    if cfg.encoder_dtype not in ("float32", "bfloat16"):
        raise ValueError(f"--encoder-dtype must be float32 or bfloat16, got {cfg.encoder_dtype!r}")
    if cfg.srwm_input_norm not in ("none", "layernorm"):
        raise ValueError(f"--srwm-input-norm must be none or layernorm, got {cfg.srwm_input_norm!r}")
    if cfg.lstm_input_norm not in ("none", "layernorm"):
        raise ValueError(f"--lstm-input-norm must be none or layernorm, got {cfg.lstm_input_norm!r}")
    for name in ("srwm_input_scale", "srwm_qk_init_scale"):
        v = getattr(cfg, name)
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")):
            raise ValueError(f"{_flag(name)} must be a positive number, got {v!r}")
    v = cfg.lstm_forget_bias
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < float("inf")):
        raise ValueError(f"--lstm-forget-bias must be a finite number, got {v!r}")
    opts = core_options(cfg)
    if {"hidden_size", "num_heads", "head_size"} <= set(opts) \
            and opts["num_heads"] * opts["head_size"] != opts["hidden_size"]:
        default = " (the core's default --hidden-size)" if cfg.hidden_size == 0 else ""
        raise ValueError(
            f"--num-heads x --head-size must equal --hidden-size for core {cfg.core!r}: "
            f"{opts['num_heads']} x {opts['head_size']} = {opts['num_heads'] * opts['head_size']} "
            f"!= {opts['hidden_size']}{default}")


def core_options(cfg: ModelConfig) -> Dict[str, object]:
    """The options ``make_core(cfg.core, ...)`` is given: the ``ModelConfig`` field of each
    keyword option the core's constructor names (the core's declaration of what it takes,
    README "Adding a memory core"), with ``hidden_size`` 0 replaced by the constructor's own
    default. An option of the constructor that is no ``ModelConfig`` field keeps its default."""
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    defaults = core_option_defaults(cfg.core)
    opts: Dict[str, object] = {}
    for name in core_option_names(cfg.core):
        if name in names:
            opts[name] = getattr(cfg, name)
        elif name not in defaults:
            raise ValueError(f"core {cfg.core!r} takes option {name!r}, which has no default and is no "
                             f"model option; give it a default in the core's constructor")
    if opts.get("hidden_size") == 0:
        if "hidden_size" not in defaults:
            raise ValueError(f"core {cfg.core!r} has no default hidden_size; set --hidden-size")
        opts["hidden_size"] = defaults["hidden_size"]
    return opts


class Agent(nn.Module):
    """obs -> encoder -> [features, clipped reward, (one-hot task)] -> core -> policy logits, baseline."""

    def __init__(self, cfg: ModelConfig, obs_shape: tuple, obs_dtype: str, num_actions: int,
                 num_tasks: int = 1, action_dims: Optional[Tuple[int, ...]] = None):
        """``num_actions``: the width of the logits; ``action_dims``: the action layout
        (:mod:`agents.action_dist`), components summing to ``num_actions``; None is one
        categorical head ``(num_actions,)``."""
        super().__init__()
        validate_model_config(cfg)
        if not isinstance(num_actions, int) or num_actions < 1:
            raise ValueError(f"num_actions must be a positive integer, got {num_actions!r}")
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
        dims = action_dist.dims_or_single(action_dims, num_actions)
        if action_dist.num_logits(dims) != num_actions:
            raise ValueError(f"the action layout {dims} has {action_dist.num_logits(dims)} logits, "
                             f"not num_actions = {num_actions}")
        self.action_dims = dims
        self.cfg = dataclasses.replace(cfg)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dtype = str(obs_dtype).replace("torch.", "")
        self.num_actions = num_actions
        self.num_tasks = num_tasks
        self.encoder_name = choose_encoder(self.obs_shape, cfg.encoder)
        self.encoder = make_encoder(self.obs_shape, self.obs_dtype, self.encoder_name,
                                    feature_size=cfg.feature_size or None, init=cfg.encoder_init)
        core_in = self.encoder.output_size + 1 + (num_tasks if cfg.use_task_id else 0)
        self.core = make_core(cfg.core, core_in, **core_options(cfg))
        if cfg.compile_encoder:
            self.encoder.compile(dynamic=True)       # keeps parameter names: checkpoints unaffected
        self.policy = nn.Linear(self.core.output_size, num_actions)
        self.baseline = nn.Linear(self.core.output_size, 1)

    @property
    def carries_state(self) -> bool:
        """False when the core's state is reset at every unroll start (srwm_no_carry)."""
        return bool(self.core.carries_state_across_unrolls)

    def state_spec(self) -> StateSpec:
        return self.core.state_spec()

    def initial_state(self, batch_size: int, device=None) -> State:
        return self.core.initial_state(batch_size, device)

    def architecture(self) -> dict:
        """Plain-data description used to check that a checkpoint fits this model."""
        arch = dataclasses.asdict(self.cfg)                      # includes "core"
        arch.update(core_options(self.cfg))                      # the sizes built (hidden_size 0: the core's)
        # speed-only options, the initialisation and imports do not change what a set of weights means
        for speed_only in ("encoder_dtype", "compile_encoder", "encoder_init", "lstm_forget_bias", "core_import"):
            arch.pop(speed_only, None)
        accepted = core_option_names(self.cfg.core)
        for name, old in {**SRWM_PAPER_OPTIONS, **LSTM_LEGACY_OPTIONS}.items():
            # listed only where they make a difference: checkpoints written before these
            # options existed (the IDSIA RL layer, the LSTM without an input norm) keep matching
            if name not in accepted or arch.get(name) == old:
                arch.pop(name, None)
        arch = {**arch,
                "encoder_kind": self.encoder_name,
                "obs_shape": list(self.obs_shape), "obs_dtype": self.obs_dtype,
                "num_actions": self.num_actions, "num_tasks": self.num_tasks,
                "state_spec": self.state_spec().to_plain()}
        if len(self.action_dims) > 1:
            # only a factored policy lists its layout: a checkpoint without the key is one
            # categorical head over num_actions (every checkpoint written before layouts)
            arch["action_dims"] = list(self.action_dims)
        return arch

    def core_input(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """[features, clipped reward, (one-hot task)]: [T, B, core input size]."""
        obs = inputs["obs"]                                                 # [T, B, *obs_shape]
        if obs.dim() != 2 + len(self.obs_shape) or tuple(obs.shape[2:]) != self.obs_shape:
            raise ValueError(f"inputs['obs'] must be [T, B, {', '.join(map(str, self.obs_shape))}], "
                             f"got {list(obs.shape)}")
        T, B = obs.shape[:2]
        flat = obs.reshape(T * B, *self.obs_shape)
        if self.cfg.encoder_dtype == "bfloat16":
            with torch.autocast(flat.device.type, dtype=torch.bfloat16):
                feats = self.encoder(flat)
            feats = feats.float().view(T, B, -1)                            # [T, B, F]
        else:
            feats = self.encoder(flat).view(T, B, -1)                       # [T, B, F]
        reward = inputs["reward"].to(feats.dtype)                           # [T, B]
        if tuple(reward.shape) != (T, B):
            raise ValueError(f"inputs['reward'] must be [T, B] = [{T}, {B}], got {list(reward.shape)}")
        if self.cfg.reward_clip > 0:
            reward = reward.clamp(-self.cfg.reward_clip, self.cfg.reward_clip)
        parts = [feats, reward.unsqueeze(-1)]
        if self.cfg.use_task_id:
            task = inputs.get("task")
            if task is None:
                raise ValueError("use_task_id is set but inputs has no 'task' entry (int64 [T, B])")
            if tuple(task.shape) != (T, B):
                raise ValueError(f"inputs['task'] must be [T, B] = [{T}, {B}], got {list(task.shape)}")
            if task.numel() and (int(task.min()) < 0 or int(task.max()) >= self.num_tasks):
                raise ValueError(f"task ids must be in [0, {self.num_tasks}), got range "
                                 f"[{int(task.min())}, {int(task.max())}]")
            parts.append(F.one_hot(task.long(), self.num_tasks).to(feats.dtype))   # [T, B, num_tasks]
        return torch.cat(parts, dim=-1)

    def forward(self, inputs: Dict[str, torch.Tensor], state: State,
                actions: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], State]:
        """inputs: obs [T, B, *obs_shape], reward [T, B] (raw), done bool [T, B], task int64 [T, B]
        (with use_task_id). Returns ({policy_logits [T, B, A], baseline [T, B]}, new state), with
        ``action`` [T, B] ([T, B, K] for a layout of K > 1 components) when asked:
        ``actions="sample"`` (the actors) or ``"greedy"`` (argmax of each component).
        The learner and the evaluation (which samples with its own generators) ask for none."""
        if actions not in (None, "sample", "greedy"):
            raise ValueError(f"actions must be None, 'sample' or 'greedy', got {actions!r}")
        x = self.core_input(inputs)                                         # [T, B, core input]
        T, B = x.shape[:2]
        done = inputs["done"]
        if tuple(done.shape) != (T, B):
            raise ValueError(f"inputs['done'] must be [T, B] = [{T}, {B}], got {list(done.shape)}")
        core_out, new_state = self.core(x, state, done.to(torch.bool))      # [T, B, core.output_size]
        logits = self.policy(core_out)                                      # [T, B, A]
        baseline = self.baseline(core_out).squeeze(-1)                      # [T, B]
        if actions is None:
            return {"policy_logits": logits, "baseline": baseline}, new_state
        if actions == "greedy":
            action = action_dist.greedy(logits, self.action_dims)          # [T, B] (or [T, B, K])
        else:
            # a policy whose weights went non-finite acts uniformly instead of crashing the
            # actor; the learner sees the non-finite logits and stops the run (max_nonfinite_in_row)
            action = action_dist.sample(logits.detach().float(), self.action_dims)   # [T, B] (or [T, B, K])
        return {"action": action, "policy_logits": logits, "baseline": baseline}, new_state


def build_agent(cfg: ModelConfig, obs_spec, num_actions: int, num_tasks: int = 1,
                action_dims: Optional[Tuple[int, ...]] = None) -> Agent:
    """Build the :class:`Agent` for an env's ``ObsSpec`` (envs.base) and action layout
    (``describe_env(cfg).action_dims``; None: one categorical head over ``num_actions``)."""
    validate_model_config(cfg)
    return Agent(cfg, tuple(obs_spec.shape), obs_spec.dtype, num_actions, num_tasks, action_dims)


__all__ = ["ModelConfig", "Agent", "build_agent", "validate_model_config", "core_options"]
