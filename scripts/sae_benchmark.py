"""Throughput and peak memory of SAE training (``cliplens sae train``'s step), printed as figures.

    python scripts/sae_benchmark.py                         # ViT-B width 768, 8x latents, k 32, batch 4096, CPU
    python scripts/sae_benchmark.py --width 128 --expansion 8 --k 8 --batch-size 1024 --stream toy
    python scripts/sae_benchmark.py --device cuda           # bfloat16 autocast, as on CUDA in training

The step alone is timed on random activations held in memory (what the SAE costs); ``--stream toy`` also times
the whole pipeline on the toy CLIP (image loading and backbone forwards included). Memory: the process's peak
resident set size before and after training (CPU), or ``torch.cuda.max_memory_allocated`` (CUDA).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from cliplens.sae.activations import ActivationSite, ActivationStream, ImageSource, TensorStream
from cliplens.sae.model import SAEConfig, SparseAutoencoder
from cliplens.sae.training import SAETrainer, TrainConfig


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def time_steps(trainer: SAETrainer, seconds: float, batch_size: int) -> tuple[int, float, float]:
    """Train until ``seconds`` have passed (after one warm-up step); returns (steps, activations per wall second,
    activations per CPU second of this process — the figure that a machine shared with other jobs does not skew)."""
    trainer.run()  # config.steps = 1: the warm-up step
    batches = trainer.stream.batches()
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        trainer.train_step(next(batches)[1])
        steps += 1
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    done = steps * batch_size
    return steps, done / (time.perf_counter() - start), done / max(time.process_time() - cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=768, help="d, the residual width (ViT-B: 768)")
    parser.add_argument("--expansion", type=int, default=8, help="latents per dimension")
    parser.add_argument("--k", type=int, default=32, help="TopK k")
    parser.add_argument("--batch-size", type=int, default=4096, help="activations per step")
    parser.add_argument("--seconds", type=float, default=20.0, help="time the steps for this long")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--stream", choices=("none", "toy"), default="none", help="also time the toy pipeline")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")

    before = peak_rss_mib()
    activations = torch.randn(4 * args.batch_size, args.width, generator=torch.Generator().manual_seed(0))
    stream = TensorStream(activations, batch_size=args.batch_size)
    config = SAEConfig(d_in=args.width, d_sae=args.expansion * args.width, k=args.k)
    sae = SparseAutoencoder(config, generator=torch.Generator().manual_seed(0))
    trainer = SAETrainer(sae, stream, TrainConfig(steps=1, batch_size=args.batch_size), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps, rate, cpu_rate = time_steps(trainer, args.seconds, args.batch_size)
    print(
        f"SAE step, d={args.width}, F={config.d_sae}, k={args.k}, batch {args.batch_size}: "
        f"{rate:,.0f} activations/s wall, {cpu_rate:,.0f} per CPU second ({steps} steps)"
    )
    if device.type == "cuda":
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB")
    else:
        data = activations.numel() * 4 / 2**20
        print(
            f"peak RSS {before:,.0f} MiB before, {peak_rss_mib():,.0f} MiB after ({data:,.0f} MiB of it the held data)"
        )

    if args.stream == "toy":
        from cliplens.registry import create_backbone

        toy = create_backbone("toy", device=args.device)
        source = ImageSource("shapes:train")
        batch = min(args.batch_size, 1024)
        site = ActivationSite(2, "patches")
        streamed = ActivationStream(toy, source, site, batch_size=batch, chunk_images=64)
        toy_sae = SparseAutoencoder(SAEConfig(d_in=toy.width, d_sae=args.expansion * toy.width, k=min(args.k, 8)))
        toy_trainer = SAETrainer(toy_sae, streamed, TrainConfig(steps=1, batch_size=batch), device)
        steps, rate, cpu_rate = time_steps(toy_trainer, args.seconds, batch)
        print(
            f"toy pipeline (forwards + SAE step), batch {batch}: {rate:,.0f} activations/s wall, "
            f"{cpu_rate:,.0f} per CPU second ({steps} steps)"
        )


if __name__ == "__main__":
    main()
