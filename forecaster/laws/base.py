"""The law interface: named parameters, their constraints, a vectorised prediction and starts."""

from __future__ import annotations

import abc
from typing import ClassVar

import torch

from forecaster.batch import Features
from forecaster.registry import Registry
from forecaster.stats import EPS


class Law(abc.ABC):
    """A loss-curve law L(theta; features), batched over runs (rows).

    Parameters live unconstrained during fitting: ``natural(u)`` maps them to the law's domain
    (positivity, bounds) so optimisers need no constraints. ``annealing`` names the parameters a
    group of sibling runs shares by default: they describe the response to LR decay, which a run
    still at constant LR cannot show by itself (docs/laws.md §1.3, borrowing the annealing response).
    """

    name: ClassVar[str]
    params: ClassVar[tuple[str, ...]]
    annealing: ClassVar[tuple[str, ...]] = ()
    needs_lr: ClassVar[bool] = True
    needs_size: ClassVar[bool] = False  # reads RunHistory.size; never an automatic candidate
    # the annealing parameter that scales the whole annealing gain, and typical values of the
    # others: used to draw the gain when no run of a group has decayed its LR (docs/laws.md §1.3)
    amplitude: ClassVar[str | None] = None
    uses_blocks: ClassVar[bool] = False  # reads the LR-change blocks (Features.drop, eta_k, s1_k)
    shape_prior: ClassVar[dict[str, float]] = {}
    # most observed points per run to fit on (equal-count bin means beyond): None for no cap
    max_points: ClassVar[int | None] = None
    # the per-point and per-block Features fields `predict` and `jacobian` read (None: any)
    reads: ClassVar[tuple[str, ...] | None] = None

    @abc.abstractmethod
    def natural(self, u: torch.Tensor) -> torch.Tensor:
        """Unconstrained (..., p) -> natural parameters (..., p)."""

    @abc.abstractmethod
    def unconstrained(self, theta: torch.Tensor) -> torch.Tensor:
        """Inverse of `natural`."""

    @abc.abstractmethod
    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        """Metric at every point of every run: theta (R, p) -> (R, P), linear scale, positive."""

    @property
    def has_jacobian(self) -> bool:
        return type(self).jacobian is not Law.jacobian

    def jacobian(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        """d predict / d unconstrained parameters (R, P, p); laws without one get forward differences."""
        raise NotImplementedError

    @abc.abstractmethod
    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        """`n` starting points per run (R, n, p) in natural parameters from observed values y (R, P)."""


REGISTRY: Registry[Law] = Registry("law", Law, "forecaster.laws", "forecaster.laws")
register = REGISTRY.register
get = REGISTRY.get


def available(needs_lr: bool | None = None) -> list[str]:
    """Names of the registered laws, optionally only those that do (not) need an LR schedule."""
    return REGISTRY.names(lambda law: needs_lr is None or law.needs_lr == needs_lr)


def automatic(needs_lr: bool) -> list[str]:
    """The candidates of law="auto": laws that need nothing beyond the histories themselves."""
    return [n for n in available(needs_lr) if not get(n).needs_size]


class PositiveLaw(Law):
    """A law whose parameters are all positive: exp/log reparametrisation."""

    def natural(self, u: torch.Tensor) -> torch.Tensor:
        return torch.exp(u)

    def unconstrained(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.log(theta.clamp_min(EPS))


# a run whose LR fell by at least this share of its peak has an annealing response to start from
DECAYED = 0.05


def linear_fit(design: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched least squares y ~ design @ c over masked points: design (B, P, k), y (B, P) ->
    coefficients (B, k) and the residual sum of squares (B,)."""
    # basis by basis (B, k, P): each product below streams through memory; a design built that
    # way and handed over as a transposed view (momentum's) costs no copy
    Xt = design.transpose(1, 2) * mask.to(design.dtype).unsqueeze(1)
    ym = (y * mask).unsqueeze(-1)
    XtX = torch.bmm(Xt, Xt.transpose(1, 2))
    Xty = torch.bmm(Xt, ym)
    ridge = 1e-10 * torch.diagonal(XtX, dim1=1, dim2=2).mean(-1).clamp_min(1e-30)
    c = torch.linalg.solve(XtX + ridge[:, None, None] * torch.eye(design.shape[-1], dtype=design.dtype,
                                                                  device=design.device), Xty)
    # the residual sum of squares from the normal equations' terms, not from a residual pass:
    # |Xc - y|^2 = y'y - 2 c'X'y + c'X'X c (the starts only rank grid values by it)
    sse = (ym * ym).sum((1, 2)) - 2.0 * (c * Xty).sum((1, 2)) + (c * torch.bmm(XtX, c)).sum((1, 2))
    return c.squeeze(-1), sse.clamp_min(0.0)


def grid_starts(
    basis, grid: torch.Tensor, f: Features, y: torch.Tensor, n_best: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable projection over a 1-D grid of a nonlinear parameter.

    ``basis(g) -> (R, P, k)`` is the design matrix with the nonlinear parameter at value g; the
    linear coefficients are solved for every grid value and the `n_best` grid values with the
    smallest residual are returned with their coefficients: (R, n_best) and (R, n_best, k).
    """
    # one grid value at a time: a (R * grid, P, k) design would not fit in cache for big batches
    fits = [linear_fit(basis(g), y, f.mask) for g in grid]
    c = torch.stack([cf for cf, _ in fits], 1)  # (R, G, k)
    sse = torch.stack([e for _, e in fits], 1)  # (R, G)
    order = torch.argsort(sse, dim=1)[:, :n_best]
    return grid[order], torch.gather(c, 1, order.unsqueeze(-1).expand(-1, -1, c.shape[-1]))


def grid_starts_one(fixed: torch.Tensor, column, grid: torch.Tensor, f: Features, y: torch.Tensor, n_best: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """`grid_starts` for a design whose one last column alone depends on the grid value: ``fixed``
    (R, P, k-1) and ``column(g) -> (R, P)``. The fixed columns' products are formed once and each
    grid value costs one pass for its column: the starts were a tenth of a big fit's time."""
    m = f.mask.to(y.dtype)
    Fy = torch.cat([fixed, y.unsqueeze(-1)], -1) * m.unsqueeze(-1)  # (R, P, k): fixed columns and y, masked
    G0 = torch.bmm(Fy.transpose(1, 2), Fy)  # (R, k, k): their products, y's last
    k = fixed.shape[-1] + 1
    R = y.shape[0]
    XtX = torch.empty(R, len(grid), k, k, dtype=y.dtype, device=y.device)
    Xty = torch.empty(R, len(grid), k, dtype=y.dtype, device=y.device)
    XtX[:, :, : k - 1, : k - 1] = G0[:, None, : k - 1, : k - 1]
    Xty[:, :, : k - 1] = G0[:, None, : k - 1, k - 1]
    for i, g in enumerate(grid):
        vm = column(g) * m  # (R, P)
        cross = torch.bmm(vm.unsqueeze(1), Fy).squeeze(1)  # (R, k): with the fixed columns and y
        XtX[:, i, k - 1, : k - 1] = XtX[:, i, : k - 1, k - 1] = cross[:, : k - 1]
        XtX[:, i, k - 1, k - 1] = (vm * vm).sum(-1)
        Xty[:, i, k - 1] = cross[:, k - 1]
    ridge = 1e-10 * torch.diagonal(XtX, dim1=2, dim2=3).mean(-1).clamp_min(1e-30)
    eye = torch.eye(k, dtype=y.dtype, device=y.device)
    c = torch.linalg.solve(XtX + ridge[..., None, None] * eye, Xty.unsqueeze(-1))  # (R, G, k, 1)
    yy = G0[:, k - 1, k - 1][:, None]
    sse = (yy - 2.0 * (c.squeeze(-1) * Xty).sum(-1) + (c * (XtX @ c)).sum((-2, -1))).clamp_min(0.0)
    order = torch.argsort(sse, dim=1)[:, :n_best]
    c = c.squeeze(-1)
    return grid[order], torch.gather(c, 1, order.unsqueeze(-1).expand(-1, -1, k))
