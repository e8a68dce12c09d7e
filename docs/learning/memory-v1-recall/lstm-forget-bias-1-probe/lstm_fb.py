import torch
from agents.core import register_core
from agents.cores.lstm import LSTMCore

@register_core("lstm_fb1")
class LSTMForgetBias1(LSTMCore):
    def __init__(self, input_size: int, *, hidden_size: int = 256):
        super().__init__(input_size, hidden_size=hidden_size)
        H = hidden_size
        with torch.no_grad():   # gate order i, f, g, o; total forget bias 1
            self.lstm.bias_ih_l0[H:2 * H].fill_(1.0)
            self.lstm.bias_hh_l0[H:2 * H].fill_(0.0)
