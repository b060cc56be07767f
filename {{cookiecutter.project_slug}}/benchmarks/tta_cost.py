#!/usr/bin/env python
"""Benchmark, not a test: the cost of the solver's TTA-N, side by side in one process, against
(a) N plain forward passes over the same images (the model's share: the floor for any TTA), and
(b) ttach (pip install ttach) with its 8 dihedral views, where the solver draws 8 random dihedral views (A.D4), and
(c) the solver's TTA=auto path: N fixed views (identity, flips, shifts, scales) made on the batch tensor.

Prints each time and the ratios. CPU by default; --device cuda on a GPU.

python benchmarks/tta_cost.py [--images 512] [--views 8] [--model resnet10t] [--size 64]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's solver, installed or not

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

from solver.nn.data import ImageDataset  # noqa: E402
from solver.predict.tta import ViewsDataset, predict_tta  # noqa: E402
from solver.predict.tta_auto import candidate_views, predict_views  # noqa: E402


def timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="images per forward pass of the plain baseline")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = timm.create_model(args.model, pretrained=False, num_classes=10).to(device).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)]
    normalize = [A.Normalize(mean=[0.5] * 3, std=[0.25] * 3), ToTensorV2()]
    plain = A.Compose(normalize)
    base = ImageDataset([f"img{i}" for i in range(len(images))], None, plain, images, channels=3)
    x = torch.stack([plain(image=image)["image"] for image in images])

    def plain_passes():
        with torch.no_grad():
            for _ in range(args.views):
                for start in range(0, len(x), args.batch):
                    model(x[start : start + args.batch].to(device)).softmax(1)

    def solver_tta():
        views = ViewsDataset(base, plain, A.Compose([A.D4(p=1.0), *normalize]), args.views, seed=0)
        predict_tta(model, views, "multiclass", "probabilities", max(1, args.batch // args.views), device)

    fixed = candidate_views([{"name": "HorizontalFlip"}, {"name": "VerticalFlip"}])[: args.views]

    def solver_fixed_views():
        predict_views(model, base, fixed, max(1, args.batch // len(fixed)), device)

    results = {
        "N plain forward passes": timed(plain_passes),
        f"solver TTA-{args.views} (random D4 views)": timed(solver_tta),
        f"solver TTA=auto path ({len(fixed)} fixed views)": timed(solver_fixed_views),
    }
    try:
        import ttach

        wrapper = ttach.ClassificationTTAWrapper(model, ttach.aliases.d4_transform(), merge_mode="mean")

        def ttach_tta():
            with torch.no_grad():
                for start in range(0, len(x), args.batch // args.views or 1):
                    wrapper(x[start : start + (args.batch // args.views or 1)].to(device))

        results["ttach d4 (8 views)"] = timed(ttach_tta)
    except ImportError:
        print("ttach is not installed (pip install ttach): its row is skipped")
    floor = results["N plain forward passes"]
    print(
        f"{args.images} images of {args.size}x{args.size}, {args.model}, {args.views} views, device {device}, torch threads {torch.get_num_threads()}"
    )
    for name, seconds in results.items():
        print(f"{name:42s} {seconds:7.3f} s   {seconds / floor:5.2f}x the plain passes")


if __name__ == "__main__":
    main()
