"""Run by tests/test_distributed.py as a process of its own: trains the lecture's CNN for a
few steps, in a group of processes (``group OUT PORT ID``) or alone on two CPU devices
(``alone OUT``), and saves the final parameters and loss to ``OUT`` (``.npz``)."""

import sys


def main(mode: str, out: str, port: str = "", process_id: str = "") -> None:
    import jax

    if mode == "alone":
        jax.config.update("jax_num_cpu_devices", 2)
    else:
        from cnnjax.train import distributed

        distributed.initialize(f"127.0.0.1:{port}", 2, int(process_id), timeout=60)
    import numpy as np
    from flax import nnx

    from cnnjax import models, train

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(128, 28, 28, 1)).astype(np.float32)
    y = (np.arange(128) % 10).astype(np.int32)
    model = models.mnist_functional(rngs=nnx.Rngs(0))
    history = train.fit(model, (x, y), epochs=1, batch_size=32, seed=0, verbose=2)
    accuracy = train.evaluate(model, (x[:64], y[:64]))["accuracy"]
    leaves = [np.asarray(leaf.addressable_data(0)) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]
    np.savez(out, *leaves, loss=history.epochs[-1]["loss"], accuracy=accuracy, devices=jax.device_count())


if __name__ == "__main__":
    main(*sys.argv[1:])
