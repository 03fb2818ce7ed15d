"""The sweep's Optuna figures: drawn from scored trials, without notices about themselves."""

from __future__ import annotations

import warnings

from vavl.plots import optuna_figures
from vavl.search_space import Float

SPACE = {
    "loss.residual_weight": Float(0.05, 4.0, log=True),
    "loss.reconstruction_weight": Float(0.1, 8.0, log=True),
}


def test_optuna_figures_of_three_trials_draw_quietly() -> None:
    # Equal scores make Optuna's importance evaluator warn that the importances are equal.
    scored = [
        ({"loss.residual_weight": w, "loss.reconstruction_weight": 2 * w}, 0.5)
        for w in (0.1, 0.5, 1.0)
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = optuna_figures(scored, SPACE, "max")
    assert set(figures) == {"optimization_history.png", "param_importances.png", "contour.png"}
    assert [str(w.message) for w in caught] == []
