"""The dispatch of :mod:`agents.kernels`: the op names stay bound to the functions whatever
is imported (each op's folder has the op's name), and ``backend="auto"`` says loudly,
once, when a Triton kernel module fails to import and CUDA tensors run the PyTorch form."""

from __future__ import annotations

import importlib
import sys
import types
import warnings

import pytest

import agents.kernels as K

OPS = ("delta_rule", "srwm", "linear_attention", "rec_delta", "delta_rnn")
FORMS = ("reference", "torch_fused")


def test_op_names_are_the_functions_after_every_form_is_imported():
    for op in OPS:
        for form in FORMS:
            importlib.import_module(f"agents.kernels.{op}.{form}")
    if K.triton_available():
        for name in K.TRITON_MODULES:
            importlib.import_module(name)
    for op in OPS:
        fn = getattr(K, op)
        assert isinstance(fn, types.FunctionType) and fn.__module__ == "agents.kernels", op


def test_one_srwm_keys():
    from agents.kernels import inputs
    from agents.kernels.srwm import SRWM_KEYS
    from agents.kernels.srwm import reference, torch_fused
    assert K.SRWM_KEYS is SRWM_KEYS and reference.SRWM_KEYS is SRWM_KEYS
    assert torch_fused.SRWM_KEYS is SRWM_KEYS and inputs.SRWM_KEYS is SRWM_KEYS


class _Broken:
    """A meta-path finder under which one module fails to import with an AttributeError,
    as a kernel module would after a Triton release that renames what it uses."""

    def __init__(self, name):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise AttributeError("module 'triton.language' has no attribute 'renamed'")
        return None


@pytest.fixture
def broken_kernel_module(monkeypatch):
    """The SRWM kernel module fails to import."""
    name = "agents.kernels.srwm.triton_kernel"
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Broken(name)] + sys.meta_path)
    monkeypatch.setattr(K, "_warned_fallback", False)
    K.triton_unavailable_reason.cache_clear()
    yield name
    K.triton_unavailable_reason.cache_clear()


def test_auto_warns_once_naming_the_module_when_a_kernel_module_fails(broken_kernel_module):
    cuda_like = types.SimpleNamespace(is_cuda=True)
    with pytest.warns(RuntimeWarning) as record:
        assert K._use_triton("auto", cuda_like) is False
    assert len(record) == 1
    message = str(record[0].message)
    assert broken_kernel_module in message and "AttributeError" in message and "renamed" in message, message
    assert not K.triton_available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # a second warning would raise here
        assert K._use_triton("auto", cuda_like) is False
    with pytest.raises(RuntimeError, match=broken_kernel_module):
        K._use_triton("triton", cuda_like)


def test_auto_on_cpu_tensors_is_silent(broken_kernel_module):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert K._use_triton("auto", types.SimpleNamespace(is_cuda=False)) is False
