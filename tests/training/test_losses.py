"""ESRGAN's losses: relativistic average GAN losses against hand-computed values and the literal formulas,
numerical stability, the perceptual loss on pre-activation VGG features, the stage-2 weights."""

import math

import pytest
import torch
from torch.nn import functional as F

from vsr.models.vgg import VGGFeatureExtractor
from vsr.training.losses import (
    GAN_WEIGHT,
    PERCEPTUAL_WEIGHT,
    PIXEL_WEIGHT,
    GeneratorLossWeights,
    PerceptualLoss,
    l1_loss,
    ragan_discriminator_loss,
    ragan_generator_loss,
)


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


# Two real and two fake scores C(x), as the discriminator would return them (N×1).
REAL = [1.0, -0.5]
FAKE = [0.2, -1.0]


def test_discriminator_loss_by_hand():
    # E[C(xf)] = -0.4, E[C(xr)] = 0.25
    real_vs_fake = [1.0 + 0.4, -0.5 + 0.4]  # C(xr) - E[C(xf)]
    fake_vs_real = [0.2 - 0.25, -1.0 - 0.25]  # C(xf) - E[C(xr)]
    expected = (
        -(math.log(sigmoid(1.4)) + math.log(sigmoid(-0.1))) / 2
        - (math.log(1 - sigmoid(-0.05)) + math.log(1 - sigmoid(-1.25))) / 2
    )
    assert real_vs_fake == pytest.approx([1.4, -0.1]) and fake_vs_real == pytest.approx([-0.05, -1.25])
    assert expected == pytest.approx(0.94260140, abs=1e-8)
    loss = ragan_discriminator_loss(torch.tensor(REAL).view(2, 1), torch.tensor(FAKE).view(2, 1))
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_generator_loss_by_hand():
    expected = (
        -(math.log(1 - sigmoid(1.4)) + math.log(1 - sigmoid(-0.1))) / 2
        - (math.log(sigmoid(-0.05)) + math.log(sigmoid(-1.25))) / 2
    )
    assert expected == pytest.approx(2.24260140, abs=1e-8)
    loss = ragan_generator_loss(torch.tensor(REAL).view(2, 1), torch.tensor(FAKE).view(2, 1))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # log σ(z) − log(1 − σ(z)) = z, so L_G − L_D = 2·(E[C(xr)] − E[C(xf)]) = 2·(0.25 + 0.4).
    d_loss = ragan_discriminator_loss(torch.tensor(REAL), torch.tensor(FAKE))
    assert (loss - d_loss).item() == pytest.approx(1.3, abs=1e-6)


def _literal_discriminator_loss(real, fake):
    d_real_fake = torch.sigmoid(real - fake.mean())
    d_fake_real = torch.sigmoid(fake - real.mean())
    return -torch.log(d_real_fake).mean() - torch.log(1 - d_fake_real).mean()


def _literal_generator_loss(real, fake):
    d_real_fake = torch.sigmoid(real - fake.mean())
    d_fake_real = torch.sigmoid(fake - real.mean())
    return -torch.log(1 - d_real_fake).mean() - torch.log(d_fake_real).mean()


def test_bce_form_equals_the_literal_formula_and_its_gradients():
    torch.manual_seed(0)
    real = (torch.randn(16, 1, dtype=torch.float64) * 2).requires_grad_()
    fake = (torch.randn(16, 1, dtype=torch.float64) * 2 - 1).requires_grad_()
    for ours, literal in [
        (ragan_discriminator_loss, _literal_discriminator_loss),
        (ragan_generator_loss, _literal_generator_loss),
    ]:
        a, b = ours(real, fake), literal(real, fake)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
        grads_a = torch.autograd.grad(a, (real, fake))
        grads_b = torch.autograd.grad(b, (real, fake))
        for ga, gb in zip(grads_a, grads_b):
            assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-12)


def test_stable_where_the_literal_formula_overflows():
    real, fake = torch.tensor([[60.0], [50.0]]), torch.tensor([[-50.0], [-40.0]])
    assert torch.isinf(_literal_generator_loss(real, fake))  # log(1 − σ(100)) = log(0) in float32
    # Exactly: −log(1 − σ(z)) = softplus(z) ≈ z and −log σ(−z) = softplus(z); here E[C(xr)] − E[C(xf)] = 100.
    expected = (F.softplus(torch.tensor([105.0, 95.0], dtype=torch.float64)).mean() * 2).item()
    assert ragan_generator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    assert ragan_discriminator_loss(real, fake).item() == pytest.approx(0.0, abs=1e-30)


def test_l1_loss():
    sr = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    hr = torch.tensor([[[[1.0, 1.0], [0.0, 0.5]]]])
    assert l1_loss(sr, hr).item() == pytest.approx((1 + 0 + 0.5 + 0.25) / 4)


def test_stage_two_weights():
    assert (PERCEPTUAL_WEIGHT, GAN_WEIGHT, PIXEL_WEIGHT) == (1.0, 5e-3, 1e-2)
    weights = GeneratorLossWeights()
    assert (weights.perceptual_weight, weights.gan_weight, weights.pixel_weight) == (1.0, 5e-3, 1e-2)
    total = weights.total(pixel=torch.tensor(2.0), perceptual=torch.tensor(3.0), adversarial=torch.tensor(4.0))
    assert total.item() == pytest.approx(3.0 + 5e-3 * 4.0 + 1e-2 * 2.0)


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    return VGGFeatureExtractor(weights_path=tmp_path_factory.mktemp("none") / "absent.pth", allow_random=True)


def test_perceptual_loss_is_zero_for_identical_images(extractor):
    x = torch.rand(2, 3, 32, 32)
    assert PerceptualLoss(extractor)(x, x.clone()).item() == 0.0


def test_perceptual_loss_uses_conv5_4_before_the_relu(extractor):
    torch.manual_seed(1)
    sr, hr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    captured = []
    hook = extractor.features[34].register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    try:
        loss = PerceptualLoss(extractor, weight=2.0)(sr, hr)
    finally:
        hook.remove()
    hr_features, sr_features = captured  # HR first (no-grad branch), then SR
    assert (sr_features < 0).any()  # pre-activation features have negative values ...
    before = F.l1_loss(sr_features, hr_features)
    after = F.l1_loss(F.relu(sr_features), F.relu(hr_features))
    assert after.item() < before.item()  # ... which the ReLU would discard
    assert loss.item() == pytest.approx(2.0 * before.item(), rel=1e-6)


def test_perceptual_loss_gradient_reaches_the_generator_output_only(extractor):
    sr = torch.rand(1, 3, 16, 16, requires_grad=True)
    hr = torch.rand(1, 3, 16, 16, requires_grad=True)
    PerceptualLoss(extractor)(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert hr.grad is None
