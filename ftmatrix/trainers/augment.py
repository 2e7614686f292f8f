"""Training-time augmentation of a whole batch at once, each image its own random draw.

torchvision's v2 transforms draw one set of parameters per call, so a batch-level call
would crop, flip and jitter every image of the batch alike; called per image they draw
correctly but launch a dozen small kernels per image. Measured on an H100 (see
benchmarks/gpu_speed.py), per-image v2 on the GPU fed 960 images/s, half of what 8
DataLoader workers do on the CPU. Here every step is one batched operation whatever the
batch size: the parameters of all images are drawn together (from torch's global
generator, on the CPU, so a job's seed and a resumed job's restored RNG state decide
them on any device), then

- random resized crop: one `roi_align` crops every image to its own box and resizes
  it (bilinear, averaging several samples per output pixel when shrinking);
- horizontal flip, grayscale: a per-image choice between two batched results;
- affine (rotation, translation): one `affine_grid` + `grid_sample`, black fill;
- colour jitter: per-image brightness, contrast and saturation factors, applied in
  that order (torchvision shuffles the order per call).

The draws follow torchvision's: RandomResizedCrop's ten attempts at an area in `scale`
and a log-uniform aspect ratio in [3/4, 4/3] with its centre-crop fallback, and its
uniform ranges for the rest. Input uint8 (B, C, H, W); output float in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ftmatrix.config import AugmentConfig

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect-ratio range
ATTEMPTS = 10  # RandomResizedCrop's tries before its centre-crop fallback
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale


class BatchAugment:
    def __init__(self, spec: AugmentConfig, size: int):
        self.spec = spec
        self.size = size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        x = images.float().div_(255)
        if spec.resized_crop:
            x = self.crop(x)
        if spec.horizontal_flip:
            flip = (torch.rand(len(x)) < spec.horizontal_flip).nonzero().squeeze(1)
            flip = flip.to(x.device)
            x[flip] = x[flip].flip(-1)  # only the drawn images are touched
        if spec.affine_degrees or spec.affine_translate:
            x = self.affine(x)
        if spec.grayscale and x.shape[1] == 3:
            grey = _chance(len(x), spec.grayscale, x.device)
            x = torch.where(grey, _grey(x).expand_as(x), x)
        if spec.color_jitter:
            x = self.jitter(x)
        return x

    def crop_boxes(self, n: int, height: int, width: int) -> torch.Tensor:
        """(n, 4) boxes x1, y1, x2, y2 in pixels, drawn as RandomResizedCrop draws."""
        low, high = self.spec.crop_scale
        area = height * width * torch.empty(n, ATTEMPTS).uniform_(low, high)
        log_ratio = torch.empty(n, ATTEMPTS).uniform_(math.log(RATIO[0]), math.log(RATIO[1]))
        ratio = torch.exp(log_ratio)
        w = torch.sqrt(area * ratio).round()
        h = torch.sqrt(area / ratio).round()
        fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
        first = fits.float().argmax(dim=1)  # the first attempt that fits (0 if none)
        w = w.gather(1, first[:, None]).squeeze(1)
        h = h.gather(1, first[:, None]).squeeze(1)
        # none fits: the centre crop of the largest box within the ratio range
        none = ~fits.any(dim=1)
        in_ratio = width / height
        if in_ratio < RATIO[0]:
            fw, fh = width, round(width / RATIO[0])
        elif in_ratio > RATIO[1]:
            fw, fh = round(height * RATIO[1]), height
        else:
            fw, fh = width, height
        w = torch.where(none, torch.tensor(float(fw)), w)
        h = torch.where(none, torch.tensor(float(fh)), h)
        top = torch.floor(torch.rand(n) * (height - h + 1))
        left = torch.floor(torch.rand(n) * (width - w + 1))
        top = torch.where(none, ((height - h) // 2), top)
        left = torch.where(none, ((width - w) // 2), left)
        return torch.stack([left, top, left + w, top + h], dim=1)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import roi_align

        boxes = self.crop_boxes(len(x), x.shape[2], x.shape[3])
        # bilinear samples per output pixel and side: about the shrink factor, so a
        # strong shrink averages (anti-aliasing) and a mild one costs one sample
        shrink = float((boxes[:, 2:] - boxes[:, :2]).max()) / self.size
        samples = max(1, round(shrink))
        index = torch.arange(len(x), dtype=boxes.dtype)[:, None]
        rois = torch.cat([index, boxes], dim=1).to(x.device, x.dtype)
        # aligned=True: pixel i covers [i, i + 1), so a whole-image box is the image
        return roi_align(x, rois, (self.size, self.size), sampling_ratio=samples, aligned=True)

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        degrees, translate = self.spec.affine_degrees, self.spec.affine_translate
        angle = torch.empty(n).uniform_(-degrees, degrees) * (math.pi / 180)
        shift = torch.empty(n, 2).uniform_(-translate, translate) * 2  # grid units: [-1, 1]
        cos, sin = torch.cos(angle), torch.sin(angle)
        aspect = height / width  # a rotation in pixels, not in the unit square
        theta = torch.stack(
            [
                torch.stack([cos, -sin * aspect, shift[:, 0]], dim=1),
                torch.stack([sin / aspect, cos, shift[:, 1]], dim=1),
            ],
            dim=1,
        ).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def jitter(self, x: torch.Tensor) -> torch.Tensor:
        j = self.spec.color_jitter
        factors = torch.empty(3, len(x), 1, 1, 1).uniform_(max(0.0, 1 - j), 1 + j)
        brightness, contrast, saturation = factors.to(x.device, x.dtype)
        x.mul_(brightness).clamp_(0, 1)  # in place: x is this batch's own float copy
        if x.shape[1] == 3:
            mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x.mul_(contrast).add_((1 - contrast) * mean).clamp_(0, 1)
            x.mul_(saturation).add_((1 - saturation) * _grey(x)).clamp_(0, 1)
        return x


def _chance(n: int, p: float, device: torch.device) -> torch.Tensor:
    """(n, 1, 1, 1) booleans, each True with probability p."""
    return (torch.rand(n) < p).view(n, 1, 1, 1).to(device)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB images in [0, 1]."""
    r, g, b = x.unbind(dim=1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)
