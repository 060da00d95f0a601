"""The ``trident`` explainer: Trident (Shi, Dong, Xu — "Harnessing Vision Foundation Models for High-Performance,
Training-Free Open Vocabulary Segmentation", ICCV 2025, arXiv 2411.09219).

CLIP, DINO and SAM's image encoder together. As the authors' release runs it (github.com/YuHengsss/Trident,
commit a93b346d1b1dc55bc6f547da5b7d361ad449ae44, ``trident.py`` and ``open_clip/transformer.py``)::

    windows   crop x crop sub-images every stride px (336 / 224 for a 224-px ViT-B/16), last one flush
    per window, CLIP up to its last block; class token dropped; v = values of ln_1(x)
              DINO's final-norm patch tokens t of the same window (ImageNet-normalised)
              S = (cos(t_i, t_j) - 1.2 · mean S) · 3, S < 0 masked, A = softmax(S)        (beta 1.2, gamma 3)
              y = out_proj(A · resize(v))              no residual, no MLP
    stitch    the windows' y on the image's patch grid, averaged where they overlap
    SAM       the whole image through SAM's encoder (long side 1024, padded); its last global attention P
              and values u; keep P_h(i, j) where cos(u_i, u_j) > τ_i = min(0.9, 1.2 · mean cos(u_i, ·));
              G = mean_h, rows renormalised
    output    z = G · resize(y → SAM's valid grid);  S_t = cos(ln_post(z) @ proj, t) on SAM's grid

Details the code fixes, followed here as released (the paper's equations were not checked line by line
against them): the DINO affinity's mean is taken over every window of the image together; the aggregation uses
SAM's attention probabilities gated by its values' cosine (``get_sam_sim``), one set of weights for every CLIP
head; the last block keeps neither residual nor MLP; the score grid is SAM's.

Where the release gives NaN (a DINO affinity row masked whole, as on a flat region or with a random-init
DINO), the row keeps its largest entry (:func:`._trident_ops.proxy_attention`); nothing else changes.

Differences from the release (inputs only): SAM gets the pixels the explainer is given, resized in float
(the release re-reads the image file with OpenCV, rounds its sides up to multiples of 16 and resizes the
uint8 image with PIL); an image smaller than a window is first resized up to the window (the release does so
only for sides that are not multiples of 16); DINO runs through timm (``create_auxiliary``), whose position
embedding is resampled to a window's grid by timm rather than by DINO's own ``interpolate_pos_encoding``, and in
its own float32 where the release runs it in float16. The release's ``--sam_refine`` post-processing (SAM's prompt
decoder on boxes and points from the coarse masks, used for its published table) is not part of this
explainer: it needs SAM's prompt encoder and mask decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..backbones.model_backbone import OPENAI_MEAN, OPENAI_STD
from ..backbones.sam_attention import sam_attention_of
from ..errors import InputError
from ..options import Opt
from . import _trident_ops as ops
from .base import Explainer, PatchScores
from .maps import UPSAMPLE_THEN_NORMALIZE
from .support import Needs, Support

__all__ = ["Trident", "TridentSettings", "ProxyReader", "SamReader", "trident_scores", "proxy_reader", "sam_reader"]

#: (W, 3, c, c) CLIP-normalised windows -> ((W, N_d, C) proxy patch tokens, (h_d, w_d) their grid)
ProxyReader = Callable[[torch.Tensor], tuple[torch.Tensor, tuple[int, int]]]
#: (1, 3, H, W) CLIP-normalised image -> ((H_s, M, M) SAM probabilities, (H_s, M, dh) values, (h_s, w_s)),
#: over the valid (unpadded) part of SAM's grid
SamReader = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]

#: the release's window and stride for a 224-px CLIP (``slide_crop=336``, ``slide_stride=224``)
REFERENCE_CROP, REFERENCE_STRIDE, REFERENCE_SIZE = 336, 224, 224


@dataclass(frozen=True)
class TridentSettings:
    """The release's hyper-parameters (``configs/base_config.py``): windows in pixels, ``beta`` / ``gamma`` of the
    DINO affinity, ``cos_fac`` / ``refine_negative`` (``refine_neg_cos``) of SAM's gate, and ``sam_halves``
    (SAM run on the left and right halves separately, the release's Cityscapes case)."""

    crop: int = REFERENCE_CROP
    stride: int = REFERENCE_STRIDE
    beta: float = 1.2
    gamma: float = 3.0
    cos_fac: float = 1.2
    refine_negative: bool = True
    sam_halves: bool = False


def _windows_of(
    backbone: Backbone, image: torch.Tensor, settings: TridentSettings
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]]]:
    """(1, 3, H, W) -> the image (resized up to a window where smaller), its windows (W, 3, c, c), their boxes."""
    H, W = image.shape[-2:]
    crop = settings.crop
    if H < crop or W < crop:
        image = F.interpolate(image, size=(max(H, crop), max(W, crop)), mode="bilinear", align_corners=False)
        H, W = image.shape[-2:]
    patch = backbone.patch_size[0]
    boxes = ops.window_boxes(H, W, crop, settings.stride, patch)
    windows = torch.cat([image[:, :, y1 * patch : y2 * patch, x1 * patch : x2 * patch] for y1, x1, y2, x2 in boxes])
    return image, windows, boxes


def _stitched_values(
    backbone: Backbone,
    windows: torch.Tensor,
    boxes: list[tuple[int, int, int, int]],
    canvas: tuple[int, int],
    proxy: ProxyReader,
    s: TridentSettings,
) -> torch.Tensor:
    """(W, 3, c, c) windows -> (d, r·H_c, r·W_c) the proxy-attended last-block values, stitched."""
    last = backbone.num_layers - 1
    trace = backbone.trace(windows, layers=(last,), capture=("block_inputs", "ln_1"))
    window_grid = backbone.grid_for(windows)
    tokens, proxy_grid = proxy(windows)
    if proxy_grid[0] < window_grid[0] or proxy_grid[1] < window_grid[1]:
        raise InputError(
            f"the DINO grid {proxy_grid} of a window is coarser than CLIP's {window_grid}: Trident stitches at "
            "DINO's resolution; use a DINO with patches no larger than CLIP's"
        )
    probs = ops.proxy_attention(tokens.to(trace.ln_1[last].dtype), s.beta, s.gamma)
    patches = trace.ln_1[last][:, backbone.num_prefix_tokens :]
    values = ops.proxy_attended(trace.blocks[last], patches, probs, window_grid, proxy_grid)
    return ops.stitch_windows(values, boxes, window_grid, proxy_grid, canvas)


def _aggregated(
    image: torch.Tensor, stitched: torch.Tensor, sam: SamReader, s: TridentSettings
) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM's gated attention over the stitched (d, h, w) values -> ((M, d) tokens, (h_s, w_s))."""
    if not s.sam_halves:
        probs, values, grid = sam(image)
        weights = ops.sam_affinity(probs.to(stitched.dtype), values.to(stitched.dtype), s.cos_fac, s.refine_negative)
        return ops.aggregate(stitched, weights, grid), grid
    half_px, half_map = image.shape[-1] // 2, stitched.shape[-1] // 2
    parts = []
    for pixels, values_map in (
        (image[..., :half_px], stitched[..., :half_map]),
        (image[..., half_px:], stitched[..., half_map:]),
    ):
        probs, values, grid = sam(pixels)
        weights = ops.sam_affinity(probs.to(stitched.dtype), values.to(stitched.dtype), s.cos_fac, s.refine_negative)
        parts.append((ops.aggregate(values_map, weights, grid), grid))
    (left, (h, w1)), (right, (_, w2)) = parts
    d = left.shape[-1]
    joined = torch.cat([left.view(h, w1, d), right.view(h, w2, d)], dim=1)
    return joined.reshape(-1, d), (h, w1 + w2)


def trident_scores(
    backbone: Backbone,
    pixels: torch.Tensor,
    text_features: torch.Tensor,
    *,
    proxy: ProxyReader,
    sam: SamReader,
    settings: TridentSettings = TridentSettings(),
) -> torch.Tensor:
    """Trident's patch-text cosines of every image (module docstring).

    Args:
        pixels: (B, 3, H, W) CLIP-normalised images, sides multiples of CLIP's patch.
        text_features: (T, D) normalised text embeddings.
        proxy, sam: readers of DINO's patch tokens and SAM's last attention (:data:`ProxyReader`, :data:`SamReader`).
    Returns:
        (B, T, h_s, w_s) cosines on SAM's valid patch grid.
    """
    out = []
    for image in pixels.split(1):
        image, windows, boxes = _windows_of(backbone, image, settings)
        canvas = backbone.grid_for(image)
        stitched = _stitched_values(backbone, windows, boxes, canvas, proxy, settings)
        tokens, grid = _aggregated(image, stitched, sam, settings)
        features = F.normalize(backbone.project_tokens(tokens), dim=-1)  # (M, D)
        texts = F.normalize(text_features.to(features), dim=-1)
        out.append((features @ texts.T).T.reshape(-1, *grid))
    if len({tuple(o.shape) for o in out}) > 1:
        raise InputError("Trident's score grid follows each image's shape: explain images of one size per call")
    return torch.stack(out)


#: the release's models: DINO ViT-B/16 (``torch.hub`` ``dino_vitb16``) and SAM ViT-B (``sam_vit_b_01ec64.pth``)
DEFAULT_DINO = "vit_base_patch16_224.dino:pretrained"
DEFAULT_SAM = "samvit_base_patch16.sa1b:pretrained"

_NEEDS = Needs(
    patch_projection=True,
    reasons={
        "vit": "Trident re-runs the last block of a ViT image tower on sub-images; it needs an open_clip "
        "VisionTransformer with class-token pooling",
        "attention_pool": "Trident scores each aggregated patch token through ln_post and proj as in CLIP ViTs; this "
        "tower has an attention-pooling head, which the release does not apply to single patches",
        "mean": "Trident is written for class-token CLIP ViTs (ln_post and proj per patch); this tower mean-pools",
    },
)


def proxy_reader(auxiliary: Any, clip_mean: Sequence[float], clip_std: Sequence[float]) -> ProxyReader:
    """A :data:`ProxyReader` over an auxiliary ViT (DINO): each window re-normalised for it at the window's size."""

    def read(windows: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        prepared = auxiliary.prepare(windows, clip_mean=clip_mean, clip_std=clip_std, size=windows.shape[-2:])
        features = auxiliary.last_block(prepared)
        return features.patch_tokens.to(device=windows.device), tuple(features.grid)

    return read


def sam_reader(auxiliary: Any, clip_mean: Sequence[float], clip_std: Sequence[float]) -> SamReader:
    """A :data:`SamReader` over an auxiliary SAM image encoder (:func:`.sam_attention.sam_attention_of`)."""
    side = int(auxiliary.fixed_size[0])

    def read(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        prepared, valid = ops.sam_input(
            pixels, tuple(clip_mean), tuple(clip_std), auxiliary.mean, auxiliary.std, side, auxiliary.patch_size
        )
        attention = sam_attention_of(auxiliary, prepared)
        probs, values = ops.valid_part(attention.probs[0], attention.values[0], attention.grid, valid)
        return probs.to(pixels.device), values.to(pixels.device), valid

    return read


class Trident(Explainer):
    """Trident: CLIP's last-block values under DINO's affinity per sub-image, stitched, aggregated by SAM's gated
    attention (module docstring). Scores are raw cosines on SAM's patch grid.

    Options:
        dino, sam: auxiliary backbone specs (``cliplens list auxiliaries``); defaults: the release's DINO ViT-B/16
            and SAM ViT-B, timm's pretrained weights (offline: ``NAME:/path/weights``).
        crop, stride: window side and step in px (default the release's 336 / 224, scaled to the model's input).
        beta, gamma: DINO affinity's mean factor and temperature; cos_fac, refine_negative: SAM's gate;
        sam_halves: SAM on the image's left and right halves (the release's Cityscapes case).
    """

    map_order = UPSAMPLE_THEN_NORMALIZE
    needs = _NEEDS
    auxiliary_options: ClassVar[tuple[str, ...]] = ("dino", "sam")
    opt_in: ClassVar[str | None] = (
        "it reads DINO and SAM's image encoder, whose pretrained weights the toy world cannot provide; name it with "
        "-e trident (and --explainer-option trident.dino=NAME:/path/weights, trident.sam=NAME:/path/weights)"
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        dino: Annotated[str, Opt("DINO auxiliary backbone spec (the proxy for the sub-images)")] = DEFAULT_DINO,
        sam: Annotated[str, Opt("SAM image-encoder auxiliary backbone spec (global aggregation)")] = DEFAULT_SAM,
        crop: Annotated[int | None, Opt("window side in px (default 336 px scaled to the model input)", min=1)] = None,
        stride: Annotated[
            int | None, Opt("window step in px (default 224 px scaled to the model input)", min=1)
        ] = None,
        beta: Annotated[float, Opt("DINO affinity: subtract beta x its mean")] = 1.2,
        gamma: Annotated[float, Opt("DINO affinity temperature", min=0.0)] = 3.0,
        cos_fac: Annotated[float, Opt("SAM gate: keep attention where value cosine > cos_fac x its mean")] = 1.2,
        refine_negative: Annotated[bool, Opt("SAM gate: keep negative thresholds (else 0.6)")] = True,
        sam_halves: Annotated[bool, Opt("run SAM on the left and right halves (Cityscapes)")] = False,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        size = backbone.native_image_size[0]
        self.settings = TridentSettings(
            crop=crop if crop is not None else _scaled(REFERENCE_CROP, size, backbone.patch_size[0]),
            stride=stride if stride is not None else _scaled(REFERENCE_STRIDE, size, backbone.patch_size[0]),
            beta=beta,
            gamma=gamma,
            cos_fac=cos_fac,
            refine_negative=refine_negative,
            sam_halves=sam_halves,
        )
        patch = backbone.patch_size[0]
        for name in ("crop", "stride"):
            value = getattr(self.settings, name)
            if value % patch:
                raise InputError(
                    f"explainer trident option {name}={value} must be a multiple of the {patch}-px patch, "
                    f"e.g. {name}={max(patch, round(value / patch) * patch)}"
                )
        self.dino, self.sam = _auxiliary(dino, "dino", backbone), _auxiliary(sam, "sam", backbone)
        mean = tuple(getattr(backbone, "image_mean", OPENAI_MEAN))
        std = tuple(getattr(backbone, "image_std", OPENAI_STD))
        self._proxy, self._sam = proxy_reader(self.dino, mean, std), sam_reader(self.sam, mean, std)

    @classmethod
    def support(cls, backbone: Backbone) -> Support:
        found = super().support(backbone)
        if found and not backbone.interpolates_positions:
            return Support.refused(
                "Trident runs CLIP on sub-images 1.5 times the model's input (336 px for 224), which needs position "
                "embeddings interpolated; this backbone runs its native input size only"
            )
        return found

    def auxiliaries(self) -> dict[str, dict[str, str]]:
        """The auxiliary backbones' identities (spec, weights, SHA-256) for protocol cards."""
        return {"dino": self.dino.identity(), "sam": self.sam.identity()}

    def report(self) -> dict[str, Any]:
        return {"auxiliaries": self.auxiliaries(), "settings": asdict(self.settings)}

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, H, W), (T, D) -> raw cosines (B, T, h_s, w_s) on SAM's valid grid."""
        scores = trident_scores(
            self.backbone, pixels, text_features, proxy=self._proxy, sam=self._sam, settings=self.settings
        )
        return PatchScores(scores, extras={"crop": self.settings.crop, "stride": self.settings.stride})


def _scaled(pixels: int, model_size: int, patch: int) -> int:
    """``pixels`` of a 224-px model for a ``model_size``-px one, to whole patches."""
    return max(patch, round(pixels * model_size / REFERENCE_SIZE / patch) * patch)


def _auxiliary(spec: str, role: str, backbone: Backbone) -> Any:
    """The auxiliary backbone of ``spec`` on the CLIP backbone's device; one line when it is not a ``role`` model."""
    from ..backbones.auxiliary import create_auxiliary

    auxiliary = create_auxiliary(spec, device=backbone.device)
    is_sam = auxiliary.kind == "sam"
    if (role == "sam") != is_sam:
        want = "a SAM image encoder (e.g. samvit_base_patch16.sa1b)" if role == "sam" else "a ViT such as DINO"
        raise InputError(f"explainer trident option {role}={spec!r} is a {auxiliary.kind} model; it takes {want}")
    return auxiliary
