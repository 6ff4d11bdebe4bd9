"""Prints a digest of libtorch's arithmetic on this machine, for tests/golden.rs.

The golden sums of a training run hold only where libtorch's kernels give the same
bits as on the machine that took them. Under the environment that the test pins
(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_CBWR, one thread) they should do so on
any x86-64 CPU; this digest runs the kernels that training runs (embedding, LSTM and
GRU forward and backward in training mode, linear, log-softmax, gradient clipping,
fused Adam) on fixed inputs, so that a CPU whose arithmetic still differs is told
apart from a change in rnnlm.
"""

import hashlib

import torch

torch.set_num_threads(1)
torch.manual_seed(0)
digest = hashlib.sha256()
embedding = torch.nn.Embedding(16, 8)
lstm = torch.nn.LSTM(8, 8, num_layers=2, dropout=0.2)
gru = torch.nn.GRU(8, 8)
output = torch.nn.Linear(8, 16)
parameters = [
    *embedding.parameters(),
    *lstm.parameters(),
    *gru.parameters(),
    *output.parameters(),
]
adam = torch.optim.Adam(parameters, lr=2e-3, fused=True)
tokens = torch.randint(0, 16, (5, 4))
for _ in range(3):
    adam.zero_grad()
    hidden, _ = lstm(embedding(tokens))
    hidden, _ = gru(hidden)
    log_probs = torch.log_softmax(output(hidden), dim=-1)
    loss = torch.nn.functional.nll_loss(log_probs.reshape(-1, 16), tokens.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    adam.step()
for parameter in parameters:
    # Bytes through a uint8 view: no numpy needed.
    digest.update(bytes(parameter.detach().contiguous().view(torch.uint8).flatten().tolist()))
print(digest.hexdigest())
