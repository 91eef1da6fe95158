"""The PyTorch baseline of `dsgd bench` (c): the same workload with torch.distributed over gloo.

n processes on this host, one thread each; every round each trains one SGD step (batch 32,
lr 0.05) of the MLP 784-256-256-10 on its own examples, then averages: on a ring with its two
neighbours (weights 1/3, Metropolis-Hastings, as dsgd's default), or over all workers with
all_reduce (the complete graph, C-SGD). Prints rounds/s, timed from after a warm-up round to the
end, as the slowest worker saw it.

    python bench/gloo_gossip.py --workers 8 --topology ring --rounds 300
"""

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, arguments, port, results):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=arguments.workers)
    torch.manual_seed(rank)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    examples = torch.rand(6_000, 784)
    labels = torch.randint(0, 10, (6_000,))
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    n = arguments.workers
    left, right = (rank - 1) % n, (rank + 1) % n
    from_left = torch.empty_like(flat)
    from_right = torch.empty_like(flat)

    def one_round(step):
        start = (step * 32) % (6_000 - 32)
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(examples[start : start + 32]), labels[start : start + 32])
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            flat.copy_(torch.nn.utils.parameters_to_vector(model.parameters()))
            if arguments.topology == "complete":
                dist.all_reduce(flat)
                flat.div_(n)
            elif n > 1:
                requests = [
                    dist.isend(flat, right),
                    dist.isend(flat, left),
                    dist.irecv(from_left, left),
                    dist.irecv(from_right, right),
                ]
                for request in requests:
                    request.wait()
                flat.add_(from_left).add_(from_right).div_(3)
            torch.nn.utils.vector_to_parameters(flat, model.parameters())

    one_round(0)
    dist.barrier()
    started = time.perf_counter()
    for step in range(1, arguments.rounds + 1):
        one_round(step)
    dist.barrier()
    results[rank] = time.perf_counter() - started
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--topology", choices=["ring", "complete"], default="ring")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--port", type=int, default=29_511)
    arguments = parser.parse_args()
    results = mp.Manager().dict()
    mp.spawn(worker, args=(arguments, arguments.port, results), nprocs=arguments.workers, join=True)
    seconds = max(results.values())
    print(f"gloo {arguments.topology} n={arguments.workers}: {arguments.rounds / seconds:.1f} rounds/s")
    print(f"RESULT {arguments.rounds / seconds:.4f}")


if __name__ == "__main__":
    main()
