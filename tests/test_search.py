"""keras_vc.ops.search.grid_then_refine against closed-form minima and NumPy grids."""

import numpy as np
import pytest

from keras_vc.ops import search


def _vectorised(function):
    return lambda xs: np.array([function(x) for x in xs])


def test_golden_refinement_finds_a_smooth_minimum_between_grid_points():
    grid = np.linspace(-2.0, 2.0, 9)                     # spacing 0.5; the minimum is off-grid
    found = search.grid_then_refine(_vectorised(lambda x: (x - 0.3) ** 2 + 1.0), grid)
    assert abs(found.x - 0.3) < 1e-6
    assert abs(found.value - 1.0) < 1e-12
    assert not found.on_edge


def test_grid_refinement_is_the_best_point_of_the_second_grid():
    grid = np.linspace(0.0, 1.0, 5)

    def function(xs):
        return np.abs(xs - 0.61)

    found = search.grid_then_refine(function, grid, refine="grid", refine_points=11)
    fine = np.linspace(grid[1], grid[3], 11)           # best grid point 0.5, neighbours 0.25, 0.75
    expected = fine[np.argmin(np.abs(fine - 0.61))]
    assert found.x == expected
    assert found.value == abs(expected - 0.61)


def test_refinement_never_replaces_a_better_grid_point():
    # A function whose refinement interval holds only worse values than the grid point itself.
    grid = np.array([0.0, 1.0, 2.0])

    def function(xs):
        return np.where(np.isin(xs, grid), np.abs(xs - 1.0), 5.0)

    for refine in search.REFINEMENTS:
        found = search.grid_then_refine(function, grid, refine=refine, refine_points=4)
        assert (found.x, found.value) == (1.0, 0.0)


def test_a_minimum_outside_the_grid_is_on_the_edge():
    found = search.grid_then_refine(_vectorised(lambda x: x), np.linspace(0.0, 1.0, 11))
    assert found.on_edge and found.x == 0.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(grid=[1.0]), "grid"),
    (dict(grid=np.zeros((2, 2))), "grid"),
    (dict(grid=[0.0, np.nan]), "grid"),
    (dict(grid=[0.0, 1.0], refine="newton"), "refine"),
    (dict(grid=[0.0, 1.0], refine_points=1), "refine_points"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        search.grid_then_refine(_vectorised(lambda x: x), **kwargs)
