"""Run by tests/test_distributed.py as a process of its own: trains the lecture's CNN for a
few steps, in a group of processes (``--port P --process-id I``) or alone on two CPU
devices, optionally with checkpoints (``--checkpoints DIR``, resumed when there), and saves
the final parameters, loss and accuracy to ``--out`` (``.npz``); with ``--record-reads``, also
the indices of every training example it read (``reads``)."""

import argparse


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int)
    p.add_argument("--process-id", type=int)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--checkpoints")
    p.add_argument("--steps-per-segment", type=int)
    p.add_argument("--loop", default="auto")
    p.add_argument("--record-reads", action="store_true")
    args = p.parse_args(argv)
    import jax

    if args.port is None:
        jax.config.update("jax_num_cpu_devices", 2)
    else:
        from cnnjax.train import distributed

        distributed.initialize(f"127.0.0.1:{args.port}", 2, args.process_id, timeout=60)
    import numpy as np
    from flax import nnx

    from cnnjax import models, train

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(128, 28, 28, 1)).astype(np.float32)
    y = (np.arange(128) % 10).astype(np.int32)
    class Recorded:
        """A random-access source (shape, dtype, source[indices]) that notes what is read."""

        def __init__(self, a):
            self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

        def __getitem__(self, indices):
            self.reads.append(np.asarray(indices).reshape(-1))
            return self.a[indices]

    inputs = Recorded(x) if args.record_reads else x
    model = models.mnist_functional(rngs=nnx.Rngs(0))
    history = train.fit(model, (inputs, y), epochs=args.epochs, batch_size=32, seed=0, verbose=2,
                        checkpoint_dir=args.checkpoints, resume=args.checkpoints is not None,
                        steps_per_segment=args.steps_per_segment, loop=args.loop)
    reads = np.concatenate(inputs.reads) if args.record_reads else np.zeros(0, np.int64)
    accuracy = train.evaluate(model, (x[:64], y[:64]))["accuracy"]
    leaves = [np.asarray(leaf.addressable_data(0)) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]
    np.savez(args.out, *leaves, loss=history.epochs[-1]["loss"], accuracy=accuracy, devices=jax.device_count(),
             epochs=[e["epoch"] for e in history.epochs], reads=reads)


if __name__ == "__main__":
    main()
