"""Which dev metric a run selects on, given what its store's dev split holds."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vavl.config import ConfigError, load_config
from vavl.train.driver import selection_metric_for


@dataclass
class DevCounts:
    """A store as `selection_metric_for` sees it: rows per condition of the dev split."""

    rows: dict[str, int] = field(default_factory=dict)
    uri: str = "data/store"

    def count(self, split: str, condition: str) -> int:
        assert split == "dev"
        return self.rows.get(condition, 0)


PAIRED = DevCounts({"av": 10, "audio": 10, "visual": 10})
AUDIO_ONLY = DevCounts({"audio": 10})


def test_a_condition_the_dev_split_has_is_kept() -> None:
    cfg = load_config(overrides=["train.selection_metric=dev/audio/macro_f1"])
    assert selection_metric_for(cfg, PAIRED) == ("dev/audio/macro_f1", None)


def test_the_mean_over_conditions_needs_only_some_dev_rows() -> None:
    cfg = load_config(overrides=["train.selection_metric=dev/mean/macro_f1"])
    assert selection_metric_for(cfg, PAIRED) == ("dev/mean/macro_f1", None)
    assert selection_metric_for(cfg, AUDIO_ONLY, explicit=True) == ("dev/mean/macro_f1", None)
    with pytest.raises(ConfigError, match="has none"):
        selection_metric_for(cfg, DevCounts())


def test_a_missing_condition_falls_back_unless_chosen_explicitly() -> None:
    cfg = load_config(overrides=["train.selection_metric=dev/av/macro_f1"])
    chosen, note = selection_metric_for(cfg, AUDIO_ONLY)
    assert chosen == "dev/audio/macro_f1" and "selecting on dev/audio/macro_f1" in note
    with pytest.raises(ConfigError, match="it has audio rows"):
        selection_metric_for(cfg, AUDIO_ONLY, explicit=True)
