"""The self-referential weight matrix: ``reference.py``, ``torch_fused.py``,
``triton_kernel.py`` (the step maths as ``@triton.jit`` helpers in ``triton_step.py``).
The public op is :func:`agents.kernels.srwm`."""

SRWM_KEYS = ("y", "q", "k", "b")      # the four matrices of a head, in this order everywhere
