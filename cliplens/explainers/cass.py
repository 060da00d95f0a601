"""The ``cass`` explainer: CASS (Kim, Ju, Han, Yang, Hwang — "Distilling Spectral Graph for Object-Context Aware
Open-Vocabulary Semantic Segmentation", CVPR 2025, arXiv 2411.17150).

Written from the authors' released code (github.com/MICV-yonsei/CASS, commit
228ecdd8273e269d1b955f5ad7f9558346036e22: ``clip/model.py`` ``VisionTransformer.forward`` / ``custom_attn``,
``cass_segmentor.py`` ``forward_feature`` / ``hierarchical_prompt``, ``dino/dino_attention.py``), CLIP ViT-B/16
with DINO ViT-B/8 as released. Per image, N patches, H heads, Q text embeddings::

    k, v      = CLIP's last-block keys and values of the patches (the class token is dropped from the attention)
    L         = spectral distillation of DINO's last-block key graph into k kᵀ  (cass_spectral.distilled_logits)
    A         = softmax(L + ω)               ω: NACLIP's Gaussian neighbourhood over the patches (std 5)
    F         = normalise(ln_post(out_proj(A v)) @ proj)     the block reduced to its attention (no residual, MLP)
    g         = normalise(image embedding) @ tᵀ              (Q,) the object-presence prior
    t̃         = per cluster of texts (Ward linkage on cosine distances, cut at h_threshold), the text with the
                largest g moves towards the mean of its 2 most similar patches: normalise((1-α) t + α m)
    S         = (1 - γ) F t̃ᵀ + γ g                           (N, Q) -> (Q, h, w) patch scores

DINO sees the CLIP input as the release feeds it: de-normalised with ImageNet statistics (the release's
inverse transform, whose blue std reads 0.255), times 255 and truncated to uint8, squashed to a square of the
short side (PIL bicubic; here torch bicubic with antialiasing when the input is not square), then normalised with
ImageNet's mean / std (:func:`dino_pixels`). DINOv2 (``kind == "dinov2"``) gets a 518-px square, scaled with the
CLIP input size (518 for 224).

Options default to the released configs for Pascal Context (γ = 0.25, α = 0.04, h_threshold = 0.09, eigenscaling
on); the OVSS paper protocol passes each benchmark's own (:mod:`cliplens.benchmarks.protocols.ovss_methods`). In the
release the image embedding of the prior comes from the *whole* image when it slides windows (all benchmarks but
Cityscapes); an explainer sees one input, so here it is the input's own (as the release on Cityscapes and on
VOC21, which it runs whole) unless a caller that slides windows gives the whole image's embedding
(:meth:`CASS.whole_image_context`: the OVSS paper protocol does, as the release, on all benchmarks but Cityscapes;
option ``whole_image_prior=False`` declines it). PAMR is off in the released evaluation (``eval_all.sh --pamr off``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..backbones.vit import gaussian_window_bias, tokens_to_grid
from ..errors import InputError
from ..options import Opt
from .base import Explainer, PatchScores
from .cass_spectral import SOLVERS, dino_keys_on_clip_grid, distilled_logits
from .last_block import last_block_needs
from .maps import UPSAMPLE_THEN_NORMALIZE

#: the normalisation DINO was trained with (torchvision ``Normalize`` in the release's DINO wrapper)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

if TYPE_CHECKING:
    from ..backbones.auxiliary import AuxiliaryBackbone

__all__ = [
    "CASS",
    "default_auxiliary",
    "DEFAULT_AUXILIARY",
    "cass_patch_scores",
    "cass_scores",
    "dino_pixels",
    "dino_side",
    "refine_texts",
    "text_clusters",
]

#: the released VFM: DINO ViT-B/8 (``dino_type='dino_vitb8'``), random-initialised by this spec
DEFAULT_AUXILIARY = "vit_base_patch8_224.dino"
#: the release's inverse normalisation (``cass_segmentor.py``: ImageNet mean, and std with 0.255 for blue)
_INVERSE_MEAN = (0.485, 0.456, 0.406)
_INVERSE_STD = (0.229, 0.224, 0.255)
#: DINOv2's fixed input side in the release, for a 224-px CLIP input
_DINOV2_SIDE, _REFERENCE_SIDE = 518, 224
#: patches per cluster's chosen text whose mean moves the text (``_compute_topk_similarities`` k=2)
_TOP_PATCHES = 2


def text_clusters(texts: torch.Tensor, threshold: float) -> np.ndarray:
    """(Q, D) text embeddings -> (Q,) cluster ids 0..K-1: Ward linkage on their cosine distances, cut at distance
    ``threshold`` (scipy's ``fcluster``), as the release's ``hierarchical_clustering``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if texts.shape[0] < 2:
        return np.zeros(texts.shape[0], dtype=np.int64)
    unit = F.normalize(texts.detach().double().cpu(), dim=-1).numpy()
    distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    distances = (distances + distances.T) / 2
    np.fill_diagonal(distances, 0.0)
    tree = linkage(squareform(distances), method="ward")
    return fcluster(tree, t=threshold, criterion="distance").astype(np.int64) - 1


def refine_texts(
    features: torch.Tensor, texts: torch.Tensor, presence: torch.Tensor, clusters: np.ndarray, alpha: float
) -> torch.Tensor:
    """CASS's object-presence text adjustment for one image.

    Args:
        features: (N, D) L2-normalised patch features.
        texts: (Q, D) L2-normalised text embeddings.
        presence: (Q,) image–text cosines (the object-presence prior).
        clusters: (Q,) cluster id of each text (:func:`text_clusters`).
        alpha: how far the chosen text moves towards its patches (``mean_vector_weight``).
    Returns:
        (Q, D): per cluster, the text with the largest ``presence`` replaced by
        ``normalise((1 - alpha) t + alpha normalise(mean of its 2 most similar patches))``; the others unchanged.
    """
    adjusted = texts.clone()
    for cluster in range(int(clusters.max()) + 1 if clusters.size else 0):
        members = torch.as_tensor(np.flatnonzero(clusters == cluster), device=texts.device)
        chosen = int(members[presence[members].argmax()])
        text = F.normalize(texts[chosen], dim=0)
        top = (features @ text).topk(min(_TOP_PATCHES, features.shape[0])).indices
        mean = F.normalize(features[top].mean(dim=0), dim=0)
        adjusted[chosen] = F.normalize((1 - alpha) * text + alpha * mean, dim=0)
    return adjusted


def cass_scores(
    features: torch.Tensor,
    embedding: torch.Tensor,
    texts: torch.Tensor,
    clusters: np.ndarray,
    *,
    alpha: float,
    gamma: float,
) -> torch.Tensor:
    """(N, D) patch features, (D,) image embedding, (Q, D) texts -> (N, Q) CASS's patch–text scores
    ``(1 - gamma) · F t̃ᵀ + gamma · presence`` (all inputs normalised here)."""
    features = F.normalize(features, dim=-1)
    texts = F.normalize(texts.to(features), dim=-1)
    presence = F.normalize(embedding.to(features), dim=-1) @ texts.T
    adjusted = refine_texts(features, texts, presence, clusters, alpha)
    return (features @ adjusted.T) * (1 - gamma) + presence * gamma


def dino_pixels(pixels: torch.Tensor, side: int, patch_size: int) -> torch.Tensor:
    """(B, 3, H, W) CLIP-normalised pixels -> (B, 3, s, s) DINO's input as the release makes it (module docstring):
    the release's inverse normalisation (ImageNet statistics, not CLIP's), uint8 truncation, a resize to a
    ``side`` square when the input is not one already, the top-left ``s = side - side % patch_size`` pixels, ImageNet
    normalisation."""
    x = pixels.double()
    view = (1, 3, 1, 1)
    inv_mean = torch.tensor(_INVERSE_MEAN, dtype=torch.float64, device=x.device).view(view)
    inv_std = torch.tensor(_INVERSE_STD, dtype=torch.float64, device=x.device).view(view)
    image = torch.floor(((x * inv_std + inv_mean) * 255).clamp(0, 255)) / 255
    if tuple(image.shape[-2:]) != (side, side):
        image = F.interpolate(image, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
        image = torch.round(image.clamp(0, 1) * 255) / 255
    kept = side - side % patch_size
    image = image[:, :, :kept, :kept]
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64, device=x.device).view(view)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64, device=x.device).view(view)
    return ((image - mean) / std).to(pixels.dtype)


def dino_side(kind: str, size: Sequence[int]) -> int:
    """The square side DINO is fed for a CLIP input of ``size`` (H, W): the short side (DINO ViT-B/8 in the
    release), or DINOv2's 518 px scaled with the input (518 for 224)."""
    if kind == "dinov2":
        return round(_DINOV2_SIDE * min(size) / _REFERENCE_SIDE)
    return int(min(size))


def cass_patch_scores(
    backbone: Backbone,
    pixels: torch.Tensor,
    text_features: torch.Tensor,
    dino_keys: torch.Tensor,
    dino_grid: tuple[int, int],
    *,
    gamma: float,
    alpha: float,
    h_threshold: float,
    eigenscaling: bool = True,
    std: float = 5.0,
    solver: str = "randomized",
    seed: int = 0,
    image_embeddings: torch.Tensor | None = None,
) -> PatchScores:
    """CASS's patch scores from CLIP's traced last block and DINO's last-block patch keys (module docstring).

    Args:
        pixels: (B, 3, S_h, S_w) CLIP input.
        text_features: (Q, D) text embeddings.
        dino_keys: (B, H, h_d·w_d, dh) DINO's last-block keys of the patches (prefix tokens removed).
        dino_grid: (h_d, w_d) DINO's patch grid.
        image_embeddings: (B, D) image embeddings of the presence prior (default: the input's own).
    Returns:
        scores (B, Q, h, w); extras ``partner`` / ``weight`` (B, H): the DINO graph each CLIP head took, its weight.
    """
    grid = backbone.grid_for(pixels)
    last = backbone.num_layers - 1
    trace = backbone.trace(pixels, layers=(last,), capture=("ln_1",))
    block = trace.blocks[last]
    _, keys, values = trace.qkv(last)
    prefix = backbone.num_prefix_tokens
    keys, values = keys[:, :, prefix:], values[:, :, prefix:]  # (B, H, N, dh): the class token is dropped
    _check_heads(dino_keys, keys)
    bias = gaussian_window_bias(grid, std, 0, dtype=keys.dtype).to(keys.device)
    heads, partners, weights = [], [], []
    for b in range(pixels.shape[0]):
        on_grid = dino_keys_on_clip_grid(dino_keys[b].to(keys), dino_grid, keys[b], grid)
        logits, partner, weight = distilled_logits(
            keys[b], on_grid, block.scale, eigenscaling=eigenscaling, solver=solver, seed=seed
        )
        heads.append((logits + bias).softmax(dim=-1) @ values[b])
        partners.append(partner)
        weights.append(weight)
    features = backbone.project_tokens(block.merge_heads(torch.stack(heads)))  # (B, N, D)
    clusters = text_clusters(text_features, h_threshold)
    embeddings = trace.embedding if image_embeddings is None else image_embeddings
    scores = torch.stack(
        [
            cass_scores(features[b], embeddings[b], text_features, clusters, alpha=alpha, gamma=gamma)
            for b in range(pixels.shape[0])
        ]
    )
    return PatchScores(
        tokens_to_grid(scores, grid), extras={"partner": torch.stack(partners), "weight": torch.stack(weights)}
    )


class CASS(Explainer):
    """CASS: DINO's low-rank key graph distilled into CLIP's last-block k–k attention, object-presence text refinement.

    Options:
        auxiliary: the DINO (spec of an auxiliary backbone; random-initialised by architecture name).
        global_semantics_weight: γ, the weight of the image-level prior in every patch's scores.
        mean_vector_weight: α, how far each cluster's most present text moves towards its patches.
        h_threshold: the Ward-linkage distance at which texts are cut into clusters.
        eigenscaling: CASS's dynamic eigenscaling of DINO's singular values (off for VOC20 and Cityscapes).
        std: the Gaussian neighbourhood's standard deviation, in patches.
        solver: ``randomized`` (the release's ``svd_lowrank``, seeded) or ``exact`` (truncated SVD).
        seed: seeds the randomized SVD per image.
        whole_image_prior: take the presence prior's image embedding from the whole image when a caller slides
            windows and gives it (:meth:`whole_image_context`); False: each window's own (the release on Cityscapes).

    ``extras``: ``{"partner": (B, H) DINO graph per CLIP head, "weight": (B, H) its blend weight}``.
    """

    map_order: ClassVar[str] = UPSAMPLE_THEN_NORMALIZE
    needs = last_block_needs("CASS")
    auxiliary_options: ClassVar[tuple[str, ...]] = ("auxiliary",)
    opt_in: ClassVar[str | None] = (
        "it distils a DINO's key graph, whose pretrained weights the toy world cannot provide; name it with -e cass "
        "(and --explainer-option cass.auxiliary=vit_base_patch8_224.dino:/path/weights)"
    )
    #: the spectral steps run in float64 whatever the dtype (as released); the rest may autocast
    reduced_precision: ClassVar[bool] = True

    def __init__(
        self,
        backbone: Backbone,
        *,
        auxiliary: Annotated[
            str | None,
            Opt(
                "the DINO whose key graph is distilled (auxiliary spec; default: DINO ViT-B/8, random-initialised, "
                "with the CLIP tower's heads and width)"
            ),
        ] = None,
        global_semantics_weight: Annotated[float, Opt("γ: weight of the image-level prior", min=0.0, max=1.0)] = 0.25,
        mean_vector_weight: Annotated[float, Opt("α: text step towards its patches", min=0.0, max=1.0)] = 0.04,
        h_threshold: Annotated[float, Opt("Ward distance cutting the texts into clusters", min=0.0)] = 0.09,
        eigenscaling: Annotated[bool, Opt("dynamic eigenscaling of DINO's singular values")] = True,
        std: Annotated[float, Opt("Gaussian neighbourhood std, in patches (> 0)")] = 5.0,
        solver: Annotated[str, Opt("low-rank SVD of DINO's graph", choices=SOLVERS)] = "randomized",
        seed: Annotated[int, Opt("seed of the randomized SVD", min=0)] = 0,
        whole_image_prior: Annotated[
            bool, Opt("under sliding windows, the prior from the whole image's embedding (as released)")
        ] = True,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        if not std > 0:
            raise InputError(f"explainer cass option std={std!r} must be a positive number of patches, e.g. std=5")
        self.global_semantics_weight, self.mean_vector_weight = global_semantics_weight, mean_vector_weight
        self.h_threshold, self.eigenscaling, self.std = h_threshold, eigenscaling, std
        self.solver, self.seed = solver, seed
        self.whole_image_prior = whole_image_prior
        self._whole_image_embedding: torch.Tensor | None = None
        self.auxiliary_spec = auxiliary or default_auxiliary(backbone)
        self.auxiliary = _load_auxiliary(self.auxiliary_spec, backbone)

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S_h, S_w), (Q, D) -> (B, Q, h, w) CASS scores (raw, as the release's logits before the scale)."""
        dino = self.dino_keys(pixels)
        if dino.k is None:
            raise InputError("explainer cass needs the auxiliary backbone's attention keys; this one gives none")
        return cass_patch_scores(
            self.backbone,
            pixels,
            text_features,
            dino.k[:, :, dino.num_prefix_tokens :],
            dino.grid,
            gamma=self.global_semantics_weight,
            alpha=self.mean_vector_weight,
            h_threshold=self.h_threshold,
            eigenscaling=self.eigenscaling,
            std=self.std,
            solver=self.solver,
            seed=self.seed,
            image_embeddings=self._prior_embeddings(len(pixels)),
        )

    @contextlib.contextmanager
    def whole_image_context(self, embedding: torch.Tensor) -> Iterator[None]:
        """Within it, every call's presence prior reads ``embedding`` (1, D), the whole image's CLIP embedding,
        as the release's ``forward_slide`` does for each window (``whole_image_prior=False``: ignored)."""
        self._whole_image_embedding = embedding.detach() if self.whole_image_prior else None
        try:
            yield
        finally:
            self._whole_image_embedding = None

    def _prior_embeddings(self, batch: int) -> torch.Tensor | None:
        """(B, D) the whole image's embedding for each input, or None (each input's own)."""
        whole = self._whole_image_embedding
        return None if whole is None else whole.reshape(1, -1).expand(batch, -1)

    def dino_keys(self, pixels: torch.Tensor) -> Any:
        """DINO's last-block features (:class:`AuxiliaryFeatures`) of the CLIP input ``pixels`` (B, 3, H, W)."""
        aux = self.auxiliary
        side = dino_side(aux.kind, tuple(pixels.shape[-2:]))
        prepared = dino_pixels(pixels, side, aux.patch_size)
        return aux.last_block(prepared.to(device=aux.device))


def default_auxiliary(backbone: Backbone) -> str:
    """DINO ViT-B/8's spec, random-initialised; with the CLIP tower's width and heads where they are not ViT-B's
    (768 = 12 × 64), so that every CLIP ViT has a DINO to pair head by head (the toy world, tests)."""
    width, heads = backbone.width, backbone.num_heads
    if (width, heads) == (768, 12):
        return DEFAULT_AUXILIARY
    return f"{DEFAULT_AUXILIARY}?embed_dim={width}&num_heads={heads}"


def _load_auxiliary(spec: str, backbone: Backbone) -> AuxiliaryBackbone:
    """The auxiliary backbone of ``spec`` on ``backbone``'s device; one line, before any work, when it is no DINO
    or its heads cannot be paired with CLIP's last block (one patch through it tells its head layout)."""
    from ..backbones.auxiliary import create_auxiliary

    aux = create_auxiliary(spec, device=backbone.device)
    if aux.kind not in ("dino", "dinov2"):
        raise InputError(
            f"explainer cass distils a DINO / DINOv2 key graph; auxiliary {spec!r} is a {aux.kind} model: "
            f"pass auxiliary={DEFAULT_AUXILIARY}:/path/to/dino_vitbase8_pretrain.pth (or a DINOv2)"
        )
    probe = aux.last_block(torch.zeros(1, 3, aux.patch_size, aux.patch_size, device=aux.device)).k
    if probe is None:
        raise InputError(f"explainer cass needs the attention keys of auxiliary {spec!r}; it gives none")
    width, heads = backbone.width, backbone.num_heads
    _check_heads(probe, torch.empty(1, heads, 1, width // heads))
    return aux


def _check_heads(dino_keys: torch.Tensor, clip_keys: torch.Tensor) -> None:
    """One line when DINO's keys cannot be paired head by head with CLIP's (the release reshapes DINO's keys into
    CLIP's heads and head width, so both must agree)."""
    if dino_keys.shape[1] != clip_keys.shape[1] or dino_keys.shape[-1] != clip_keys.shape[-1]:
        raise InputError(
            f"explainer cass pairs DINO's heads with CLIP's: DINO has {dino_keys.shape[1]} heads of width "
            f"{dino_keys.shape[-1]}, CLIP's last block {clip_keys.shape[1]} of width {clip_keys.shape[-1]}: "
            "use a DINO of the same head layout (ViT-B/8 for CLIP ViT-B/16)"
        )
