"""Random draws keyed by what they belong to, so a run's band never depends on its batch.

A shared generator hands each group the numbers that come after the previous groups' draws: add
or drop one unrelated run and every later group's band (and, where the median comes from draws,
its forecast) moves by Monte Carlo noise. Here each draw is a hash of (key, counter) instead
(splitmix64 on int64 tensors, vectorised): the same key, seed and counter give the same number in
any batch, on any device.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import torch

_GOLDEN = -0x61C8864680B583EB  # 0x9E3779B97F4A7C15 as a signed int64
_M1 = -0x40A7B892E31B1A47  # 0xBF58476D1CE4E5B9
_M2 = -0x6B2FB644ECCEEE15  # 0x94D049BB133111EB


def keys(names: Iterable[str], seed: int, salt: str = "") -> torch.Tensor:
    """One int64 key per name (a run id, a group name), fixed by the seed and a salt per use."""
    out = [int.from_bytes(hashlib.blake2b(f"{seed}|{salt}|{n}".encode(), digest_size=8).digest(), "little",
                          signed=True) for n in names]
    return torch.tensor(out, dtype=torch.int64)


def derive(key: torch.Tensor, use: int) -> torch.Tensor:
    """Independent keys for another use of the same things (`use` >= 1)."""
    return _mix(key ^ _mix(torch.full_like(key, use)))


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic on signed integers)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    return _mix_(x.clone())


def _mix_(x: torch.Tensor) -> torch.Tensor:
    """`_mix` in place, with one scratch tensor: on the bands' (draws x steps x runs) counters a
    fresh tensor per operation made allocation the larger part of the cost."""
    x.add_(_GOLDEN)
    t = torch.empty_like(x)
    for s, m in ((30, _M1), (27, _M2)):
        x.bitwise_xor_(_shr_into(x, s, t)).mul_(m)
    return x.bitwise_xor_(_shr_into(x, 31, t))


def _shr_into(x: torch.Tensor, s: int, out: torch.Tensor) -> torch.Tensor:
    """`_shr(x, s)` written into `out`."""
    torch.bitwise_right_shift(x, s, out=out)
    return out.bitwise_and_((1 << (64 - s)) - 1)


_COLS = 1 << 24  # counters are row * _COLS + column: a row's numbers do not depend on the row width


def uniform(key: torch.Tensor, rows: int, cols: int = 1, start: int = 0, stream: int = 0,
            dtype=torch.float64) -> torch.Tensor:
    """Uniforms in (0, 1), shape (rows, cols, len(key)): entry [i, j, k] depends on key[k], the row
    start + i, the column j and the stream only, never on the shape asked for."""
    i = torch.arange(start, start + rows, dtype=torch.int64, device=key.device)[:, None, None]
    j = torch.arange(cols, dtype=torch.int64, device=key.device)[None, :, None]
    counter = (i * _COLS + j) * 2 + stream
    bits = _mix_(_mix(key.to(counter.device)[None, None, :]) ^ (counter * _GOLDEN))
    out = _shr_into(bits, 11, bits).to(dtype)
    return out.add_(0.5).div_(float(1 << 53))


def normal(key: torch.Tensor, rows: int, cols: int = 1, start: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Standard normals, shape (rows, cols, len(key)), laid out as `uniform` (Box-Muller)."""
    u1 = uniform(key, rows, cols, start, 0, dtype)
    u2 = uniform(key, rows, cols, start, 1, dtype)
    return u1.log_().mul_(-2.0).sqrt_().mul_(u2.mul_(2.0 * math.pi).cos_())


def permutation(key: torch.Tensor, n: int) -> torch.Tensor:
    """(n, len(key)): a random permutation of 0..n-1 per key (column)."""
    return torch.argsort(uniform(key, n)[:, 0, :], dim=0)
