"""The losses of ESRGAN's two stages: L1, the VGG19 perceptual loss and the relativistic average GAN losses.

Stage 1 minimises L1 alone. Stage 2 trains the generator with
    perceptual_weight · perceptual + gan_weight · adversarial + pixel_weight · L1   (1, 5e-3, 1e-2)
and the discriminator with the relativistic average discriminator loss. With C(x) the discriminator's raw output,
D(xr, xf) = σ(C(xr) − E[C(xf)]) says how much more realistic a real image is than the average fake (ESRGAN, 3.2):
    L_D = −E[log D(xr, xf)] − E[log(1 − D(xf, xr))]
    L_G = −E[log(1 − D(xr, xf))] − E[log D(xf, xr)]
the expectations being means over the mini-batch. Both are written with BCE-with-logits, which is the same formula
(−log σ(z) = BCE(z, 1), −log(1 − σ(z)) = BCE(z, 0)) computed without overflow for large |z|.

Note: BasicSR averages the real and fake terms (a factor 1/2 on both losses); these follow the paper and
FIELD-NOTES, without the 1/2, so BasicSR's gan_weight 5e-3 corresponds to 2.5e-3 here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vsr.models.vgg import VGGFeatureExtractor

# The generator's stage-2 loss weights (ESRGAN paper; BasicSR's option names).
PIXEL_WEIGHT = 1e-2
PERCEPTUAL_WEIGHT = 1.0
GAN_WEIGHT = 5e-3


@dataclass(frozen=True)
class GeneratorLossWeights:
    pixel_weight: float = PIXEL_WEIGHT
    perceptual_weight: float = PERCEPTUAL_WEIGHT
    gan_weight: float = GAN_WEIGHT

    def total(self, pixel: Tensor, perceptual: Tensor, adversarial: Tensor) -> Tensor:
        """The stage-2 generator loss from its unweighted parts."""
        return self.perceptual_weight * perceptual + self.gan_weight * adversarial + self.pixel_weight * pixel


def l1_loss(sr: Tensor, hr: Tensor) -> Tensor:
    """Mean absolute error over every pixel, channel and image."""
    return F.l1_loss(sr, hr)


class PerceptualLoss(nn.Module):
    """weight · L1 between the extractor's features (VGG19 conv5_4 before the ReLU) of SR and HR images.

    The HR features are computed without gradients; gradients reach the generator through the SR branch only.
    """

    def __init__(self, extractor: VGGFeatureExtractor, weight: float = 1.0):
        super().__init__()
        self.extractor = extractor
        self.weight = weight

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            hr_features = self.extractor(hr)
        return self.weight * F.l1_loss(self.extractor(sr), hr_features)


def _relativistic(real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, Tensor]:
    """C(xr) − E[C(xf)] and C(xf) − E[C(xr)], flattened to one value per image."""
    real_logits, fake_logits = real_logits.flatten(), fake_logits.flatten()
    return real_logits - fake_logits.mean(), fake_logits - real_logits.mean()


def _minus_log_sigmoid(z: Tensor) -> Tensor:
    """−E[log σ(z)]."""
    return F.binary_cross_entropy_with_logits(z, torch.ones_like(z))


def _minus_log_one_minus_sigmoid(z: Tensor) -> Tensor:
    """−E[log(1 − σ(z))]."""
    return F.binary_cross_entropy_with_logits(z, torch.zeros_like(z))


def ragan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """−E[log σ(C(xr) − E[C(xf)])] − E[log(1 − σ(C(xf) − E[C(xr)]))].

    For the discriminator's step: compute `fake_logits` from detached generator outputs."""
    real_vs_fake, fake_vs_real = _relativistic(real_logits, fake_logits)
    return _minus_log_sigmoid(real_vs_fake) + _minus_log_one_minus_sigmoid(fake_vs_real)


def ragan_generator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """−E[log(1 − σ(C(xr) − E[C(xf)]))] − E[log σ(C(xf) − E[C(xr)])].

    Unlike a standard GAN the generator's loss involves the real images too: it gains from making real images look
    less realistic relative to its fakes. Gradients flow through `fake_logits` (pass `real_logits` detached)."""
    real_vs_fake, fake_vs_real = _relativistic(real_logits, fake_logits)
    return _minus_log_one_minus_sigmoid(real_vs_fake) + _minus_log_sigmoid(fake_vs_real)
