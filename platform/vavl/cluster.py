"""What a job asks of a Ray cluster that may grow.

Clusters are often started small: the cluster launcher's and KubeRay's heads usually have `CPU: 0`
and workers at `min_workers: 0`, and an autoscaler adds nodes when work asks for them. So a job
never refuses a request because the cluster cannot hold it now: it asks the autoscaler for it
(`ray.autoscaler.sdk.request_resources`, a no-op where there is none) and waits until the cluster
has it, up to `train.resource_timeout_s`. Only then does it fail, naming what it asked for and
what the cluster had; a fixed cluster that is too small fails the same way (a timeout of 0 fails
at once). `release_requests` withdraws the request when the job is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vavl.config import ConfigError

POLL_S = 2.0
EPSILON = 1e-9


class ClusterTooSmall(ConfigError):
    """The cluster did not provide a request within its timeout (a bad request for this cluster:
    the commands exit 2)."""


@dataclass(frozen=True)
class ResourceRequest:
    """Resources a job needs in all (e.g. {"CPU": 2.5}), the bundles the autoscaler is asked
    for (one per process), and what they are for, in words."""

    totals: Mapping[str, float]
    bundles: list[dict[str, float]]
    purpose: str

    def missing(self, available: Mapping[str, float]) -> dict[str, float]:
        """Resource -> amount the cluster lacks (empty when it has everything)."""
        return {
            name: amount - available.get(name, 0.0)
            for name, amount in self.totals.items()
            if amount > available.get(name, 0.0) + EPSILON
        }


def describe(resources: Mapping[str, float]) -> str:
    return (
        ", ".join(f"{amount:g} {name}" for name, amount in sorted(resources.items())) or "nothing"
    )


def wait_for_resources(
    request: ResourceRequest,
    timeout_s: float,
    *,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, float]:
    """Block until the cluster's resources cover `request`; the cluster's resources then.

    While they do not, the autoscaler (if any) is asked for the request's bundles. Raises
    ClusterTooSmall after `timeout_s` seconds without them."""
    import ray

    available = dict(ray.cluster_resources())
    if not request.missing(available):
        return available
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=request.bundles)
    _ASKED.append(request)
    say(
        f"waiting up to {timeout_s:g} s for the Ray cluster to provide {describe(request.totals)} "
        f"for {request.purpose} (it has {describe(_relevant(available, request))}); the "
        "autoscaler, if the cluster has one, was asked for it"
    )
    deadline = clock() + timeout_s
    while request.missing(available):
        if clock() >= deadline:
            raise ClusterTooSmall(
                f"{request.purpose} needs {describe(request.totals)}; after {timeout_s:g} s the "
                f"Ray cluster has {describe(_relevant(available, request))}. Add nodes (or let "
                "the autoscaler: check its node types' resources), lower the request, or raise "
                "train.resource_timeout_s"
            )
        sleep(POLL_S)
        available = dict(ray.cluster_resources())
    say(f"the Ray cluster now has {describe(_relevant(available, request))}")
    return available


_ASKED: list[ResourceRequest] = []  # what this process asked the autoscaler for


def release_requests() -> None:
    """Withdraw what `wait_for_resources` asked of the autoscaler, so it may scale down."""
    if not _ASKED:
        return
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[])
    _ASKED.clear()


def _relevant(available: Mapping[str, float], request: ResourceRequest) -> dict[str, float]:
    return {name: available.get(name, 0.0) for name in request.totals}
