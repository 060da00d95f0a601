"""The TopK SAE's loss, AuxK and update against a float64 transcription of the authors' released code.

Reference: openai/sparse_autoencoder @ 4965b941e9eb590b00b253a2c406db1e1b193942,
``sparse_autoencoder/train.py`` (``FastAutoencoder.forward`` with its dead-latent stats and AuxK masking,
``training_loop_``, ``unit_norm_decoder_``, ``unit_norm_decoder_grad_adjustment_``, the loss lambda of
``main``) and ``sparse_autoencoder/kernels.py`` (``mse``: the mean over all entries; ``normalized_mse``).
Their custom encoder backward is the ordinary gradient of ``relu(topk(...))`` written as sparse kernels, so
the transcription uses autograd on plain float64 tensors. Adam is written out (bias-corrected moments).
One deliberate difference, applied to the transcription too: cliplens rescales decoder rows to unit norm
*after* each step (the reference does it after the next backward), so every forward sees unit rows; with
unit rows before a step both orders give the same step.
"""

from __future__ import annotations

import torch

from cliplens.sae.activations import TensorStream
from cliplens.sae.model import SAEConfig, SparseAutoencoder
from cliplens.sae.training import SAETrainer, TrainConfig

D, F, K, AUXK, N = 12, 48, 3, 6, 40
LR, AUXK_COEF = 3e-2, 1 / 32


def _reference_steps(enc, dec, pre_bias, latent_bias, batches, mse_scale, dead_threshold, eps):
    """Two steps of training_loop_ in float64. enc: (F, D) encoder.weight; dec: (D, F) decoder.weight."""
    params = [t.clone().requires_grad_(True) for t in (enc, dec, pre_bias, latent_bias)]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    stats_last_nonzero = torch.zeros(F, dtype=torch.long)
    losses = []
    for step, x in enumerate(batches, start=1):
        enc_w, dec_w, b_pre, b_lat = params
        # FastAutoencoder.forward / EncWrapper.forward
        latents_pre_act = (x - b_pre) @ enc_w.T + b_lat
        topk = torch.topk(latents_pre_act, k=K, dim=-1)
        inds, vals = topk.indices, topk.values
        tmp = torch.zeros_like(stats_last_nonzero)
        tmp.scatter_add_(0, inds.reshape(-1), (vals > 1e-3).to(tmp.dtype).reshape(-1))
        stats_last_nonzero *= 1 - tmp.clamp(max=1)
        stats_last_nonzero += 1
        dead_mask = stats_last_nonzero > dead_threshold
        auxk = torch.topk(latents_pre_act * dead_mask, k=AUXK, dim=-1)
        vals, auxk_vals = torch.relu(vals), torch.relu(auxk.values)

        def decode_sparse(i, v, dec_w=dec_w, b_pre=b_pre, rows=x.shape[0]):
            dense = torch.zeros(rows, F, dtype=torch.float64).scatter(-1, i, v)
            return dense @ dec_w.T + b_pre

        recons = decode_sparse(inds, vals)
        main = mse_scale * ((recons - x) ** 2).mean()
        xs = x - recons.detach() + b_pre.detach()
        aux_recon = decode_sparse(auxk.indices, auxk_vals)
        nmse = ((aux_recon - xs) ** 2).mean() / ((xs.mean(dim=0)[None, :] - xs) ** 2).mean()
        loss = main + AUXK_COEF * nmse.nan_to_num(0)
        losses.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, params)
        grads = [g.clone() for g in grads]
        with torch.no_grad():
            # unit_norm_decoder_ (a no-op here: rows are unit before the step) and the grad adjustment
            dec_w /= dec_w.norm(dim=0)
            grads[1] -= torch.einsum("bn,bn->n", dec_w, grads[1]) * dec_w
            for p, g, (m, v) in zip(params, grads, moments, strict=True):
                m.mul_(0.9).add_(0.1 * g)
                v.mul_(0.999).add_(0.001 * g * g)
                m_hat, v_hat = m / (1 - 0.9**step), v / (1 - 0.999**step)
                p -= LR * m_hat / (v_hat.sqrt() + eps)
            dec_w /= dec_w.norm(dim=0)  # cliplens' renormalisation after the step (module docstring)
    return [p.detach() for p in params], losses, stats_last_nonzero


def test_two_topk_steps_with_auxk_equal_the_reference_transcription():
    """Loss values, dead-latent counters and all four weights after two steps (measured: equal to 2.2e-16)."""
    eps = 6.25e-10  # the reference Config's Adam eps
    gen = torch.Generator().manual_seed(3)
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=F, kind="topk", k=K), generator=gen).double()
    with torch.no_grad():  # random biases and a non-tied encoder
        sae.b_enc.copy_(0.3 * torch.randn(F, generator=gen, dtype=torch.float64))
        sae.b_dec.copy_(torch.randn(D, generator=gen, dtype=torch.float64))
        sae.W_enc.add_(0.2 * torch.randn(D, F, generator=gen, dtype=torch.float64))
    sae.normalize_decoder()  # unit rows in float64 (the float32 init is unit to ~1e-8 only)
    start = {name: t.clone() for name, t in sae.weights().items()}
    batches = [torch.randn(N, D, generator=gen, dtype=torch.float64) * 2 + 0.5 for _ in range(2)]
    config = TrainConfig(steps=2, batch_size=N, lr=LR, adam_eps=eps, auxk=AUXK, auxk_coef=AUXK_COEF, dead_tokens=N)
    trainer = SAETrainer(sae, TensorStream(batches[0], batch_size=N), config, torch.device("cpu"))
    trainer.mse_scale = 0.7
    losses = [trainer.train_step(x).loss for x in batches]

    params, ref_losses, ref_stats = _reference_steps(
        start["W_enc"].T, start["W_dec"].T, start["b_dec"], start["b_enc"], batches, 0.7, trainer.dead_steps, eps
    )
    assert trainer.dead_steps == 1 and int((ref_stats > 1).sum()) > AUXK  # AuxK had dead latents to use
    assert torch.allclose(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-12, atol=0)
    for ours, theirs in zip(
        ("W_enc", "W_dec", "b_dec", "b_enc"), (params[0].T, params[1].T, params[2], params[3]), strict=True
    ):
        assert torch.allclose(getattr(sae, ours).detach(), theirs, rtol=0, atol=1e-14), ours
    assert torch.equal(trainer.steps_since_fired, ref_stats)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(F, dtype=torch.float64))
