"""The Recurrent Delta Net memory (RDN): ``reference.py``, ``torch_fused.py``,
``triton_kernel.py``. The public op is :func:`agents.kernels.rec_delta`."""

REC_DELTA_KEYS = ("q", "k", "v", "b")        # the recurrent slow weights of rec_delta
