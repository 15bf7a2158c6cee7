"""A training-only critic for the VQ-SVAE: the adversarial term of VQGAN (Esser et al. 2021), ours.

Not in the paper (SPEC section 4 trains the VQ-SVAE on MSE alone); a named option,
`VQSVAEConfig.adv_weight` (0 = off = the paper). MSE-trained decoders average the plausible
strokes into blur, and Inception-based FID punishes blur hard; a critic that tells real images from
reconstructions pushes the decoder towards sharp ones. The critic only shapes training: it is an
ordinary (non-spiking) conv net that never runs when images are encoded, decoded or generated,
so the generator stays fully spiking and the energy per image does not change.

    critic = PatchCritic(in_channels=1)
    d_loss = hinge_d_loss(critic(x), critic(x_hat.detach()))       # trains the critic
    g_loss = -critic_frozen(critic, x_hat).mean()                  # trains the autoencoder
    lam = adaptive_weight(recon_loss, g_loss, decoder_last_weight) # VQGAN's balance of the two
    loss = recon_loss + ... + adv_weight * lam * g_loss + d_loss

One optimizer updates both networks: the critic's gradient comes only from d_loss (x_hat is
detached there) and the autoencoder's only from g_loss (the critic's weights are detached there).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call


class PatchCritic(nn.Module):
    """Images [B, C, H, W] -> one real/fake logit per patch [B, 1, H/4, W/4] (PatchGAN-style)."""

    def __init__(self, in_channels=1, width=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2),          # [B, w, H/2, W/2]
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),         # [B, 2w, H/4, W/4]
            nn.Conv2d(2 * width, 1, 3, 1, 1))                                # [B, 1, H/4, W/4]

    def forward(self, x):
        return self.net(x)


def hinge_d_loss(real_logits, fake_logits):
    """The critic's hinge loss: push real logits above +1 and fake ones below -1."""
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def critic_frozen(critic, x):
    """critic(x) with its weights detached: gradients reach x (the autoencoder), not the critic."""
    params = {k: v.detach() for k, v in critic.named_parameters()}
    return functional_call(critic, params, (x,))


def adaptive_weight(rec_loss, g_loss, last_weight, max_weight=1e4):
    """VQGAN's lambda = |grad rec| / |grad g| at the decoder's last layer: the adversarial term's
    gradient there is scaled to the reconstruction's, whatever the two losses' units."""
    g_rec, = torch.autograd.grad(rec_loss, last_weight, retain_graph=True)
    g_adv, = torch.autograd.grad(g_loss, last_weight, retain_graph=True)
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0, max_weight).detach()


def adversarial_losses(critic, x, x_hat, rec_loss, last_weight, weight, generator_on=True):
    """(critic loss, weighted adversarial loss of the autoencoder, lambda) for one batch.
    x, x_hat: real and reconstructed images [B, C, H, W]. Before generator_on (a warm-up that lets
    the critic learn first, as VQGAN's disc_start) the autoencoder term is 0."""
    d_loss = hinge_d_loss(critic(x.float()), critic(x_hat.detach().float()))
    if not generator_on:
        return d_loss, torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    g_loss = -critic_frozen(critic, x_hat.float()).mean()
    lam = adaptive_weight(rec_loss, g_loss, last_weight)
    return d_loss, weight * lam * g_loss, lam
