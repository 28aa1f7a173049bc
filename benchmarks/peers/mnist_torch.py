"""The lecture's MNIST run in plain PyTorch: the job ``experiments/mnist.py --data-dir
samples/mnist --limit-train 8000`` does, written as a PyTorch user would write it, for
``benchmarks/end_to_end.py`` to race whole processes.

Reads the IDX files (gzip), trains the lecture's functional CNN (Conv 32 -> pool -> Conv 64
-> pool -> Conv 128 -> Dense 10; 104,202 parameters) with RMSprop (lr 1e-3, rho 0.9,
epsilon 1e-7, as Keras') on the first ``--limit-train`` images in shuffled batches of 64
for 5 epochs, scores the held-out images after every epoch, saves a checkpoint after every
epoch, evaluates at the end and writes ``results.json``. PyTorch's best plain CPU settings:
``torch.set_flush_denormal(True)``; run it with glibc's malloc thresholds raised
(``GLIBC_TUNABLES``), as ``end_to_end.py`` does.

    python benchmarks/peers/mnist_torch.py --data-dir samples/mnist --limit-train 8000 --workdir /tmp/run
"""

import argparse
import gzip
import json
import os
import time

import numpy as np
import torch


def read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(1152, 10),
    )


def evaluate(model, x, y, batch_size=256):
    model.eval()
    loss, correct = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            out = model(x[i : i + batch_size])
            loss += torch.nn.functional.cross_entropy(out, y[i : i + batch_size], reduction="sum").item()
            correct += (out.argmax(1) == y[i : i + batch_size]).sum().item()
    return loss / len(x), correct / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--limit-train", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", required=True)
    args = p.parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    images = read_idx(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.data_dir, "t10k-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255)  # NCHW in [0, 1]
    y = torch.from_numpy(labels.astype(np.int64))
    n = args.limit_train
    x_train, y_train, x_test, y_test = x[:n], y[:n], x[n:], y[n:]
    model = net()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    os.makedirs(os.path.join(args.workdir, "checkpoints"), exist_ok=True)
    t0 = time.perf_counter()
    history = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(n)
        for i in range(0, n, args.batch_size):
            rows = order[i : i + args.batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[rows]), y_train[rows])
            loss.backward()
            optimizer.step()
        val_loss, val_accuracy = evaluate(model, x_test, y_test)
        history.append({"epoch": epoch, "val_loss": val_loss, "val_accuracy": val_accuracy})
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                   os.path.join(args.workdir, "checkpoints", f"{epoch}.pt"))
    test_loss, test_accuracy = evaluate(model, x_test, y_test)
    results = {"test_loss": test_loss, "test_accuracy": test_accuracy, "train_seconds": time.perf_counter() - t0,
               "history": history, "torch": torch.__version__, "threads": torch.get_num_threads()}
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) on {len(x_test)} images")


if __name__ == "__main__":
    main()
