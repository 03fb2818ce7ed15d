from vavl.search_space import Choice, Float, contains, recipe_point

SPACE = {
    "loss.residual_weight": Float(0.05, 4.0, log=True),
    "optim.batch_size": Choice((16, 32)),
}


def test_recipe_point_reads_the_searched_paths_of_the_recipe() -> None:
    tree = {"loss": {"residual_weight": 1.0}, "optim": {"batch_size": 32, "lr": 1e-3}}
    assert recipe_point(SPACE, tree) == {"loss.residual_weight": 1.0, "optim.batch_size": 32}


def test_a_recipe_value_outside_the_space_gives_no_starting_point() -> None:
    assert (
        recipe_point(SPACE, {"loss": {"residual_weight": 9.0}, "optim": {"batch_size": 32}}) is None
    )
    assert (
        recipe_point(SPACE, {"loss": {"residual_weight": 1.0}, "optim": {"batch_size": 8}}) is None
    )
    assert not contains(Float(0.1, 1.0), "0.5") and contains(Float(0.1, 1.0), 1)
