"""The one 1-D minimiser of keras_vc: a grid, then a refinement next to its best point.

Used by the post-hoc temperature search (:func:`keras_vc.calibration.find_temperature`) and the
temperature-free SNNL (:func:`keras_vc.losses.temperature_free_soft_nearest_neighbor_loss`), both
over ``log T``. NumPy on the host: the functions searched are cheap scalars of fixed arrays.
"""

import dataclasses

import numpy as np

from keras_vc import _validation

REFINEMENTS = ("golden", "grid")
_GOLDEN_RATIO = (np.sqrt(5) - 1) / 2


@dataclasses.dataclass(frozen=True)
class GridSearchResult:
    """Outcome of :func:`grid_then_refine`.

    Attributes:
        x: the best point found.
        value: the function at ``x``.
        on_edge: True when the best *grid* point is the first or the last one: the minimum may
            lie outside the grid.
    """

    x: float
    value: float
    on_edge: bool


def grid_then_refine(evaluate, grid, refine="golden", refine_points=40):
    """Minimises a function of one variable: on ``grid``, then between the neighbours of the best
    grid point.

    The refinement searches the interval between the grid points on either side of the best one
    (one side at an edge of the grid): ``"golden"`` runs ``refine_points`` golden-section steps,
    ``"grid"`` evaluates a second, evenly spaced grid of ``refine_points`` points there. Its best
    point replaces the grid's only when its value is strictly lower, so the result is never worse
    than the grid's best.

    Args:
        evaluate: function from a 1-D NumPy array of points to the array of function values
            (a batched evaluation; golden-section steps pass one point at a time).
        grid: 1-D increasing array of at least 2 points.
        refine: ``"golden"`` (default) or ``"grid"``.
        refine_points: golden-section steps, or the size of the refining grid (>= 2).

    Returns:
        A :class:`GridSearchResult`.

    Raises:
        ValueError: for a grid that is not a 1-D array of at least 2 finite points, an unknown
            ``refine`` or ``refine_points`` < 2.
    """
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)):
        raise ValueError(f"`grid` must be a 1-D array of at least 2 finite points, got shape "
                         f"{grid.shape}.")
    _validation.check_choice(refine, "refine", REFINEMENTS)
    refine_points = _validation.check_int(refine_points, "refine_points", minimum=2)
    values = np.asarray(evaluate(grid))
    best = int(np.argmin(values))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    if refine == "grid":
        candidates = np.linspace(low, high, refine_points)
        candidate_values = np.asarray(evaluate(candidates))
    else:
        candidates, candidate_values = _golden_section(
            lambda x: evaluate(np.array([x]))[0], low, high, refine_points)
    best_x, best_value = grid[best], values[best]
    index = int(np.argmin(candidate_values))
    if candidate_values[index] < best_value:
        best_x, best_value = candidates[index], candidate_values[index]
    return GridSearchResult(x=float(best_x), value=float(best_value),
                            on_edge=best in (0, grid.size - 1))


def _golden_section(function, a, b, steps):
    """The two interior points of the last golden-section bracket in [a, b] and their values."""
    c, d = b - _GOLDEN_RATIO * (b - a), a + _GOLDEN_RATIO * (b - a)
    fc, fd = function(c), function(d)
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN_RATIO * (b - a)
            fc = function(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN_RATIO * (b - a)
            fd = function(d)
    return np.array([c, d]), np.array([fc, fd])
