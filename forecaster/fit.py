"""One batched Levenberg-Marquardt program that fits a law to many groups of runs at once.

Each group of sibling runs has one parameter vector: group-level parameters for every law
parameter plus, for each member run, deviations of the non-annealing parameters, held near zero by
a ridge penalty of strength `pool`. So the annealing parameters are shared (a run still at
constant LR borrows its finished siblings' annealing response, docs/laws.md §1.3) while L0, A, alpha
follow each run as far as its data asks. The objective is Huber on log loss (IRLS), summed over
points; every group takes its own damped Gauss-Newton steps, all groups and starts in one tensor
program. The Jacobian is the law's analytic one where it has one, else forward differences (one
batched law evaluation per parameter). Groups that converged leave the working set, so the later
iterations cost only what is still being fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forecaster.batch import Features
from forecaster.laws.base import Law
from forecaster.phases import phase
from forecaster.stats import EPS, TINY, huber

HUBER_DELTA = 1e-3
PRUNE_AT = 2
# the residual a non-positive or NaN prediction costs (NaN fails `pred > 0`); also marks such points
BAD_RESIDUAL = 10.0
# the Levenberg-Marquardt damping stays within these: it shrinks after every accepted step and a
# group whose damping reaches DAMPING_STUCK finds no better point nearby (it has converged)
DAMPING_MIN, DAMPING_MAX, DAMPING_STUCK = 1e-12, 1e12, 1e10
# an accepted step that lowers the cost by less than this share ends a group's fit: the forecasts
# move by under 1e-4 of themselves against 1e-8 (speed benchmark), with a quarter fewer steps
CONVERGED = 1e-6


@dataclass
class GroupFit:
    """A law fitted to groups of runs: the estimate, its Laplace covariance and the fit quality."""

    law: Law
    members: torch.Tensor  # (G, M) run row per group slot, -1 for padding
    x: torch.Tensor  # (G, q) group parameter vectors (unconstrained)
    cov: torch.Tensor  # (G, q, q) covariance of x
    sigma: torch.Tensor  # (G,) robust residual scale in log space
    local: list[int]  # law parameter indices that have per-run deviations
    evidence: torch.Tensor  # (G,) largest LR decay any member showed, relative to its peak
    converged: torch.Tensor  # (G,) bool: the group stopped improving before max_iter
    iterations: torch.Tensor  # (G,) Levenberg-Marquardt steps the group took

    def run_params(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Unconstrained per-run parameters (..., G, M, p) from group vectors (..., G, q)."""
        x = self.x if x is None else x
        return _expand(x, self.law, self.local, self.members.shape[1])

    def theta(self) -> torch.Tensor:
        """Natural per-run parameters (G, M, p)."""
        return self.law.natural(self.run_params())

    def slots(self, positions: list[int]) -> list[tuple[int, int]]:
        """(group, member slot) of each fitted row position (an index into the rows fitted)."""
        members = self.members.cpu().numpy()
        g, m = np.nonzero(members >= 0)
        where = dict(zip(members[g, m].tolist(), zip(g.tolist(), m.tolist())))
        return [where[k] for k in positions]


def _expand(x: torch.Tensor, law: Law, local: list[int], M: int) -> torch.Tensor:
    p = len(law.params)
    ug = x[..., :p]
    u = ug.unsqueeze(-2).expand(*ug.shape[:-1], M, p).clone()
    if local:
        d = x[..., p:].reshape(*x.shape[:-1], M, len(local))
        u[..., local] = u[..., local] + d
    return u


def _jacobian(fn, x: torch.Tensor, h: float, cols: int | None = None, r0=None) -> torch.Tensor:
    """Forward-difference Jacobian of fn (B, q) -> (B, n) in its first `cols` inputs."""
    r0 = fn(x) if r0 is None else r0
    out = []
    for j in range(x.shape[-1] if cols is None else cols):
        xj = x.clone()
        xj[:, j] += h
        out.append((fn(xj) - r0) / h)
    return torch.stack(out, -1)


def _blocks(J: torch.Tensor, local: list[int]):
    """Blocks of J'J for group columns (p) and per-member deviation columns (pl each), from the
    Jacobian J (B, M, p, P) laid out parameter by parameter (each column contiguous over the
    points: the products below stream through memory). J carries the IRLS weights as their square
    roots (J'WJ = (W^1/2 J)'(W^1/2 J): no weighted copy of J)."""
    Hgg = torch.einsum("bmit,bmjt->bij", J, J)
    if not local:
        return Hgg, None, None
    Jl = J[:, :, local]
    Hgd = torch.einsum("bmit,bmjt->bmij", J, Jl)  # (B, M, p, pl)
    Hdd = torch.einsum("bmit,bmjt->bmij", Jl, Jl)  # (B, M, pl, pl)
    return Hgg, Hgd, Hdd


def _lm_step(J, r, x, prior, mu, pen_w, prior_w, local, M, P) -> torch.Tensor:
    """One damped Gauss-Newton step of every group, exploiting the block structure; J (B, M, p, P)
    and r are the Jacobian and residuals times the square roots of the IRLS weights."""
    B, _, p, _ = J.shape
    Hgg, Hgd, Hdd = _blocks(J, local)
    rm = r.reshape(B, M, P)
    grad = pen_w * x + prior_w * (x - prior)
    gg = torch.einsum("bmit,bmt->bi", J, rm) + grad[:, :p]
    Hgg = Hgg + torch.diag_embed(pen_w[:, :p] + prior_w)
    Hgg = Hgg + mu[:, None, None] * torch.diag_embed(torch.diagonal(Hgg, dim1=1, dim2=2) + EPS)
    eye_p = torch.eye(p, dtype=J.dtype, device=J.device)
    if not local:
        return torch.linalg.solve(Hgg + EPS * eye_p, -gg.unsqueeze(-1)).squeeze(-1)
    pl = len(local)
    gd = torch.einsum("bmit,bmt->bmi", J[:, :, local], rm) + grad[:, p:].reshape(B, M, pl)
    Hdd = Hdd + torch.diag_embed(pen_w[:, p:].reshape(B, M, pl) + prior_w)
    Hdd = Hdd + mu[:, None, None, None] * torch.diag_embed(torch.diagonal(Hdd, dim1=2, dim2=3) + EPS)
    Hdd_inv = torch.linalg.inv(Hdd + EPS * torch.eye(pl, dtype=J.dtype, device=J.device))
    K = Hgd @ Hdd_inv  # (B, M, p, pl)
    schur = Hgg - (K @ Hgd.transpose(-1, -2)).sum(1)
    rhs = -gg + (K @ gd.unsqueeze(-1)).squeeze(-1).sum(1)
    dg = torch.linalg.solve(schur + EPS * eye_p, rhs.unsqueeze(-1)).squeeze(-1)
    dd = (Hdd_inv @ (-gd - (Hgd.transpose(-1, -2) @ dg[:, None, :, None]).squeeze(-1)).unsqueeze(-1)).squeeze(-1)
    return torch.cat([dg, dd.reshape(B, M * pl)], -1)


def _dense_info(J: torch.Tensor, local: list[int], M: int, P: int) -> torch.Tensor:
    """The full J'J over group and deviation columns, from its blocks (for the covariance)."""
    B, _, p, _ = J.shape
    Hgg, Hgd, Hdd = _blocks(J, local)
    if not local:
        return Hgg
    pl = len(local)
    q = p + M * pl
    info = torch.zeros(B, q, q, dtype=J.dtype, device=J.device)
    info[:, :p, :p] = Hgg
    info[:, :p, p:] = Hgd.permute(0, 2, 1, 3).reshape(B, p, M * pl)
    info[:, p:, :p] = info[:, :p, p:].transpose(1, 2)
    idx = torch.arange(M, device=J.device)
    blocks = torch.zeros(B, M, pl, M, pl, dtype=J.dtype, device=J.device)
    blocks[:, idx, :, idx, :] = Hdd.permute(1, 0, 2, 3)
    info[:, p:, p:] = blocks.reshape(B, M * pl, M * pl)
    return info


@dataclass
class _Data:
    """What the residuals of a set of groups (rows of M members each) are computed from."""

    f: Features  # (B*M) member rows
    logy: torch.Tensor  # (B*M, P) observed log values
    mask: torch.Tensor  # (B*M, P) bool
    prior: torch.Tensor  # (B, q)
    pen_w: torch.Tensor  # (B, q) ridge weights

    def take(self, groups: torch.Tensor, M: int) -> "_Data":
        """The same data for a subset of groups."""
        sel = (groups[:, None] * M + torch.arange(M, device=groups.device)).reshape(-1)
        return _Data(self.f.rows(sel), self.logy[sel], self.mask[sel], self.prior[groups], self.pen_w[groups])


def fit_groups(
    law: Law,
    feats: Features,
    y: torch.Tensor,
    members: torch.Tensor,
    *,
    pool: float = 1e-2,
    starts: int = 3,
    max_iter: int = 60,
    delta: float = HUBER_DELTA,
    prior_sd: float = 3.0,
    init: torch.Tensor | None = None,
) -> GroupFit:
    """Fit `law` to every group: `y` (R, P) observed values on `feats`, `members` (G, M) rows.

    `pool` is the ridge strength on per-run deviations of the non-annealing parameters (larger:
    siblings share more). `prior_sd` is a weak Gaussian prior on every unconstrained parameter
    around its starting value, so directions the data do not determine keep a finite but wide
    uncertainty instead of a singular covariance. `init` (R, p), natural parameters with NaN
    rows where there are none, is a warm start (a previous fit's): with one for every run it is
    the only start (a few steps from the optimum instead of a dozen), else one more start.
    """
    with phase("starts"):
        if init is not None and bool(torch.isfinite(init).all()):
            s0 = init[:, None, :].to(y)
        else:
            s0 = law.starts(feats, y.clamp_min(EPS), n=starts)  # (R, S, p)
            if init is not None and bool(torch.isfinite(init).any()):
                warm = torch.where(torch.isfinite(init).all(1, keepdim=True), init.to(y), s0[:, 0])
                s0 = torch.cat([warm[:, None], s0], 1)
    with phase("fit iterations"):
        return _fit_groups(law, feats, y, members, s0, pool=pool, max_iter=max_iter, delta=delta,
                           prior_sd=prior_sd)


def _fit_groups(law: Law, feats: Features, y: torch.Tensor, members: torch.Tensor, s0: torch.Tensor, *,
                pool: float, max_iter: int, delta: float, prior_sd: float) -> GroupFit:
    dev, dt = y.device, y.dtype
    G, M = members.shape
    p = len(law.params)
    # with one run per group there is nothing to deviate from: no deviation parameters
    local = [i for i, n in enumerate(law.params) if n not in law.annealing] if members.shape[1] > 1 else []
    q = p + M * len(local)
    valid = members >= 0
    rows = members.clamp_min(0)

    f = feats.rows(rows.reshape(-1))  # (G*M) rows
    yy = y[rows.reshape(-1)]
    mask = f.mask & valid.reshape(-1, 1)
    logy = torch.log(yy.clamp_min(EPS))

    # starts: per-run variable-projection starts, combined per group (median over members)
    S = s0.shape[1]
    u0 = law.unconstrained(s0)[rows]  # (G, M, S, p)
    w = valid.to(dt)[..., None, None]
    informative = valid & (mask.reshape(G, M, -1).sum(-1) >= 3)
    big = torch.where(informative[..., None, None], u0, torch.nan)
    ug0 = torch.nan_to_num(torch.nanmedian(big, dim=1).values)  # (G, S, p)
    # shared (annealing) parameters start from the member that showed the most LR decay: the
    # others' starts for them are arbitrary
    shared = [i for i in range(p) if i not in local]
    if shared:
        ev = torch.where(valid, feats.decayed[rows], -1.0)  # (G, M)
        top = ev.argmax(1)
        ug0[..., shared] = u0[torch.arange(G, device=dev), top][..., shared]
    d0 = ((u0 - ug0.unsqueeze(1)) * w)[..., local]  # (G, M, S, pl)
    x0 = torch.cat([ug0, d0.permute(0, 2, 1, 3).reshape(G, S, -1)], -1)  # (G, S, q)
    prior = x0.clone()

    B = G * S
    x = x0.reshape(B, q)
    prior = prior.reshape(B, q)
    fB = f.rows(torch.arange(G * M, device=dev).reshape(G, 1, M).expand(G, S, M).reshape(-1), only=law.reads)
    logyB = logy.reshape(G, 1, M, -1).expand(G, S, M, -1).reshape(B * M, -1)
    maskB = mask.reshape(G, 1, M, -1).expand(G, S, M, -1).reshape(B * M, -1)
    P = logyB.shape[-1]
    pen_w = torch.zeros(G, q, dtype=dt, device=dev)
    pen_w[:, p:] = pool
    pen_w = pen_w.repeat_interleave(S, 0)
    # a prior's weight in Huber units (L1 regime at a nominal 1% noise) only breaks ties
    prior_w = delta * 1e-2 / prior_sd**2

    def jac(xb: torch.Tensor, r0: torch.Tensor, d: _Data, sw: torch.Tensor | None = None) -> torch.Tensor:
        """d residual / d group parameters (B, M, p, P), times the square-root weights `sw` (B, M*P)
        when given: the law's own derivative when it has one."""
        if not law.has_jacobian:
            J = _jacobian(lambda xx: resid(xx, d), xb, h, cols=p, r0=r0)
            J = J if sw is None else J * sw.unsqueeze(-1)
            return J.reshape(len(xb), M, P, p).transpose(2, 3)
        u = _expand(xb, law, local, M).reshape(-1, p)
        theta = law.natural(u)
        r_flat = r0.reshape(-1, P)
        pred = torch.exp(r_flat + d.logy)  # the prediction behind r0, without evaluating the law again
        dpred = law.jacobian(theta, d.f)  # (B*M, P, p), w.r.t. the unconstrained parameters
        ok = (r_flat != BAD_RESIDUAL) & d.mask
        # one (points) factor, then one pass over the Jacobian, parameter-major (a law that builds
        # it that way, as momentum does, hands over a transposed view: no copy)
        num = 1.0 if sw is None else sw.reshape(-1, P)
        scale = torch.where(ok, num / pred, 0.0)
        return (dpred.transpose(1, 2) * scale.unsqueeze(1)).reshape(len(xb), M, p, P)

    def resid(xb: torch.Tensor, d: _Data) -> torch.Tensor:
        u = _expand(xb, law, local, M).reshape(-1, p)
        pred = law.predict(law.natural(u), d.f)
        r = torch.where(pred > 0, torch.log(pred.clamp(EPS, 1e12)) - d.logy, BAD_RESIDUAL)
        return (r * d.mask).reshape(len(xb), M * P)

    def cost_of(r: torch.Tensor, xb: torch.Tensor, d: _Data) -> torch.Tensor:
        return (huber(r, delta).sum(-1) + 0.5 * (d.pen_w * xb * xb).sum(-1)
                + 0.5 * prior_w * ((xb - d.prior) ** 2).sum(-1))

    data = _Data(fB, logyB, maskB, prior, pen_w)
    eye = torch.eye(q, dtype=dt, device=dev)
    mu = torch.full((B,), 1e-3, dtype=dt, device=dev)
    r = resid(x, data)
    cost = cost_of(r, x, data)
    h = 1e-6
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    steps = torch.zeros(B, dtype=torch.long, device=dev)
    work, wd = torch.arange(B, device=dev), data  # the groups still stepping, and their data
    for it in range(max_iter):
        if it == PRUNE_AT and S > 1:
            # multi-start pays off early: after a few steps only each group's best start goes on
            keep = torch.arange(G, device=dev) * S + cost.reshape(G, S).argmin(1)
            x, r, cost, mu, done, steps = (t[keep] for t in (x, r, cost, mu, done, steps))
            data = data.take(keep, M)
            B, S = G, 1
            work, wd = torch.arange(B, device=dev), data
        active = ~done[work]
        if int(active.sum()) < 0.75 * len(work):
            # converged groups drop out of the working set: later steps cost what is left to fit
            work = work[active]
            wd = data.take(work, M)
        xw, rw, cw, muw = x[work], r[work], cost[work], mu[work]
        steps[work] += (~done[work]).long()
        # Jacobian of the data residuals in the group-level columns; a member's deviation column
        # is the same column restricted to its rows, so the normal equations are assembled block
        # by block and solved through the Schur complement of the block-diagonal deviation part:
        # cost grows linearly with the group size, not cubically
        # IRLS weights of the Huber loss, as square roots carried by J and r
        sw = torch.sqrt(delta / rw.abs().clamp_min(delta))
        Jg = jac(xw, rw, wd, sw)  # (W, M, p, P)
        step = _lm_step(Jg, rw * sw, xw, wd.prior, muw, wd.pen_w, prior_w, local, M, P)
        step = torch.nan_to_num(step).clamp(-5.0, 5.0)
        xn = xw + step
        rn = resid(xn, wd)
        cn = cost_of(rn, xn, wd)
        # a converged group stays put: its result must not depend on its batch
        better = (cn < cw) & ~done[work]
        rel = (cw - cn).clamp_min(0) / cw.clamp_min(TINY)
        x[work] = torch.where(better[:, None], xn, xw)
        r[work] = torch.where(better[:, None], rn, rw)
        cost[work] = torch.where(better, cn, cw)
        mu[work] = torch.where(better, muw / 3.0, torch.where(done[work], muw, muw * 4.0)).clamp(
            DAMPING_MIN, DAMPING_MAX)
        done[work] |= (better & (rel < CONVERGED)) | (mu[work] >= DAMPING_STUCK)
        if bool(done.all()):
            break

    # best start per group
    cost = cost.reshape(G, S)
    best = cost.argmin(1)
    G_idx = torch.arange(G, device=dev)
    pick = G_idx * S + best
    x, r, pen_w = x[pick], r[pick], data.pen_w[pick]
    maskG = data.mask.reshape(B, M * P)[pick]
    # Laplace covariance at the chosen optimum, with a robust (MAD) residual scale; data precision
    # J'J/sigma^2, the objective's penalty converted from Huber units (L1 regime: delta*|r|)
    absr = torch.where(maskG, r.abs(), torch.nan)
    sigma = (1.4826 * torch.nanmedian(absr, dim=1).values).nan_to_num(1e-3).clamp_min(1e-5)
    xs = x.repeat_interleave(S, 0)  # resid is laid out per start
    Jg = jac(xs, resid(xs, data), data)[G_idx * S]
    info = _dense_info(Jg, local, M, P) / sigma[:, None, None] ** 2
    b = sigma / 2**0.5
    info = info + torch.diag_embed(pen_w / (delta * b[:, None]) + 1.0 / prior_sd**2)
    cov = torch.linalg.inv(info + EPS * eye)
    cov = 0.5 * (cov + cov.transpose(1, 2))
    return GroupFit(law=law, members=members, x=x, cov=cov, sigma=sigma, local=local,
                    evidence=torch.where(valid, feats.decayed[rows], 0.0).amax(1), converged=done[pick],
                    iterations=steps[pick])
