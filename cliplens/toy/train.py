"""Train the toy CLIP from scratch on toy scenes (CPU, minutes).

Symmetric InfoNCE on (scene, text) pairs: image->text over the batch's texts
plus one hard negative per image (a caption with one colour or shape changed,
or two colours swapped), text->image over the batch's images. Texts are full
captions, shape-only or colour-only descriptions (which take away the colour
shortcut); every text that truthfully describes an image counts as a positive. Every batch is a
pure function of ``(seed, step)`` (scenes from the ``train`` split only), the
initial weights come from ``seed``, and the schedule is fixed in steps, so a
run with the same seed and thread count reproduces the same weights.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ._texts import Key, image_keys, match_matrix, training_texts
from .model import TOY_MEAN, TOY_STD, build_tokenizer, build_toy_model, save_toy_model, toy_model_config
from .scenes import generate_scene, generate_single_object_scene, render_scene, sample_rng

_KIND_TEXT, _KIND_EMPTY = 7, 8  # rng streams for the texts / the empty scenes of training sample j


@dataclass
class TrainConfig:
    """Hyper-parameters of a toy CLIP run (the defaults reproduce the shipped checkpoint)."""

    seed: int = 0
    steps: int = 1400
    batch_size: int = 128
    lr: float = 2e-3
    min_lr: float = 2e-5
    warmup_steps: int = 80
    weight_decay: float = 0.05
    max_objects: int = 4
    threads: int = 2
    loader_workers: int = 1
    max_minutes: float | None = 14.0


def images_to_tensor(images: np.ndarray, mean: tuple[float, ...] = TOY_MEAN,
                     std: tuple[float, ...] = TOY_STD) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> normalised ``(B, 3, H, W)`` float32."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


class ToyBatches(torch.utils.data.Dataset):
    """Batch ``k`` of a run: images ``(B, 3, S, S)``, token ids ``(2B, C)`` (B positives, then B hard
    negatives) and the ``(B, 2B)`` bool matrix of which texts truthfully describe which image."""

    #: of every 50 training indices: 1 empty scene, 15 one-object scenes, 34 scenes with 1-4 objects
    PLAN = (1, 15)

    def __init__(self, cfg: TrainConfig, context_length: int, image_size: int) -> None:
        self.cfg = cfg
        self.context_length = context_length
        self.image_size = image_size
        self._tokenizer: Any = None

    def __len__(self) -> int:
        return self.cfg.steps

    def sample(self, j: int) -> tuple[np.ndarray, list[str], tuple[str, Key, str, Key]]:
        """Training sample ``j``: ``(H, W, 3)`` uint8 image, its class names, and its texts
        (see :func:`~cliplens.toy._texts.training_texts`)."""
        cfg = self.cfg
        slot = j % 50
        if slot < self.PLAN[0]:
            scene = render_scene(sample_rng(cfg.seed, "train", j, _KIND_EMPTY), [], self.image_size)
        elif slot < self.PLAN[0] + self.PLAN[1]:
            scene = generate_single_object_scene(cfg.seed, "train", j, self.image_size)
        else:
            scene = generate_scene(cfg.seed, "train", j, (1, cfg.max_objects), self.image_size)
        names = [o.class_name for o in scene.objects]
        return scene.image, names, training_texts(sample_rng(cfg.seed, "train", j, _KIND_TEXT), names)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(self.context_length)
        b = self.cfg.batch_size
        samples = [self.sample(step * b + i) for i in range(b)]
        images = images_to_tensor(np.stack([s[0] for s in samples]))
        texts = [s[2][0] for s in samples] + [s[2][2] for s in samples]
        keys = [s[2][1] for s in samples] + [s[2][3] for s in samples]
        match = match_matrix([image_keys(s[1]) for s in samples], keys)
        return images, self._tokenizer(texts), torch.from_numpy(match)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, match: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives and extra image->text negatives.

    Args:
        image_features: ``(B, D)`` L2-normalised.
        text_features: ``(T, D)`` L2-normalised, ``T >= B``; text ``i < B`` was written for image ``i``,
            texts ``B..T-1`` are extra (hard-negative) texts used in the image->text direction only.
        match: ``(B, T)`` bool, true where a text describes an image truthfully (the target spreads
            evenly over them; row ``i`` must include text ``i``).
        logit_scale: scalar (already exponentiated).
    """
    b = image_features.shape[0]
    logits = logit_scale * image_features @ text_features.T  # (B, T)
    target = match.float()
    loss_i2t = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    target_t = target[:, :b].T  # (B texts, B images)
    loss_t2i = -(target_t / target_t.sum(1, keepdim=True) * logits[:, :b].T.log_softmax(1)).sum(1).mean()
    return 0.5 * (loss_i2t + loss_t2i)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name or "embedding" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def train_toy_clip(cfg: TrainConfig | None = None, model_cfg: dict[str, Any] | None = None,
                   progress: bool = True, log: Callable[[str], None] | None = None,
                   callback: Callable[[int, torch.nn.Module], None] | None = None
                   ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a toy CLIP; returns ``(model, training_metadata)``.

    ``log`` receives a progress line every 100 steps; ``callback(step, model)``
    runs after every optimiser step (for monitoring; it must restore ``model.train()``).

    Stops early (and says so in the metadata, ``completed=False``) when
    ``cfg.max_minutes`` of wall time run out.
    """
    from tqdm.auto import tqdm

    cfg = cfg or TrainConfig()
    model_cfg = model_cfg or toy_model_config()
    if cfg.steps < 1 or cfg.batch_size < 2:
        raise InputError(f"need steps >= 1 and batch_size >= 2, got steps={cfg.steps}, batch_size={cfg.batch_size}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        model = build_toy_model(model_cfg, seed=cfg.seed).train()
        batches = ToyBatches(cfg, model_cfg["text_cfg"]["context_length"], model_cfg["vision_cfg"]["image_size"])
        loader = torch.utils.data.DataLoader(
            batches, batch_size=None, shuffle=False, num_workers=cfg.loader_workers,
            worker_init_fn=_worker_init if cfg.loader_workers else None,
            prefetch_factor=3 if cfg.loader_workers else None, persistent_workers=False)
        optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
        start = time.perf_counter()
        losses: list[float] = []
        completed = True
        bar = tqdm(total=cfg.steps, desc="toy clip", unit="step", disable=not progress)
        for step, (images, tokens, match) in enumerate(loader):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, cfg)
            img = F.normalize(model.encode_image(images), dim=-1)
            txt = F.normalize(model.encode_text(tokens), dim=-1)
            loss = contrastive_loss(img, txt, match, model.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            if log is not None and (step + 1) % 100 == 0:
                log(f"step {step + 1}/{cfg.steps}  loss {np.mean(losses[-100:]):.4f}  "
                    f"scale {model.logit_scale.exp().item():.1f}  {time.perf_counter() - start:.0f}s")
            if callback is not None:
                callback(step + 1, model)
            if cfg.max_minutes is not None and time.perf_counter() - start > 60 * cfg.max_minutes \
                    and step + 1 < cfg.steps:
                completed = False
                if log is not None:
                    log(f"stopped after {step + 1} of {cfg.steps} steps: the {cfg.max_minutes} minute budget ran out")
                break
        bar.close()
        wall = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous_threads)
    import open_clip

    meta = {"config": asdict(cfg), "steps_done": len(losses), "completed": completed,
            "wall_time_s": round(wall, 1), "final_loss": round(float(np.mean(losses[-50:])), 4),
            "torch": torch.__version__, "open_clip": open_clip.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    return model.eval(), meta


def train_and_save(out: str | Path, cfg: TrainConfig | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = print) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train with ``cfg`` and write ``out`` (``.safetensors``) plus its JSON; returns ``(model, metadata)``."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"--out must end in .safetensors, got {str(out)!r}")
    model_cfg = toy_model_config()
    model, meta = train_toy_clip(cfg, model_cfg, progress=progress, log=log)
    save_toy_model(model, out, model_cfg=model_cfg, training=meta)
    return model, meta
