"""Linear attention (the Linear Transformer's additive fast weights): ``reference.py``;
the torch and Triton forms are the delta rule's with the ``v_old`` term switched off
(``torch_fused.py``, ``triton_kernel.py``). The public op is :func:`agents.kernels.linear_attention`."""
