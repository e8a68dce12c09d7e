"""The delta rule (DeltaNet) and the gated delta rule (``alpha``): ``reference.py`` (per-step
loop), ``torch_fused.py`` (whole unroll, hand-written backward), ``triton_kernel.py``
(fused kernels; the gated backward in ``triton_gated.py``). The public op is
:func:`agents.kernels.delta_rule`."""
