"""A big input fitted in bounded memory: whole groups per chunk, sized to a memory budget."""

from __future__ import annotations

from forecaster.histories import RunHistory

# working memory of a fit and its bands per fitted or forecast point of a run (measured on the
# speed benchmark: peak RSS over the data, 1,000 runs x 800 points; the Jacobian of every start,
# the band draws at knots and the features dominate)
BYTES_PER_POINT = 1200


def group_chunks(histories: list[RunHistory], budget: int, max_points: int = 512) -> list[list[int]]:
    """Indices of `histories` in chunks of whole groups, in order of first appearance, each
    expected to need at most `budget` bytes of working memory (a group bigger than that is a
    chunk of its own): a big input is fitted chunk by chunk in bounded memory."""
    order: dict[str, list[int]] = {}
    cost: dict[str, int] = {}
    for i, h in enumerate(histories):
        order.setdefault(h.group, []).append(i)
        points = min(len(h.steps), max_points) + (len(h.horizon) if h.horizon is not None else 0)
        cost[h.group] = cost.get(h.group, 0) + BYTES_PER_POINT * max(points, 1)
    chunks: list[list[int]] = [[]]
    used = 0
    for g, members in order.items():
        if chunks[-1] and used + cost[g] > budget:
            chunks.append([])
            used = 0
        chunks[-1].extend(members)
        used += cost[g]
    return [c for c in chunks if c]
