"""The training-only critic (critic.py, ours): hand-checked losses, where gradients go, warm-up,
and that generation never runs it."""
from dataclasses import asdict

import torch

from spikediff_min.critic import PatchCritic, adaptive_weight, adversarial_losses, critic_frozen, hinge_d_loss
from spikediff_min.data import load_arrays
from spikediff_min.train import atomic_save, load_checkpoint
from spikediff_min.vqsvae import VQ_PRESETS, VQSVAE, VQSVAEConfig, train_vqsvae

TINY = VQSVAEConfig(T=2, width=8, num_codes=16, code_dim=4, batch_size=32, epochs=1, lr=2e-3)


def test_hinge_loss_by_hand():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.0])
    # real: relu(1-2)=0, relu(1-0)=1 -> 0.5; fake: relu(1-2)=0, relu(1+0)=1 -> 0.5; half their sum
    assert torch.isclose(hinge_d_loss(real, fake), torch.tensor(0.5))
    assert hinge_d_loss(torch.tensor([5.0]), torch.tensor([-5.0])) == 0     # confident and right: no loss


def test_patch_critic_shape():
    assert PatchCritic(1)(torch.zeros(3, 1, 28, 28)).shape == (3, 1, 7, 7)
    assert PatchCritic(3)(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 8, 8)


def test_frozen_critic_passes_gradient_to_the_input_only():
    critic = PatchCritic(1)
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    critic_frozen(critic, x).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_adaptive_weight_is_the_ratio_of_gradient_norms():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    rec = (w * torch.tensor([3.0, 4.0])).sum()          # grad (3, 4): norm 5
    g = (w * torch.tensor([0.0, 10.0])).sum()           # grad (0, 10): norm 10
    assert torch.isclose(adaptive_weight(rec, g, w), torch.tensor(5.0 / (10.0 + 1e-4)))


def test_critic_loss_does_not_reach_the_autoencoder_and_warm_up_silences_it():
    torch.manual_seed(0)
    critic, w = PatchCritic(1), torch.ones(1, requires_grad=True)
    x = torch.rand(4, 1, 28, 28) - 0.5
    x_hat = (torch.rand(4, 1, 28, 28) - 0.5) * w                  # "the autoencoder": one weight
    rec = ((x_hat - x) ** 2).mean()
    d, adv, lam = adversarial_losses(critic, x, x_hat, rec, w, weight=0.5, generator_on=False)
    assert adv == 0 and lam == 0
    d.backward()
    assert w.grad is None                                          # x_hat was detached for the critic
    assert all(p.grad is not None for p in critic.parameters())
    critic.zero_grad()
    d, adv, lam = adversarial_losses(critic, x, x_hat, rec, w, weight=0.5, generator_on=True)
    assert lam > 0
    adv.backward()
    assert w.grad is not None and all(p.grad is None or p.grad.abs().sum() == 0 for p in critic.parameters())


def test_paper_preset_has_no_critic():
    assert VQ_PRESETS["paper"].adv_weight == 0 and VQSVAE(VQ_PRESETS["paper"]).critic is None


def test_training_moves_the_critic_and_generation_never_runs_it(tmp_path):
    x, _ = load_arrays("mnist", "train")
    cfg = VQSVAEConfig(**{**asdict(TINY), "adv_weight": 0.5, "adv_start": 0.5})
    torch.manual_seed(0)
    before = [p.detach().clone() for p in VQSVAE(cfg).critic.parameters()]
    model, hist = train_vqsvae(cfg, x[:640], progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.critic.parameters()))
    # logged every 10 of the 20 steps: the term is off at step 10 (warm-up, half the steps), on at step 20
    assert hist["adv"][0] == 0 and hist["adv"][-1] != 0 and hist["critic"][-1] > 0
    calls = []
    model.critic.register_forward_hook(lambda *a: calls.append(1))
    idx = model.encode(torch.rand(2, 1, 28, 28) - 0.5)
    model.decode(idx)
    assert not calls


def test_a_checkpoint_from_before_the_option_still_loads(tmp_path):
    """Checkpoints saved before adv_weight existed read it as its default (0, no critic)."""
    old = {k: v for k, v in asdict(TINY).items() if k not in ("adv_weight", "adv_start")}
    path = str(tmp_path / "vq.pt")
    atomic_save({"model": VQSVAE(TINY).state_dict(), "config": old, "meta": {}}, path)
    ck = load_checkpoint(path, TINY)
    VQSVAE(VQSVAEConfig(**ck["config"])).load_state_dict(ck["model"])
