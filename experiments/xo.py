"""The lecture's X's-and-O's walk-through: the 9x9 X through conv -> ReLU -> max pool.

Prints each stage as the lecture's slides print it (values cut to two decimals):
the three 7x7 response maps, the ReLU'd maps, the 4x4 pooled maps ("ceiling of 7/2")
and the 2x2 maps after pooling again ("deep stacking").

Run: ``python experiments/xo.py``
"""

from __future__ import annotations

import argparse

import numpy as np

import cnnjax
from cnnjax import lecture


def format_map(values: np.ndarray) -> str:
    """A 2D map as the lecture prints it: each value truncated to two decimals."""
    cut = np.fix(np.round(np.asarray(values, np.float64) * 10_000) / 100) / 100
    return "\n".join("  ".join(f"{v:5.2f}" for v in row) for row in cut)


def walkthrough(image: np.ndarray = lecture.X_IMAGE) -> dict[str, np.ndarray]:
    """Each stage of the lecture's pipeline for one image, as ``(H, W, 3)`` arrays."""
    x = lecture.batch(image)
    response = cnnjax.conv(x, lecture.features(), normalize=True)
    rectified = cnnjax.relu(response)
    pooled = cnnjax.maxpool(rectified, window=2, stride=2, ceil_mode=True)
    stacked = cnnjax.maxpool(pooled, window=2, stride=2)
    return {
        "Convolution: response maps (9x9 -> 7x7)": np.asarray(response[0]),
        "ReLU: no negative values": np.asarray(rectified[0]),
        "Max pooling 2x2, stride 2, ceiling of 7/2 (7x7 -> 4x4)": np.asarray(pooled[0]),
        "Deep stacking: pooled again (4x4 -> 2x2)": np.asarray(stacked[0]),
    }


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", choices=["x", "o"], default="x", help="which lecture image")
    args = parser.parse_args(argv)
    image = lecture.X_IMAGE if args.image == "x" else lecture.O_IMAGE
    print(f"Input: the lecture's 9x9 {args.image.upper()} (+1 ink, -1 background)")
    print("\n".join(" ".join(f"{int(v):2d}" for v in row) for row in image))
    stages = walkthrough(image)
    for title, maps in stages.items():
        print(f"\n== {title}")
        for c, name in enumerate(lecture.FEATURE_NAMES):
            print(f"-- feature: {name}")
            print(format_map(maps[:, :, c]))
    return stages


if __name__ == "__main__":
    main()
