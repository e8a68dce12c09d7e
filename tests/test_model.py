"""Encoders and the Agent (agents/encoders.py, agents/model.py; docs/design.md#the-agent).

Observation layouts: ProcGen [3, 64, 64] uint8 (15 actions), Atari [4, 84, 84] uint8
(6 actions), vectors [8] float32. Encoders are checked against functional
re-implementations written from the papers' descriptions; the agent against its own
pieces (heads on the core output, one-step acting against whole-unroll learning).
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from agents.core import list_cores
from agents.encoders import ImpalaResNet, MLPEncoder, NatureCNN, choose_encoder, make_encoder
from agents.model import Agent, ModelConfig, build_agent, core_options, validate_model_config
from envs.base import ObsSpec

torch.set_num_threads(1)
F64 = torch.float64
PROCGEN = ObsSpec((3, 64, 64), "uint8")
ATARI = ObsSpec((4, 84, 84), "uint8")
VECTOR = ObsSpec((8,), "float32")
SPECS = {"procgen": (PROCGEN, 15), "atari": (ATARI, 6), "vector": (VECTOR, 4)}
SMALL = dict(hidden_size=16, num_layers=2, num_heads=2, head_size=8, d_ff=32)


def random_obs(spec: ObsSpec, *lead, seed=0):
    g = torch.Generator().manual_seed(seed)
    if spec.dtype == "uint8":
        return torch.randint(0, 256, (*lead, *spec.shape), generator=g, dtype=torch.uint8)
    return torch.randn(*lead, *spec.shape, generator=g)


def unroll_inputs(spec: ObsSpec, T: int, B: int, seed=0, num_tasks=1):
    g = torch.Generator().manual_seed(seed + 1)
    done = torch.rand(T, B, generator=g) < 0.3
    return {"obs": random_obs(spec, T, B, seed=seed),
            "reward": 3 * torch.randn(T, B, generator=g),
            "done": done,
            "task": torch.randint(0, num_tasks, (T, B), generator=g)}


def small_agent(spec, num_actions, seed=0, num_tasks=1, **cfg):
    torch.manual_seed(seed)
    return build_agent(ModelConfig(**{**SMALL, **cfg}), spec, num_actions, num_tasks).to(F64).eval()


# ============================================================================ encoders

def impala_reference(enc: ImpalaResNet, obs):
    """IMPALA ResNet as Espeholt et al. 2018 describe it, from the module's weights."""
    x = obs.to(F64) / 255.0
    for stage in enc.stages:
        conv, _, res0, res1 = stage
        x = F.max_pool2d(F.conv2d(x, conv.weight, conv.bias, padding=1), 3, stride=2, padding=1)
        for res in (res0, res1):
            y = F.conv2d(F.relu(x), res.conv0.weight, res.conv0.bias, padding=1)
            x = x + F.conv2d(F.relu(y), res.conv1.weight, res.conv1.bias, padding=1)
    return F.relu(F.linear(F.relu(x).flatten(1), enc.fc.weight, enc.fc.bias))


def nature_reference(enc: NatureCNN, obs):
    x = obs.to(F64) / 255.0
    (c1, _, c2, _, c3, _) = enc.convs
    x = F.relu(F.conv2d(x, c1.weight, c1.bias, stride=4))
    x = F.relu(F.conv2d(x, c2.weight, c2.bias, stride=2))
    x = F.relu(F.conv2d(x, c3.weight, c3.bias, stride=1))
    return F.relu(F.linear(x.flatten(1), enc.fc.weight, enc.fc.bias))


def test_impala_encoder_on_procgen():
    enc = make_encoder(PROCGEN.shape, PROCGEN.dtype).to(F64)
    assert isinstance(enc, ImpalaResNet) and enc.output_size == 256
    assert enc.fc.in_features == 2048                            # 32 channels x 8 x 8
    # Hand count: convs 448 + 2x4640 | 4640 + 4x9248 | 9248 + 4x9248, fc 2048*256 + 256.
    assert sum(p.numel() for p in enc.parameters()) == 97_600 + 524_544
    obs = random_obs(PROCGEN, 3)
    out = enc(obs)
    assert out.shape == (3, 256) and out.dtype == F64
    torch.testing.assert_close(out, impala_reference(enc, obs), rtol=1e-10, atol=1e-10)


def test_nature_encoder_on_atari():
    enc = make_encoder(ATARI.shape, ATARI.dtype).to(F64)
    assert isinstance(enc, NatureCNN) and enc.output_size == 512 and enc.fc.in_features == 3136
    obs = random_obs(ATARI, 2)
    torch.testing.assert_close(enc(obs), nature_reference(enc, obs), rtol=1e-10, atol=1e-10)
    assert make_encoder(ATARI.shape, "uint8", feature_size=256).output_size == 256


@pytest.mark.parametrize("shape", [(8,), (2, 3)])
def test_mlp_encoder_flattens_vectors_and_other_boxes(shape):
    enc = make_encoder(shape, "float32", feature_size=32).to(F64)
    assert isinstance(enc, MLPEncoder) and enc.output_size == 32
    obs = torch.randn(5, *shape, dtype=F64)
    l1, _, l2, _ = enc.net
    want = F.relu(F.linear(F.relu(F.linear(obs.flatten(1), l1.weight, l1.bias)), l2.weight, l2.bias))
    torch.testing.assert_close(enc(obs), want, rtol=1e-12, atol=1e-12)
    assert make_encoder(shape, "float32").output_size == 64


def test_choose_encoder_and_errors():
    assert choose_encoder((3, 64, 64)) == "impala"
    assert choose_encoder((4, 84, 84)) == "nature"
    assert choose_encoder((3, 96, 96)) == "impala"
    assert choose_encoder((8,)) == "mlp" and choose_encoder((4, 5)) == "mlp"
    assert choose_encoder((4, 84, 84), "impala") == "impala"
    assert choose_encoder((3, 64, 64), "mlp") == "mlp"
    with pytest.raises(ValueError, match=r"^unknown encoder 'resnet'; known encoders: auto, impala, mlp, nature$"):
        make_encoder((3, 64, 64), "uint8", name="resnet")
    with pytest.raises(ValueError, match=r"encoder 'nature' needs image observations \[C, H, W\], got shape \[8\]"):
        make_encoder((8,), "float32", name="nature")
    with pytest.raises(ValueError, match=r"channel-first \[C, H, W\], got \[64, 64, 3\]"):
        make_encoder((64, 64, 3), "uint8")
    with pytest.raises(ValueError, match=r"feature_size must be a positive integer, got 0"):
        make_encoder((8,), "float32", feature_size=0)
    with pytest.raises(ValueError, match=r"expects observations \[N, 3, 64, 64\], got \[2, 3, 32, 32\]"):
        make_encoder((3, 64, 64), "uint8")(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


@pytest.fixture
def linear_encoder():
    """An encoder registered by the test, as a user's module would."""
    from agents.encoders import Encoder, register_encoder, unregister_encoder

    @register_encoder("test_linear")
    class LinearEncoder(Encoder):
        default_feature_size = 6
        standard_init = "orthogonal"

        def __init__(self, obs_shape, feature_size):
            super().__init__()
            self.fc = torch.nn.Linear(math.prod(obs_shape), feature_size)
            self.output_size = feature_size

        def forward(self, obs):
            return torch.tanh(self.fc(obs.flatten(1).to(self.fc.weight.dtype)))

    yield "test_linear", LinearEncoder
    unregister_encoder("test_linear")


def test_a_registered_encoder_is_built_by_the_model(linear_encoder):
    from agents.encoders import list_encoders
    name, cls = linear_encoder
    assert name in list_encoders()
    agent = small_agent(VECTOR, 4, core="lstm", encoder=name, feature_size=0)
    assert isinstance(agent.encoder, cls) and agent.encoder.output_size == 6        # its default size
    assert agent.core.input_size == 6 + 1 and agent.architecture()["encoder_kind"] == name
    w = agent.encoder.fc.weight                                  # --encoder-init standard: its own choice
    torch.testing.assert_close(w @ w.T, 2 * torch.eye(6, dtype=F64), rtol=0, atol=1e-6)
    assert [k for k in agent.state_dict() if k.startswith("encoder.")] == ["encoder.fc.weight", "encoder.fc.bias"]
    inputs = unroll_inputs(VECTOR, 3, 2)
    out, _ = agent(inputs, agent.initial_state(2))
    feats = torch.tanh(agent.encoder.fc(inputs["obs"].to(F64)))
    torch.testing.assert_close(agent.core_input(inputs)[..., :6], feats)
    assert out["policy_logits"].shape == (3, 2, 4)
    assert small_agent(VECTOR, 4, encoder=name, feature_size=3).encoder.output_size == 3


def test_the_readme_encoder_example_builds_into_an_agent():
    """The code block of the README's "Adding an encoder" runs as written (doc and code cannot drift)."""
    import re
    from pathlib import Path
    from agents.encoders import unregister_encoder
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(r"<!-- encoder-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no '<!-- encoder-example -->' python block"
    try:
        exec(compile(m.group(1), "README.md", "exec"), {"__name__": "readme_encoder_example"})
        agent = small_agent(PROCGEN, 15, encoder="small_cnn", feature_size=0)
        assert type(agent.encoder).__name__ == "SmallCNN" and agent.encoder.output_size == 128
        out, _ = agent(unroll_inputs(PROCGEN, 2, 3), agent.initial_state(3))
        assert out["policy_logits"].shape == (2, 3, 15) and torch.isfinite(out["policy_logits"]).all()
        with pytest.raises(ValueError, match=r"encoder 'small_cnn' needs image observations"):
            small_agent(VECTOR, 4, encoder="small_cnn")
    finally:
        unregister_encoder("small_cnn")


def test_register_encoder_refuses_what_it_cannot_build():
    from agents.encoders import Encoder, register_encoder

    class NoSize(Encoder):
        pass

    with pytest.raises(TypeError, match=r"set the class attribute default_feature_size"):
        register_encoder("test_no_size")(NoSize)
    with pytest.raises(TypeError, match=r"expects an Encoder subclass"):
        register_encoder("test_module")(torch.nn.Linear)
    with pytest.raises(ValueError, match=r"'auto' is reserved"):
        register_encoder("auto")(type("Auto", (Encoder,), {"default_feature_size": 4}))
    with pytest.raises(ValueError, match=r"already registered by MLPEncoder"):
        register_encoder("mlp")(type("Other", (Encoder,), {"default_feature_size": 4}))


def test_an_encoder_from_a_users_module_is_found_through_core_import(tmp_path, monkeypatch):
    """--core-import imports a module that registers an encoder, in every process that builds
    the agent (the Agent validates its config, which imports the modules first)."""
    from agents.encoders import list_encoders, unregister_encoder
    (tmp_path / "fwrl_user_encoder.py").write_text(
        "import torch\nfrom agents.encoders import Encoder, register_encoder\n\n"
        "@register_encoder('user_enc')\nclass UserEncoder(Encoder):\n    default_feature_size = 5\n"
        "    def __init__(self, obs_shape, feature_size):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(obs_shape[-1], feature_size)\n        self.output_size = feature_size\n"
        "    def forward(self, obs):\n        return self.fc(obs.to(self.fc.weight.dtype))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ValueError, match=r"--encoder 'user_enc' is not a registered encoder"):
            validate_model_config(ModelConfig(encoder="user_enc"))
        agent = small_agent(VECTOR, 4, encoder="user_enc", feature_size=0, core_import="fwrl_user_encoder")
        assert type(agent.encoder).__name__ == "UserEncoder" and agent.encoder.output_size == 5
        assert "user_enc" in list_encoders()
    finally:
        unregister_encoder("user_enc")


# ============================================================================ agent

@pytest.mark.parametrize("env", SPECS)
def test_agent_output_shapes_and_heads(env):
    spec, A = SPECS[env]
    agent = small_agent(spec, A)
    T, B = 3, 2
    inputs = unroll_inputs(spec, T, B)
    out, state = agent(inputs, agent.initial_state(B), actions="sample")
    assert out["action"].shape == (T, B) and out["action"].dtype == torch.int64
    assert out["policy_logits"].shape == (T, B, A) and out["baseline"].shape == (T, B)
    assert ((0 <= out["action"]) & (out["action"] < A)).all()
    agent.state_spec().check(state, batch_size=B)
    # The heads read the core output computed from [features, clipped reward].
    core_in = agent.core_input(inputs)
    feats = agent.encoder(inputs["obs"].reshape(T * B, *spec.shape)).view(T, B, -1)
    torch.testing.assert_close(core_in[..., :-1], feats)
    torch.testing.assert_close(core_in[..., -1], inputs["reward"].to(F64).clamp(-1, 1))
    core_out, _ = agent.core(core_in, agent.initial_state(B), inputs["done"])
    torch.testing.assert_close(out["policy_logits"], F.linear(core_out, agent.policy.weight, agent.policy.bias))
    torch.testing.assert_close(out["baseline"], (core_out @ agent.baseline.weight.t()).squeeze(-1)
                               + agent.baseline.bias)


@pytest.mark.parametrize("env", SPECS)
def test_greedy_is_argmax(env):
    spec, A = SPECS[env]
    agent = small_agent(spec, A)
    out, _ = agent(unroll_inputs(spec, 2, 3), agent.initial_state(3), actions="greedy")
    assert torch.equal(out["action"], out["policy_logits"].argmax(-1))


def test_sampled_actions_follow_softmax_of_logits():
    agent = small_agent(VECTOR, 4, core="ff")
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    with torch.no_grad():
        agent.policy.weight.zero_()
        agent.policy.bias.copy_(p.log() + 1.7)                   # softmax is shift-invariant
    torch.manual_seed(0)
    n = 20_000
    out, _ = agent({"obs": torch.randn(1, n, 8), "reward": torch.zeros(1, n),
                    "done": torch.ones(1, n, dtype=torch.bool)}, {}, actions="sample")
    freq = torch.bincount(out["action"].flatten(), minlength=4).to(F64) / n
    # 5 standard errors of a proportion at n = 20000 is at most 0.018.
    torch.testing.assert_close(freq, p, rtol=0, atol=0.018)


@pytest.mark.parametrize("env,core", [("procgen", "srwm"), ("atari", "deltanet"), ("vector", "srwm"),
                                      ("vector", "lstm"), ("vector", "sr_delta"), ("vector", "ff")])
def test_one_step_calls_equal_whole_unroll(env, core):
    spec, A = SPECS[env]
    agent = small_agent(spec, A, core=core)
    T, B = 5 if env != "vector" else 9, 2
    inputs = unroll_inputs(spec, T, B, seed=3)
    inputs["done"][0, 1] = inputs["done"][2, 0] = True
    state0 = agent.initial_state(B)
    whole, state_whole = agent(inputs, state0, actions="greedy")
    state, steps = state0, []
    for t in range(T):
        out, state = agent({k: v[t:t + 1] for k, v in inputs.items()}, state, actions="greedy")
        steps.append(out)
    for key in ("policy_logits", "baseline", "action"):
        torch.testing.assert_close(torch.cat([s[key] for s in steps]), whole[key], rtol=1e-9, atol=1e-9)
    for n in state:
        torch.testing.assert_close(state[n], state_whole[n], rtol=1e-9, atol=1e-9)


def test_use_task_id_feeds_a_one_hot_task():
    agent = small_agent(VECTOR, 4, num_tasks=3, use_task_id=True)
    assert agent.core.input_size == agent.encoder.output_size + 1 + 3 == 256 + 4
    inputs = unroll_inputs(VECTOR, 2, 4, num_tasks=3)
    inputs["task"] = torch.tensor([[0, 1, 2, 1], [0, 1, 2, 2]])
    core_in = agent.core_input(inputs)
    torch.testing.assert_close(core_in[..., -3:], F.one_hot(inputs["task"], 3).to(F64))
    out_a, _ = agent(inputs, agent.initial_state(4))
    inputs_b = dict(inputs, task=(inputs["task"] + 1) % 3)
    out_b, _ = agent(inputs_b, agent.initial_state(4))
    assert not torch.allclose(out_a["policy_logits"], out_b["policy_logits"])
    with pytest.raises(ValueError, match="no 'task' entry"):
        agent({k: v for k, v in inputs.items() if k != "task"}, agent.initial_state(4))
    with pytest.raises(ValueError, match=r"task ids must be in \[0, 3\), got range \[1, 3\]"):
        agent(dict(inputs, task=inputs["task"] + 1), agent.initial_state(4))
    # Without use_task_id the task entry is ignored.
    plain = small_agent(VECTOR, 4, num_tasks=3)
    assert plain.core.input_size == 256 + 1
    o1, _ = plain(inputs, plain.initial_state(4))
    o2, _ = plain(inputs_b, plain.initial_state(4))
    torch.testing.assert_close(o1["policy_logits"], o2["policy_logits"])


def test_reward_is_clipped_before_the_core():
    agent = small_agent(VECTOR, 4, reward_clip=1.0)
    inputs = unroll_inputs(VECTOR, 3, 2)
    big = dict(inputs, reward=torch.full((3, 2), 7.0))
    one = dict(inputs, reward=torch.full((3, 2), 1.0))
    half = dict(inputs, reward=torch.full((3, 2), 0.5))
    run = lambda i: agent(i, agent.initial_state(2))[0]["policy_logits"]  # noqa: E731
    torch.testing.assert_close(run(big), run(one), rtol=0, atol=0)
    assert not torch.allclose(run(half), run(one))
    raw = small_agent(VECTOR, 4, reward_clip=0.0)
    torch.testing.assert_close(raw.core_input(big)[..., -1], torch.full((3, 2), 7.0, dtype=F64))


def test_lstm_agent_uses_hidden_size():
    agent = small_agent(VECTOR, 4, core="lstm", hidden_size=24)
    assert agent.core.output_size == 24 and agent.policy.in_features == 24
    assert set(agent.state_spec()) == {"h", "c"}


def test_hidden_size_zero_builds_each_core_at_its_own_default():
    """--hidden-size defaults to 0: every core gets the hidden_size of its signature (the
    papers' LSTM 256, the fast-weight cores' 128 = 8 x 16), and the architecture names it."""
    assert ModelConfig().hidden_size == 0
    for core, width in (("lstm", 256), ("ff", 128), ("srwm", 128), ("deltanet", 128)):
        cfg = ModelConfig(core=core, feature_size=8)
        assert core_options(cfg)["hidden_size"] == width
        agent = build_agent(cfg, VECTOR, 4)
        assert agent.core.output_size == width and agent.architecture()["hidden_size"] == width
    with pytest.raises(ValueError, match=r"4 x 16 = 64 != 128 \(the core's default --hidden-size\)"):
        validate_model_config(ModelConfig(core="srwm", num_heads=4))


@pytest.fixture
def option_core():
    """A core registered by the test, as a user's module would: its signature declares the
    options it takes (two ModelConfig fields, one of them with its own default width, and one
    option of its own, which keeps its default); it records what it was given."""
    from agents.core import MemoryCore, register_core, unregister_core
    from agents.cores.ff import FeedForwardCore

    @register_core("test_option_core")
    class OptionCore(FeedForwardCore):
        def __init__(self, input_size, *, hidden_size=7, dropout=0.25, own_option="kept"):
            super().__init__(input_size, hidden_size=hidden_size)
            self.given = dict(hidden_size=hidden_size, dropout=dropout, own_option=own_option)

    assert issubclass(OptionCore, MemoryCore)
    yield "test_option_core"
    unregister_core("test_option_core")


def test_a_registered_core_receives_the_options_its_signature_declares(option_core):
    cfg = ModelConfig(core=option_core, dropout=0.5, num_layers=3, feature_size=8)
    assert core_options(cfg) == {"hidden_size": 7, "dropout": 0.5}          # its default width, no num_layers
    agent = build_agent(cfg, VECTOR, 4)
    assert agent.core.given == {"hidden_size": 7, "dropout": 0.5, "own_option": "kept"}
    assert agent.core.output_size == 7 and agent.architecture()["hidden_size"] == 7
    agent = build_agent(dataclasses.replace(cfg, hidden_size=5), VECTOR, 4)
    assert agent.core.given["hidden_size"] == 5 and agent.policy.in_features == 5


def test_core_options_names_no_core():
    """No per-core special case: which options a core gets comes from its signature alone."""
    import inspect
    import agents.model as model_module
    source = inspect.getsource(model_module.core_options) + inspect.getsource(model_module.validate_model_config)
    named = [core for core in list_cores() if f"'{core}'" in source or f'"{core}"' in source]
    assert not named, f"core names in core_options / validate_model_config: {named}"


def test_a_core_option_without_default_or_model_field_is_one_line():
    from agents.core import register_core, unregister_core
    from agents.cores.ff import FeedForwardCore

    @register_core("test_needs_option")
    class NeedsOption(FeedForwardCore):
        def __init__(self, input_size, *, hidden_size=8, gate_count):
            super().__init__(input_size, hidden_size=hidden_size)

    try:
        with pytest.raises(ValueError, match=r"^core 'test_needs_option' takes option 'gate_count', which has no "
                                             r"default and is no model option; give it a default in the core's "
                                             r"constructor$"):
            validate_model_config(ModelConfig(core="test_needs_option"))
    finally:
        unregister_core("test_needs_option")


def test_architecture_is_plain_data_naming_every_field():
    agent = build_agent(ModelConfig(core="deltanet", **SMALL), VECTOR, 4, num_tasks=2)
    arch = agent.architecture()
    json.dumps(arch)                                             # plain data only
    for f in dataclasses.fields(ModelConfig):
        if f.name in ("encoder_dtype", "compile_encoder", "encoder_init", "lstm_forget_bias",
                      "core_import"):                            # not what the weights mean
            assert f.name not in arch
            continue
        if f.name.startswith("srwm_") or f.name == "lstm_input_norm":   # not options of deltanet
            assert f.name not in arch
            continue
        assert arch[f.name] == getattr(agent.cfg, f.name)
    assert (arch["core"], arch["obs_shape"], arch["obs_dtype"], arch["num_actions"], arch["num_tasks"]) \
        == ("deltanet", [8], "float32", 4, 2)
    other = build_agent(ModelConfig(core="deltanet", **dict(SMALL, num_layers=1)), VECTOR, 4, num_tasks=2)
    assert other.architecture() != arch


def test_srwm_architecture_lists_the_srwm_options_that_differ_from_the_idsia_rl_layer():
    arch = build_agent(ModelConfig(core="srwm", **SMALL), VECTOR, 4).architecture()
    assert arch["srwm_input_norm"] == "layernorm" and arch["srwm_qk_init_scale"] == 4.0
    assert "srwm_beta_init" not in arch and "srwm_input_scale" not in arch
    # a checkpoint written before the options existed (the IDSIA RL layer) still matches
    paper = build_agent(ModelConfig(core="srwm", srwm_input_norm="none", srwm_qk_init_scale=1.0, **SMALL),
                        VECTOR, 4).architecture()
    assert not any(k.startswith("srwm_") for k in paper)


def test_old_configs_get_the_idsia_rl_srwm_layer():
    from launch.config import config_from_dict
    old = {"model": {"core": "srwm", "hidden_size": 64}}
    cfg = config_from_dict(old).model
    assert (cfg.srwm_input_norm, cfg.srwm_qk_init_scale, cfg.hidden_size) == ("none", 1.0, 64)
    assert config_from_dict({"model": {"core": "srwm", "srwm_input_norm": "layernorm"}}).model.srwm_qk_init_scale == 4.0


def test_old_configs_get_pytorch_default_encoder_init():
    """Runs saved before --encoder-init existed were initialised with PyTorch's defaults."""
    from launch.config import config_from_dict
    assert config_from_dict({"model": {"core": "ff"}}).model.encoder_init == "torch"
    assert config_from_dict({"model": {"core": "ff", "encoder_init": "standard"}}).model.encoder_init == "standard"


def test_old_lstm_configs_feed_the_lstm_without_input_norm():
    """Runs saved before --lstm-input-norm fed the LSTM its input directly: they rebuild that
    LSTM (no LayerNorm weights, the same architecture), and today's default LayerNorm LSTM is
    another architecture, named by the option."""
    from learner.checkpoint import CheckpointError, check_architecture, model_config_from_dict
    old = dict(OLD_LSTM_MODEL, lstm_forget_bias=1.0, encoder_init="standard", srwm_input_norm="layernorm")
    cfg = model_config_from_dict(old)
    assert cfg.lstm_input_norm == "none"
    agent = build_agent(cfg, ObsSpec((5,), "float32"), 4)
    assert not [k for k in agent.state_dict() if "input_norm" in k]
    check_architecture(OLD_LSTM_ARCH, agent.architecture())
    assert ModelConfig().lstm_input_norm == "layernorm"
    new = build_agent(dataclasses.replace(cfg, lstm_input_norm="layernorm"), ObsSpec((5,), "float32"), 4)
    assert sorted(k for k in new.state_dict() if "input_norm" in k) == \
        ["core.input_norm.bias", "core.input_norm.weight"]
    with pytest.raises(CheckpointError, match=r"differs in 'lstm_input_norm': checkpoint has None, "
                                              r"this run has 'layernorm'"):
        check_architecture(OLD_LSTM_ARCH, new.architecture())


#: A model section and an architecture as runs saved them while the LSTM had its own width
#: option (copied from such a checkpoint; older still: no srwm_* options, no encoder_init).
OLD_LSTM_MODEL = {"core": "lstm", "encoder": "mlp", "hidden_size": 128, "num_layers": 2, "num_heads": 8,
                  "head_size": 16, "d_ff": 512, "dropout": 0.0, "detach_each_step": False,
                  "lstm_hidden_size": 16, "feature_size": 16, "use_task_id": False, "reward_clip": 1.0,
                  "encoder_dtype": "float32", "compile_encoder": False}
OLD_LSTM_ARCH = {"core": "lstm", "encoder": "mlp", "hidden_size": 128, "num_layers": 2, "num_heads": 8,
                 "head_size": 16, "d_ff": 512, "dropout": 0.0, "detach_each_step": False,
                 "lstm_hidden_size": 16, "feature_size": 16, "use_task_id": False, "reward_clip": 1.0,
                 "encoder_kind": "mlp", "obs_shape": [5], "obs_dtype": "float32", "num_actions": 4,
                 "num_tasks": 1, "state_spec": {"h": {"shape": [16], "dtype": "float32"},
                                                "c": {"shape": [16], "dtype": "float32"}}}


def test_old_lstm_width_option_rebuilds_the_same_lstm():
    from learner.checkpoint import CheckpointError, check_architecture, model_config_from_dict
    cfg = model_config_from_dict(OLD_LSTM_MODEL)
    assert cfg.hidden_size == 16 and "lstm_hidden_size" not in dataclasses.asdict(cfg)
    agent = build_agent(cfg, ObsSpec((5,), "float32"), 4)
    assert agent.core.hidden_size == 16 and agent.core.lstm.weight_hh_l0.shape == (64, 16)
    check_architecture(OLD_LSTM_ARCH, agent.architecture())
    # another width is still another architecture, named as today's option
    with pytest.raises(CheckpointError, match=r"differs in 'hidden_size': checkpoint has 32, this run has 16"):
        check_architecture(dict(OLD_LSTM_ARCH, lstm_hidden_size=32), agent.architecture())
    # the other cores ignored the option: their hidden_size stands
    ff_cfg = model_config_from_dict(dict(OLD_LSTM_MODEL, core="ff"))
    assert ff_cfg.hidden_size == 128
    ff = build_agent(ff_cfg, ObsSpec((5,), "float32"), 4)
    check_architecture(dict(OLD_LSTM_ARCH, core="ff", state_spec={}), ff.architecture())


@pytest.mark.parametrize("core, extra", [("srwm_paper", 0), ("srwm", 2 * 2 * 128)])
def test_paper_srwm_agent_parameter_count(core, extra):
    """IMPALA encoder + SRWM core (2 layers, 128 = 8 x 16, d_ff 512) + heads, 15 actions;
    srwm's default adds a LayerNorm(128) before each layer's input softmax."""
    agent = build_agent(ModelConfig(core=core), PROCGEN, 15)
    encoder = 97_600 + 524_544
    layer = 3 * 8 * 16 * 16 + 8 * 4 * 16 + 128 * 128 + 2 * 128 + (128 * 512 + 512) + (512 * 128 + 128)
    core_size = 257 * 128 + 128 + 2 * layer
    heads = 128 * 15 + 15 + 128 + 1
    assert sum(p.numel() for p in agent.parameters()) == encoder + core_size + heads + extra
    assert encoder + core_size + heads == 967_248


def test_every_core_builds_into_an_agent():
    for core in list_cores():
        agent = small_agent(VECTOR, 3, core=core)
        out, state = agent(unroll_inputs(VECTOR, 2, 2), agent.initial_state(2))
        assert out["policy_logits"].shape == (2, 2, 3)


def test_bad_inputs_raise():
    agent = small_agent(VECTOR, 4)
    inputs = unroll_inputs(VECTOR, 2, 3)
    with pytest.raises(ValueError, match=r"inputs\['obs'\] must be \[T, B, 8\], got \[2, 3, 9\]"):
        agent(dict(inputs, obs=torch.zeros(2, 3, 9)), agent.initial_state(3))
    with pytest.raises(ValueError, match=r"inputs\['done'\] must be \[T, B\] = \[2, 3\], got \[2\]"):
        agent(dict(inputs, done=torch.zeros(2, dtype=torch.bool)), agent.initial_state(3))


@pytest.mark.parametrize("changes,message", [
    (dict(core="gruu"), r"--core 'gruu' is not a registered core; known cores: delta_rnn, deltanet, .*srwm"),
    (dict(encoder="resnet"), r"^--encoder 'resnet' is not a registered encoder; known encoders: auto, impala, mlp, "
                             r"nature$"),
    (dict(num_heads=4), r"--num-heads x --head-size must equal --hidden-size for core 'srwm': 4 x 16 = 64 != 128"),
    (dict(hidden_size=-1), r"--hidden-size must be a positive integer \(0 = the core's default\), got -1"),
    (dict(num_layers=-1), r"--num-layers must be a positive integer, got -1"),
    (dict(d_ff=2.5), r"--d-ff must be a positive integer, got 2.5"),
    (dict(feature_size=-3), r"--feature-size must be a non-negative integer"),
    (dict(dropout=1.0), r"--dropout must be in \[0, 1\), got 1.0"),
    (dict(dropout=-0.1), r"--dropout must be in \[0, 1\), got -0.1"),
    (dict(reward_clip=-1.0), r"--reward-clip must be >= 0"),
])
def test_validate_model_config_errors(changes, message):
    cfg = dataclasses.replace(ModelConfig(), **changes)
    with pytest.raises(ValueError, match=message):
        validate_model_config(cfg)


def test_validate_model_config_accepts_valid_configs():
    validate_model_config(ModelConfig())
    validate_model_config(ModelConfig(core="lstm", num_heads=3))   # heads do not apply to lstm
    validate_model_config(ModelConfig(core="ff", hidden_size=64))
    for f in dataclasses.fields(ModelConfig):
        assert f.metadata.get("help"), f"ModelConfig.{f.name} has no help text"
    assert math.isclose(ModelConfig().reward_clip, 1.0)
    with pytest.raises(ValueError, match="num_actions must be a positive integer, got 0"):
        Agent(ModelConfig(), (8,), "float32", 0)


def test_lstm_inference_on_the_cpu_runs_without_onednn_and_agrees_with_training():
    from agents.cores.lstm import LSTMCore
    torch.manual_seed(0)
    core = LSTMCore(12, hidden_size=16)
    seen = []
    call = core.lstm.forward
    core.lstm.forward = lambda *a: (seen.append(torch._C._get_mkldnn_enabled()), call(*a))[1]
    x = torch.randn(7, 3, 12)
    reset = torch.zeros(7, 3, dtype=torch.bool)
    reset[4, 1] = True                                          # two segments: two LSTM calls
    state = {"h": torch.randn(3, 16), "c": torch.randn(3, 16)}
    y_train, s_train = core(x, state, reset)
    assert seen == [True, True]                                  # autograd: oneDNN as before
    with torch.no_grad():
        y_infer, s_infer = core(x, state, reset)
    assert seen[2:] == [False, False] and torch._C._get_mkldnn_enabled()   # off inside, restored
    torch.testing.assert_close(y_infer, y_train.detach(), atol=1e-6, rtol=0)
    for k in ("h", "c"):
        torch.testing.assert_close(s_infer[k], s_train[k].detach(), atol=1e-6, rtol=0)
