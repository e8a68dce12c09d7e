"""learner/device.py: device names, and the warning for bfloat16 on a CPU without bfloat16 units."""

import pytest
import torch

from learner import device


def test_bad_device_names_are_refused_naming_the_value():
    with pytest.raises(ValueError, match="'tpu'"):
        device.check_device("tpu")
    with pytest.raises(ValueError, match="'cuda:x'"):
        device.check_device("cuda:x")
    device.check_device("cpu")
    assert device.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("avx512_bf16, amx, want", [(False, False, False), (True, False, True),
                                                     (False, True, True), (True, True, True)])
def test_bfloat16_units_are_either_instruction_set(monkeypatch, avx512_bf16, amx, want):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert device.cpu_has_bfloat16_units() is want


def test_bfloat16_warning_only_for_a_cpu_learner_without_the_units(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_bfloat16_units", lambda: False)
    msg = device.bfloat16_cpu_warning("bfloat16", "cpu")
    assert msg is not None and "--encoder-dtype bfloat16" in msg and "float32" in msg
    assert device.bfloat16_cpu_warning("float32", "cpu") is None
    assert device.bfloat16_cpu_warning("bfloat16", "cuda") is None
    monkeypatch.setattr(device, "cpu_has_bfloat16_units", lambda: True)
    assert device.bfloat16_cpu_warning("bfloat16", "cpu") is None
