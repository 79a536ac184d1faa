"""The stage graph's layout: columns by depth, rows with few crossings, curves rightward."""

from __future__ import annotations

import re

import pytest

from shipyard.domain.pipeline import StageSpec
from ui.dag import DagLayout, DagNode, PlacedNode, layout_dag

APPS = ("api", "web", "worker", "billing")


def release_graph() -> list[DagNode]:
    """checkout → test:x → build:x for four apps → bake → staging → canary → prod; bake also
    requires checkout directly, a transitive requirement that must still be drawn."""
    nodes = [DagNode("checkout")]
    for app in APPS:
        nodes += [DagNode(f"test:{app}", ("checkout",)),
                  DagNode(f"build:{app}", (f"test:{app}",))]
    nodes += [DagNode("bake", (*(f"build:{app}" for app in APPS), "checkout")),
              DagNode("staging", ("bake",)), DagNode("canary", ("staging",)),
              DagNode("prod", ("canary",))]
    return nodes


def cells(layout: DagLayout) -> dict[str, tuple[int, int]]:
    return {node.ref: (node.column, node.row) for node in layout.nodes}


def boxes(layout: DagLayout) -> dict[str, PlacedNode]:
    return {node.ref: node for node in layout.nodes}


PATH = re.compile(r"M(\S+),(\S+) C(\S+),(\S+) (\S+),(\S+) (\S+),(\S+)")


def path_points(d: str) -> list[tuple[float, float]]:
    """The four points of an edge's path: start, two controls, end."""
    found = PATH.fullmatch(d)
    assert found, d
    numbers = [float(n) for n in found.groups()]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


# -- columns and rows -------------------------------------------------------------------------


def test_a_chain_runs_along_row_zero_one_column_per_stage() -> None:
    layout = layout_dag([DagNode("a"), DagNode("b", ("a",)), DagNode("c", ("b",))])
    assert cells(layout) == {"a": (0, 0), "b": (1, 0), "c": (2, 0)}


def test_a_diamond_stacks_its_branches_in_declared_order() -> None:
    layout = layout_dag([DagNode("a"), DagNode("b", ("a",)), DagNode("c", ("a",)),
                         DagNode("d", ("b", "c"))])
    assert cells(layout) == {"a": (0, 0), "b": (1, 0), "c": (1, 1), "d": (2, 0)}


def test_a_stage_lands_one_column_after_its_deepest_requirement() -> None:
    layout = layout_dag([DagNode("a"), DagNode("b", ("a",)), DagNode("c", ("b",)),
                         DagNode("d", ("a", "c"))])
    assert cells(layout)["d"] == (3, 0)


def test_a_release_graph_lays_out_in_seven_columns_apps_stacked_in_declared_order() -> None:
    layout = layout_dag(release_graph())
    assert cells(layout) == {
        "checkout": (0, 0),
        **{f"test:{app}": (1, row) for row, app in enumerate(APPS)},
        **{f"build:{app}": (2, row) for row, app in enumerate(APPS)},
        "bake": (3, 0), "staging": (4, 0), "canary": (5, 0), "prod": (6, 0),
    }


def test_rows_are_reordered_when_the_declared_order_would_cross() -> None:
    # Declared order puts b1 above b2, so a1 → b2 and a2 → b1 would cross.
    layout = layout_dag([DagNode("a1"), DagNode("a2"), DagNode("b1", ("a2",)),
                         DagNode("b2", ("a1",))])
    assert cells(layout) == {"a1": (0, 0), "a2": (0, 1), "b2": (1, 0), "b1": (1, 1)}


def test_roots_are_reordered_towards_their_dependents_when_that_uncrosses_edges() -> None:
    # x and y tie (both have mean requirement row 1), so only moving c up beside a, next to
    # x which both feed, removes the crossing of c → x with b → y.
    layout = layout_dag([DagNode("a"), DagNode("b"), DagNode("c"), DagNode("x", ("a", "c")),
                         DagNode("y", ("b",))])
    assert cells(layout) == {"a": (0, 0), "c": (0, 1), "b": (0, 2), "x": (1, 0), "y": (1, 1)}


def test_the_same_stages_give_the_same_layout() -> None:
    assert layout_dag(release_graph()) == layout_dag(release_graph())


def test_any_object_with_a_ref_and_requires_can_be_laid_out() -> None:
    specs = [StageSpec(node.ref, node.requires) for node in release_graph()]
    assert layout_dag(specs) == layout_dag(release_graph())


# -- boxes and canvas -------------------------------------------------------------------------


def test_boxes_sit_on_a_grid_of_the_given_sizes() -> None:
    layout = layout_dag([DagNode("a"), DagNode("b", ("a",)), DagNode("c", ("a",))],
                        box_width=100, box_height=40, column_gap=50, row_gap=10, margin=5)
    assert boxes(layout)["c"] == PlacedNode("c", column=1, row=1, x=155, y=55, width=100,
                                            height=40)
    assert (layout.width, layout.height) == (260, 100)


def test_a_release_graph_has_no_overlapping_boxes() -> None:
    placed = layout_dag(release_graph()).nodes
    for i, one in enumerate(placed):
        for other in placed[i + 1:]:
            apart = (one.x + one.width <= other.x or other.x + other.width <= one.x
                     or one.y + one.height <= other.y or other.y + other.height <= one.y)
            assert apart, (one, other)


def test_the_canvas_encloses_every_box_plus_the_margin_and_no_more() -> None:
    layout = layout_dag(release_graph(), margin=8)
    assert all(node.x >= 8 and node.y >= 8 for node in layout.nodes)
    assert max(node.x + node.width for node in layout.nodes) + 8 == layout.width == 1612
    assert max(node.y + node.height for node in layout.nodes) + 8 == layout.height == 240


def test_an_empty_graph_is_a_canvas_of_just_the_margins() -> None:
    assert layout_dag([], margin=8) == DagLayout(width=16, height=16, nodes=(), edges=())


@pytest.mark.parametrize("size", [{"box_width": 0}, {"box_height": -4}, {"column_gap": -1},
                                  {"row_gap": -1}, {"margin": -1}])
def test_an_impossible_size_is_rejected_naming_it(size: dict[str, int]) -> None:
    (name,) = size
    with pytest.raises(ValueError, match=name):
        layout_dag([DagNode("a")], **size)


# -- edges ------------------------------------------------------------------------------------


def test_an_edge_is_a_curve_from_the_source_right_middle_to_the_target_left_middle() -> None:
    layout = layout_dag([DagNode("a"), DagNode("b", ("a",)), DagNode("c", ("a",))])
    assert [(e.source, e.target, e.d) for e in layout.edges] == [
        ("a", "b", "M188,30 C216,30 216,30 244,30"),
        ("a", "c", "M188,30 C216,30 216,90 244,90"),
    ]


def test_every_edge_of_a_release_graph_starts_and_ends_at_its_boxes_middles() -> None:
    layout = layout_dag(release_graph())
    at = boxes(layout)
    for edge in layout.edges:
        source, target = at[edge.source], at[edge.target]
        start, *_, end = path_points(edge.d)
        assert start == (source.x + source.width, source.y + source.height / 2), edge
        assert end == (target.x, target.y + target.height / 2), edge


def test_every_edge_of_a_release_graph_runs_left_to_right() -> None:
    layout = layout_dag(release_graph())
    at = boxes(layout)
    for edge in layout.edges:
        assert at[edge.source].column < at[edge.target].column, edge
        xs = [x for x, _ in path_points(edge.d)]
        assert xs == sorted(xs) and xs[0] < xs[-1], edge


def test_every_declared_requirement_is_drawn_transitive_ones_included() -> None:
    declared = [(ref, node.ref) for node in release_graph() for ref in node.requires]
    assert [(e.source, e.target) for e in layout_dag(release_graph()).edges] == declared
    assert ("checkout", "bake") in declared


def test_path_numbers_are_integers_or_have_one_decimal() -> None:
    layout = layout_dag([DagNode("a"), DagNode("b", ("a",))], box_height=45, column_gap=57)
    (edge,) = layout.edges
    assert edge.d == "M188,30.5 C216.5,30.5 216.5,30.5 245,30.5"


# -- refusals ---------------------------------------------------------------------------------


def test_an_unknown_requirement_is_rejected_naming_the_stage_and_the_ref() -> None:
    with pytest.raises(ValueError, match=r"'deploy' requires 'bulid'"):
        layout_dag([DagNode("build"), DagNode("deploy", ("bulid",))])


def test_a_cycle_is_rejected_naming_only_the_refs_in_it() -> None:
    # d waits on the cycle without being in it.
    with pytest.raises(ValueError, match=r"cycle: a -> b -> c -> a\b"):
        layout_dag([DagNode("d", ("a",)), DagNode("a", ("b",)), DagNode("b", ("c",)),
                    DagNode("c", ("a",)), DagNode("root")])


def test_a_stage_requiring_itself_is_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle: a -> a"):
        layout_dag([DagNode("a", ("a",))])


def test_a_ref_listed_twice_is_rejected_naming_it() -> None:
    with pytest.raises(ValueError, match="'a' is listed twice"):
        layout_dag([DagNode("a"), DagNode("a")])
