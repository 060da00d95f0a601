"""Step-by-step float64 transcriptions of SpLiCE as released, the references of the concept tests.

Source: github.com/AI4LIFE-GROUP/SpLiCE at commit 9a498102ce7c6701f4afe361ffaa86c39b47fa5f:

* ``splice/admm.py`` ``ADMM.fit`` / ``ADMM.step`` — :func:`released_admm` (the random initial iterates
  are an argument here, so both sides can start from the same ones);
* ``splice/model.py`` ``SPLICE.__init__`` / ``decompose`` (``solver='skl'``: scikit-learn's
  ``Lasso(alpha=l1_penalty / (2 * d), fit_intercept=False, positive=True, max_iter=10000, tol=1e-6)``, one
  fit per embedding), ``encode_image`` (centring) and ``recompose_image`` — :func:`released_lasso`,
  :func:`released_encode`;
* ``splice/splice.py`` ``load`` (the concept dictionary: normalise, subtract the mean, normalise) —
  :func:`released_dictionary`.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import Lasso


def released_admm(C, v, l1_penalty, *, x0, z0, u0, rho=5.0, tol=1e-6, max_iter=2000):
    """``ADMM(rho, l1_penalty, tol, max_iter).fit(C, v)`` with given initial iterates (c x batch each).

    Returns ``(z.T, iterations run)``.
    """
    c = C.shape[0]
    Q = 2 * C @ C.T + torch.eye(c, dtype=C.dtype) * rho
    Q_cho = torch.linalg.cholesky(Q)
    x, z, u = x0.clone(), z0.clone(), u0.clone()
    for ix in range(max_iter):  # noqa: B007  (the count after the loop, as released)
        z_old = z
        Cb = C @ v.T
        xn = torch.cholesky_solve(2 * Cb + rho * (z - u), Q_cho)
        zn = torch.where((xn + u - l1_penalty / rho) > 0, xn + u - l1_penalty / rho, 0)
        un = u + xn - zn
        x, z, u = xn, zn, un
        res_prim = torch.linalg.norm(x - z, dim=0)
        res_dual = torch.linalg.norm(rho * (z - z_old), dim=0)
        if (res_prim.max() < tol) and (res_dual.max() < tol):
            break
    return z.T, ix + 1


def released_lasso(dictionary, embeddings, l1_penalty):
    """``SPLICE(..., solver='skl', l1_penalty).decompose(embeddings)``: (M, K) float64 weights."""
    alpha = l1_penalty / (2 * dictionary.shape[1])
    clf = Lasso(alpha=alpha, fit_intercept=False, positive=True, max_iter=10000, tol=1e-6)
    rows = []
    for i in range(embeddings.shape[0]):
        clf.fit(dictionary.T.double().numpy(), embeddings[i, :].double().numpy())
        rows.append(torch.tensor(np.asarray(clf.coef_)))
    return torch.stack(rows, dim=0)


def released_dictionary(concept_embeddings):
    """``load``'s dictionary from (K, D) raw concept text embeddings."""
    concepts = torch.nn.functional.normalize(concept_embeddings.double(), dim=1)
    return torch.nn.functional.normalize(concepts - torch.mean(concepts, dim=0), dim=1)


def released_encode(embeddings, mean, dictionary, l1_penalty):
    """``encode_image`` with ``return_weights=True, return_cosine=True`` per row: (weights (M, K), cosines (M,))."""
    image = torch.nn.functional.normalize(embeddings.double(), dim=1)
    centered = torch.nn.functional.normalize(image - mean.double(), dim=1)
    weights = released_lasso(dictionary, centered, l1_penalty)
    recon = torch.nn.functional.normalize(weights @ dictionary, dim=1)
    recon = torch.nn.functional.normalize(recon + mean.double(), dim=1)
    return weights, (recon * image).sum(dim=1)
