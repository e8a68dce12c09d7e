"""The Delta RNN's recurrent fast net: ``reference.py``, ``torch_fused.py``,
``triton_kernel.py``. The public op is :func:`agents.kernels.delta_rnn`."""
