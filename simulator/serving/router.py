"""Routing of arriving requests across data-parallel replicas."""

from __future__ import annotations


class RoundRobinRouter:
    """Replica i gets requests i, i + n, i + 2n, ...: stateless and even when requests are alike."""

    def __init__(self, n_replicas: int):
        self.n = n_replicas
        self.next = 0

    def route(self, rid: int) -> int:
        replica = self.next
        self.next = (self.next + 1) % self.n
        return replica
