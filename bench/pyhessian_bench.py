#!/usr/bin/env python3
"""PyHessian's side of `dsgd bench` part (g): the same curvature operations on the same model,
data and thread count, so the two columns of the README's table are measured on one machine.

    dsgd bench --only-curvature --save-curvature-model /tmp/mlp.f32
    python3 bench/pyhessian_bench.py --parameters /tmp/mlp.f32

Needs PyTorch and PyHessian from PyPI (`pip install torch pyhessian`); not part of the tests.
The parameters file is dsgd's flat Float32 layout of the MLP 784-256-256-10 (per layer the
weight, outputs x inputs row-major as in PyTorch, then the bias). The data are the first
`--examples` Fashion-MNIST training images scaled to [0, 1], as dsgd reads them.
"""

import argparse
import gzip
import json
import statistics
import time

import numpy as np
import torch
from pyhessian import hessian
from pyhessian.utils import hessian_vector_product


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def build_model(widths, flat):
    layers = []
    offset = 0
    for index in range(len(widths) - 1):
        linear = torch.nn.Linear(widths[index], widths[index + 1])
        count = widths[index] * widths[index + 1]
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(flat[offset : offset + count].reshape(widths[index + 1], widths[index])))
            offset += count
            linear.bias.copy_(torch.from_numpy(flat[offset : offset + widths[index + 1]]))
            offset += widths[index + 1]
        layers.append(linear)
        if index < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    if offset != flat.size:
        raise SystemExit(f"parameters file holds {flat.size} values; the model {widths} needs {offset}")
    return torch.nn.Sequential(*layers)


RESULTS = {}


def timed(key, label, repeats, work):
    """Best wall time of `repeats` calls, as dsgd bench reports (noise on a shared machine only
    ever adds time); the first call, a warm-up, is not counted."""
    work()
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    RESULTS[key] = min(times) * 1000
    print(f"{label:<44} {min(times) * 1000:10.1f} ms   (best of {repeats}, median {median * 1000:.1f})")
    return result


def symmetric_eig(matrix, eigenvectors=True):
    """PyHessian 0.1's `density` calls `torch.eig`, removed in PyTorch 1.9; its tridiagonal is
    symmetric, so `torch.linalg.eigh` gives the same pairs in the old (values, 0) layout."""
    values, vectors = torch.linalg.eigh(matrix)
    return torch.stack([values, torch.zeros_like(values)], dim=1), vectors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", required=True, help="flat Float32 file written by dsgd bench")
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of Fashion-MNIST IDX files")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--widths", default="784-256-256-10")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.eig = symmetric_eig
    torch.manual_seed(0)
    widths = [int(w) for w in args.widths.split("-")]
    flat = np.fromfile(args.parameters, dtype="<f4")
    model = build_model(widths, flat).eval()
    images = read_idx(f"{args.data}/train-images-idx3-ubyte.gz")[: args.examples]
    labels = read_idx(f"{args.data}/train-labels-idx1-ubyte.gz")[: args.examples]
    inputs = torch.from_numpy(images.reshape(args.examples, -1).astype(np.float32) / 255)
    targets = torch.from_numpy(labels.astype(np.int64))
    criterion = torch.nn.CrossEntropyLoss()

    print(f"PyHessian on PyTorch {torch.__version__}, {torch.get_num_threads()} thread, MLP {args.widths}, "
          f"{args.examples} images")
    with torch.no_grad():
        loss = criterion(model(inputs), targets).item()
    print(f"loss at the parameters: {loss:.6f}")

    def gradient():
        model.zero_grad()
        criterion(model(inputs), targets).backward()

    timed("gradient", "one gradient", 3 * args.repeats, gradient)
    def set_up():
        # PyHessian's set-up calls backward(create_graph=True), which adds to .grad: without
        # clearing it, each set-up would chain another graph into every later product.
        model.zero_grad(set_to_none=True)
        return hessian(model, criterion, data=(inputs, targets), cuda=False)

    computer = timed("setup", "set-up (forward + gradient with its graph)", 3 * args.repeats, set_up)
    v = [torch.randn_like(p) for p in computer.params]
    timed("hvp", "one Hessian-vector product", 3 * args.repeats, lambda: hessian_vector_product(computer.gradsH, computer.params, v))
    top = timed("top1", "top eigenvalue (power iteration, tol 1e-3)", args.repeats,
                lambda: computer.eigenvalues(top_n=1, tol=1e-3, maxIter=100))
    print(f"{'':<44} λ_max = {top[0][0]:.4f}")
    RESULTS["top1_value"] = top[0][0]
    tight = timed("top1tight", "top eigenvalue (power iteration, tol 1e-6)", args.repeats,
                  lambda: computer.eigenvalues(top_n=1, tol=1e-6, maxIter=1000))
    print(f"{'':<44} λ_max = {tight[0][0]:.4f}")
    RESULTS["top1tight_value"] = tight[0][0]
    top5 = timed("top5", "top 5 eigenvalues (tol 1e-3)", args.repeats,
                 lambda: computer.eigenvalues(top_n=5, tol=1e-3, maxIter=100))
    print(f"{'':<44} {', '.join(f'{value:.4f}' for value in top5[0])}")
    # tol = 0 so that all 100 probes are drawn (PyHessian stops early on a relative change).
    samples = timed("trace", "trace, 100 Rademacher probes", args.repeats,
                    lambda: computer.trace(maxIter=100, tol=0))
    print(f"{'':<44} tr H = {np.mean(samples):.2f} ± {np.std(samples, ddof=1) / len(samples) ** 0.5:.2f} (s.e.)")
    timed("slq", "spectral density, SLQ 100 steps", args.repeats, lambda: computer.density(iter=100, n_v=1))
    print("RESULT " + json.dumps(RESULTS))


if __name__ == "__main__":
    main()
