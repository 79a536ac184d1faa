"""Where each stage of a run goes when its graph is drawn: a small, pure layered layout.

The run page draws the stage DAG as inline SVG, so the server decides every box and curve and
the page only paints them. A stage's column is its longest path from a root, so every edge
points right; the rows of a column are ordered by barycenters to reduce crossings. There are
no dummy nodes: pipelines are small (about 60 stages), and an edge that skips columns is drawn
as one curve, which keeps the picture as plain as the pipeline file that declared it.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass
from math import lcm
from typing import Protocol

__all__ = ["DagLayout", "DagNode", "DagNodeLike", "PlacedEdge", "PlacedNode", "layout_dag"]

# Sweeps in each direction. Orderings of pipeline-sized graphs settle in one or two; the rest
# are cheap insurance, and the best ordering seen is kept, so more sweeps never hurt.
_SWEEPS = 4


class DagNodeLike(Protocol):
    """Anything with a ``ref`` and the refs it ``requires``, such as a pipeline's ``StageSpec``."""

    @property
    def ref(self) -> str: ...

    @property
    def requires(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class DagNode:
    """A node to lay out: ``ref`` depends on the nodes named in ``requires``."""

    ref: str
    requires: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlacedNode:
    """A node's box: its cell in the grid and its rectangle in pixels, from the top left."""

    ref: str
    column: int
    row: int
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class PlacedEdge:
    """One declared requirement, drawn from ``source`` (required) to ``target`` (requiring).

    ``d`` is an SVG path: a cubic Bezier from the right middle of the source box to the left
    middle of the target box, its numbers integers or with one decimal.
    """

    source: str
    target: str
    d: str


@dataclass(frozen=True, slots=True)
class DagLayout:
    """A laid-out graph: a ``width`` by ``height`` canvas holding every box and edge."""

    width: int
    height: int
    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]


def layout_dag(
    nodes: Iterable[DagNodeLike],
    *,
    box_width: int = 180,
    box_height: int = 44,
    column_gap: int = 56,
    row_gap: int = 16,
    margin: int = 8,
) -> DagLayout:
    """Lay out a DAG in columns, left to right, for drawing.

    A node without requirements goes in column 0, any other one column after its deepest
    requirement. Within a column rows start in the declared order and are reordered by
    barycenter sweeps only when that means fewer crossings, ties going to the declared order.
    Every declared requirement is an edge, transitive ones included (a repeated one, once).
    Nodes and edges come back in the declared order; the same input gives the same layout.
    An empty graph is a canvas of just the margins.

    Raises ``ValueError`` naming the refs when a ref is listed twice, a requirement names an
    unknown ref, or the requirements form a cycle, and naming the parameter when a size is
    out of range (boxes must be at least one pixel; gaps and margin not negative).
    """
    _check_sizes(box_width=box_width, box_height=box_height, column_gap=column_gap,
                 row_gap=row_gap, margin=margin)
    listed = list(nodes)
    refs = [node.ref for node in listed]
    requires = _resolve(listed)
    column = _columns(refs, requires)
    layers: list[list[int]] = [[] for _ in range(max(column, default=-1) + 1)]
    for index, col in enumerate(column):
        layers[col].append(index)
    layers = _order_rows(layers, requires, column)

    row = [0] * len(refs)
    for layer in layers:
        for position, index in enumerate(layer):
            row[index] = position
    placed = tuple(
        PlacedNode(ref, column[i], row[i], margin + column[i] * (box_width + column_gap),
                   margin + row[i] * (box_height + row_gap), box_width, box_height)
        for i, ref in enumerate(refs)
    )
    edges = tuple(
        PlacedEdge(refs[source], refs[target], _curve(placed[source], placed[target]))
        for target in range(len(refs))
        for source in requires[target]
    )
    columns = len(layers)
    rows = max((len(layer) for layer in layers), default=0)
    return DagLayout(
        width=2 * margin + columns * box_width + max(columns - 1, 0) * column_gap,
        height=2 * margin + rows * box_height + max(rows - 1, 0) * row_gap,
        nodes=placed,
        edges=edges,
    )


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        least = 1 if name.startswith("box_") else 0
        if value < least:
            raise ValueError(f"{name} must be at least {least}, not {value!r}")


def _resolve(listed: list[DagNodeLike]) -> list[tuple[int, ...]]:
    """Each node's requirements as indices, in declared order, each once."""
    index: dict[str, int] = {}
    for position, node in enumerate(listed):
        if node.ref in index:
            raise ValueError(f"stage {node.ref!r} is listed twice")
        index[node.ref] = position
    requires: list[tuple[int, ...]] = []
    for node in listed:
        for ref in node.requires:
            if ref not in index:
                raise ValueError(f"stage {node.ref!r} requires {ref!r}, which is no stage")
        requires.append(tuple(dict.fromkeys(index[ref] for ref in node.requires)))
    return requires


def _columns(refs: list[str], requires: list[tuple[int, ...]]) -> list[int]:
    """Each node's longest path from a root (Kahn's order), or ValueError naming a cycle."""
    waiting = [len(required) for required in requires]
    dependents: list[list[int]] = [[] for _ in refs]
    for target, required in enumerate(requires):
        for source in required:
            dependents[source].append(target)
    column = [0] * len(refs)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    for index in ready:  # grows while it is walked: each node joins once it is ready
        for dependent in dependents[index]:
            column[dependent] = max(column[dependent], column[index] + 1)
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    if len(ready) < len(refs):
        cycle = " -> ".join(refs[index] for index in _cycle(requires, waiting))
        raise ValueError(f"requirements form a cycle: {cycle} (each requires the next)")
    return column


def _cycle(requires: list[tuple[int, ...]], waiting: list[int]) -> list[int]:
    """A cycle among the nodes Kahn's walk never reached, its first node repeated at the end.

    Every such node still waits on a requirement that was never reached either, so following
    those requirements from the first one declared must come back round.
    """
    index = next(i for i, count in enumerate(waiting) if count)
    path: list[int] = []
    seen: dict[int, int] = {}
    while index not in seen:
        seen[index] = len(path)
        path.append(index)
        index = next(source for source in requires[index] if waiting[source])
    return [*path[seen[index]:], index]


def _order_rows(
    layers: list[list[int]], requires: list[tuple[int, ...]], column: list[int]
) -> list[list[int]]:
    """The layers reordered to reduce crossings: alternate barycenter sweeps, down by the
    mean row of each node's requirements and up by that of its dependents, keeping the
    ordering with the fewest crossings seen, the declared one winning ties."""
    dependents: list[list[int]] = [[] for _ in column]
    edges = [(source, target) for target, required in enumerate(requires)
             for source in required]
    for source, target in edges:
        dependents[source].append(target)
    # The edges that pass each gap between columns, with how far along they are at either
    # side of it, in whole multiples of 1/scale so that positions compare exactly.
    scale = lcm(*(column[target] - column[source] for source, target in edges))
    spans: list[list[tuple[int, int, int, int]]] = [[] for _ in layers[1:]]
    for source, target in edges:
        step = scale // (column[target] - column[source])
        for gap in range(column[source], column[target]):
            done = gap - column[source]
            spans[gap].append((source, target, done * step, (done + 1) * step))
    layers = [list(layer) for layer in layers]
    row = [0] * len(column)

    def renumber(layer: list[int]) -> None:
        for position, index in enumerate(layer):
            row[index] = position

    for layer in layers:
        renumber(layer)
    best, fewest = [list(layer) for layer in layers], _crossings(spans, row, scale)
    for _ in range(_SWEEPS):
        if fewest == 0:
            break
        for downward in (True, False):
            if downward:
                for layer in layers[1:]:
                    layer.sort(key=lambda i: (_mean(row, requires[i]), i))
                    renumber(layer)
            else:
                for layer in reversed(layers[:-1]):
                    layer.sort(key=lambda i: (_mean(row, dependents[i], row[i]), i))
                    renumber(layer)
            crossings = _crossings(spans, row, scale)
            if crossings < fewest:
                best, fewest = [list(layer) for layer in layers], crossings
    return best


def _mean(row: list[int], indices: Iterable[int], default: float = 0.0) -> float:
    rows = [row[index] for index in indices]
    return sum(rows) / len(rows) if rows else default


def _crossings(spans: list[list[tuple[int, int, int, int]]], row: list[int], scale: int) -> int:
    """How many pairs of edges cross, counted gap by gap with edges as straight lines.

    In a gap two edges cross when their order at the left side is the reverse of their order
    at the right; edges level at either side (sharing a node) do not cross. Counted as
    inversions with a sorted list rather than pair by pair: sorted by both sides, an edge
    level with an earlier one on the left is never below it on the right, so never counted.
    """
    total = 0
    for edges in spans:
        ends = sorted(
            (row[s] * scale + (row[t] - row[s]) * left, row[s] * scale + (row[t] - row[s]) * right)
            for s, t, left, right in edges
        )
        rights: list[int] = []
        for _, right in ends:
            total += len(rights) - bisect_right(rights, right)
            insort(rights, right)
    return total


def _curve(source: PlacedNode, target: PlacedNode) -> str:
    """An S-curve leaving the source's right middle and entering the target's left middle
    horizontally, its control points halfway across."""
    x0, y0 = source.x + source.width, source.y + source.height / 2
    x1, y1 = target.x, target.y + target.height / 2
    bend = (x1 - x0) / 2
    start, *controls = [f"{_number(x)},{_number(y)}"
                        for x, y in ((x0, y0), (x0 + bend, y0), (x1 - bend, y1), (x1, y1))]
    return f"M{start} C" + " ".join(controls)


def _number(value: float) -> str:
    rounded = round(value, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"
