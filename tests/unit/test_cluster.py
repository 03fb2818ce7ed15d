"""Waiting for a cluster that may grow: at once when it fits, asking the autoscaler and polling
while it does not, failing after the timeout with what was asked and what was there."""

from __future__ import annotations

import pytest
import ray
import ray.autoscaler.sdk

from tests.factories import tiny_config
from vavl.cluster import ClusterTooSmall, ResourceRequest, release_requests, wait_for_resources
from vavl.config import ConfigError
from vavl.sweep import trial_cpus
from vavl.train.driver import training_request


class FakeCluster:
    """`ray.cluster_resources` answering from a list of states, one per call, and a clock that
    sleeps by moving forward."""

    def __init__(self, states: list[dict[str, float]]) -> None:
        self.states, self.asked, self.now = states, [], 0.0

    def resources(self) -> dict[str, float]:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch):
    def install(states: list[dict[str, float]]) -> FakeCluster:
        fake = FakeCluster(states)
        monkeypatch.setattr(ray, "cluster_resources", fake.resources)
        monkeypatch.setattr(
            ray.autoscaler.sdk, "request_resources", lambda bundles: fake.asked.append(bundles)
        )
        return fake

    return install


REQUEST = ResourceRequest({"CPU": 3.0}, [{"CPU": 1.0}] * 3, "three workers")


def wait(fake: FakeCluster, timeout: float, said: list[str]) -> dict[str, float]:
    return wait_for_resources(
        REQUEST, timeout, say=said.append, clock=lambda: fake.now, sleep=fake.sleep
    )


def test_a_cluster_that_fits_is_not_asked_anything(cluster) -> None:
    fake, said = cluster([{"CPU": 4.0}]), []
    assert wait(fake, 10, said) == {"CPU": 4.0}
    assert fake.asked == [] and said == []


def test_a_growing_cluster_is_asked_and_waited_for_then_released(cluster) -> None:
    fake, said = cluster([{"CPU": 0.0}, {"CPU": 0.0}, {"CPU": 2.0}, {"CPU": 4.0}]), []
    assert wait(fake, 60, said) == {"CPU": 4.0}
    assert fake.asked == [REQUEST.bundles] and fake.now == pytest.approx(6.0)
    assert "waiting up to 60 s for the Ray cluster to provide 3 CPU" in said[0]
    assert "(it has 0 CPU)" in said[0] and said[1] == "the Ray cluster now has 4 CPU"
    release_requests()
    assert fake.asked[-1] == []
    release_requests()  # nothing asked since: nothing withdrawn again
    assert len(fake.asked) == 2


def test_a_cluster_that_never_grows_fails_after_the_timeout(cluster) -> None:
    fake, said = cluster([{"CPU": 2.0}]), []
    with pytest.raises(ClusterTooSmall, match=r"three workers needs 3 CPU; after 5 s .* has 2 CPU"):
        wait(fake, 5, said)
    assert isinstance(ClusterTooSmall("x"), ConfigError)  # the commands exit 2 on it
    with pytest.raises(ClusterTooSmall, match="after 0 s"):
        wait(cluster([{"CPU": 2.0}]), 0, [])


def test_training_asks_for_its_workers_and_ray_datas_cpu(cluster) -> None:
    cfg = tiny_config("train.workers=2", "train.cpus_per_worker=0.5", "train.gpus_per_worker=1")
    request = training_request(cfg)
    assert request.totals == {"CPU": 2.0, "GPU": 2.0}
    assert request.bundles == [{"CPU": 0.5, "GPU": 1.0}] * 2 + [{"CPU": 1.0}]


def test_sweep_trials_share_what_the_cluster_has_once_it_holds_the_least(cluster) -> None:
    cfg = tiny_config("train.workers=2", "train.cpus_per_worker=1", "train.resource_timeout_s=0")
    cluster([{"CPU": 4.0}])
    assert trial_cpus(cfg, 2) == pytest.approx(0.7)  # (4 - 1) / 2 - 0.1 = 1.4 per trial
    cluster([{"CPU": 1.2}])
    with pytest.raises(ClusterTooSmall, match=r"2 concurrent trials x 2 workers"):
        trial_cpus(cfg, 2)
