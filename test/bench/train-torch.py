"""PyTorch's training step of the demo MLP (784-2048-1024-10, batch 128, SGD momentum 0.9 and weight
decay 5e-4, softmax cross-entropy) on the CPU, for `npm run bench -- train` (test/bench/train.ts),
which runs it with /usr/bin/python3 (Debian's python3-torch 1.13) and OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset. A server on stdin/stdout, so the benchmark can alternate it with its own steps
round by round: it answers the first line with its threads and version, then each line holding a
step count N with the milliseconds per step of N steps, one JSON line each."""
import json
import sys
import time

import torch

threads = int(sys.argv[1])
torch.set_num_threads(threads)
torch.manual_seed(1)
model = torch.nn.Sequential(
    torch.nn.Linear(784, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10)
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
loss_fn = torch.nn.CrossEntropyLoss()
batches = [(torch.rand(128, 784), torch.randint(0, 10, (128,))) for _ in range(8)]


def step(i):
    x, y = batches[i % len(batches)]
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


for i in range(5):
    step(i)
print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
done = 0
for line in sys.stdin:
    steps = int(line)
    start = time.perf_counter()
    for i in range(steps):
        step(done + i)
    done += steps
    print(json.dumps({"ms_per_step": (time.perf_counter() - start) * 1000 / steps}), flush=True)
