"""Routing of arriving requests across data-parallel replicas: which replica's queue a request joins.

A router is an object with `route(rid) -> replica index`, called once per arrival. Stateful routers observe
the replicas through a `ReplicaView`, which the cluster keeps current (`assign` on arrival, `release` when a
request finishes or is dropped) and which only reads the batchers, never changes them. Every policy is
deterministic: ties go to the first replica at or after a rotating start, so idle replicas are used in turn.

- round_robin: replica i gets requests i, i + n, i + 2n, ...; blind to lengths and load.
- least_outstanding_tokens: the replica with the fewest outstanding tokens, i.e. prompt + output tokens of
  the requests routed to it and not yet finished. A request counts in full until it finishes (the router sees
  arrivals and completions, not the progress inside a replica), so this is an upper bound on the replica's
  remaining work. Output lengths are the simulator's: an oracle, where real routers guess (max_tokens).
- shortest_queue: the replica with the fewest requests waiting or running (len(waiting) + len(running)).
- affinity: requests of one session go to one replica, so that a prefix cache can reuse their KV-cache. The
  key of a request is its session (a closed-loop user: each user's next request continues its session), its
  conversation (a shared_prefix workload in open loop), or, when the workload carries prefix hashes
  (Mooncake), its first `prefix_blocks` block hashes (block 0 of the
  Mooncake conversation trace is one system prompt shared by every request, so 1 block would pin the whole
  trace on one replica). The replica is a stable hash of the key (BLAKE2b) mod the replica count. Fallback
  (the balance rule of SGLang's cache-aware router): when the chosen replica's queue (waiting + running) is
  longer than the shortest by more than `max_queue_gap` requests and more than `max_queue_ratio` times the
  shortest, or when a request has no key, it goes to the least-outstanding-tokens replica instead.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from simulator.config.serving import Affinity, LeastOutstandingTokens, RoundRobin, RouterSpec, ShortestQueue
from simulator.serving.batcher import ContinuousBatching
from simulator.workload.arrivals import Requests


class Router(Protocol):
    def route(self, rid: int) -> int:
        """The replica request `rid` joins (it has just arrived)."""
        ...


class ReplicaView:
    """What a router may observe of the replicas: their queues (read from the batchers), outstanding tokens
    per replica (counters updated on assign and release, O(1) each) and the session of each request."""

    def __init__(self, batchers: Sequence[ContinuousBatching], requests: Requests):
        self.batchers = batchers
        tokens = np.ascontiguousarray(requests.prompt_tokens + requests.output_tokens, dtype=np.int64)
        self.tokens = array("q", tokens.tobytes())  # typed arrays: 8 bytes a request
        self.outstanding = [0] * len(batchers)
        self.replica_of = array("q", [-1]) * len(requests)
        users = requests.closed_loop_users
        self.session: list[int] | None = list(range(len(requests))) if users else None

    def __len__(self) -> int:
        return len(self.batchers)

    def queue(self, replica: int) -> int:
        b = self.batchers[replica]
        return len(b.waiting) + len(b.running)

    def assign(self, rid: int, replica: int) -> None:
        self.replica_of[rid] = replica
        self.outstanding[replica] += self.tokens[rid]

    def release(self, rids: Sequence[int]) -> None:
        """Requests that finished or were dropped: they no longer load their replica."""
        for rid in rids:
            self.outstanding[self.replica_of[rid]] -= self.tokens[rid]

    def follow(self, rid: int, previous: int) -> None:
        """Request `rid` is the next one of the closed-loop user whose request `previous` just finished."""
        if self.session is not None:
            self.session[rid] = self.session[previous]


def _first_min(values: Sequence[int], start: int) -> int:
    """Index of the smallest value, ties broken by the first at or after `start` (cyclically)."""
    n = len(values)
    best = start % n
    for i in range(1, n):
        j = (start + i) % n
        if values[j] < values[best]:
            best = j
    return best


class RoundRobinRouter:
    """Replica i gets requests i, i + n, i + 2n, ...: stateless (requests arrive in id order), so which
    replica a request goes to is known before it arrives; even when requests are alike."""

    def __init__(self, n_replicas: int):
        self.n = n_replicas

    def route(self, rid: int) -> int:
        return rid % self.n


class LeastOutstandingTokensRouter:
    """The replica with the fewest prompt + output tokens routed to it and not yet finished."""

    def __init__(self, view: ReplicaView):
        self.view = view
        self.next = 0

    def route(self, rid: int) -> int:
        replica = _first_min(self.view.outstanding, self.next)
        self.next = replica + 1
        return replica


class ShortestQueueRouter:
    """The replica with the fewest requests waiting or running."""

    def __init__(self, view: ReplicaView):
        self.view = view
        self.next = 0

    def route(self, rid: int) -> int:
        view = self.view
        replica = _first_min([view.queue(r) for r in range(len(view))], self.next)
        self.next = replica + 1
        return replica


class AffinityRouter:
    """A session (or a prefix) sticks to the replica its key hashes to, unless that replica's queue is much
    longer than the shortest; then, and for requests without a key, least outstanding tokens."""

    def __init__(self, spec: Affinity, view: ReplicaView, requests: Requests):
        self.spec = spec
        self.view = view
        self.prefixes = requests.prefix_hashes
        self.shared = requests.shared_prefixes
        self.fallback = LeastOutstandingTokensRouter(view)
        self.sticky = self.fallbacks = 0  # decisions that followed the key / fell back on load

    def key(self, rid: int) -> tuple[int, ...] | None:
        if self.view.session is not None:
            return (0, self.view.session[rid])
        if self.shared is not None:  # a conversation stays where its earlier turns are cached
            return (2, int(self.shared.conversation[rid]))
        if self.prefixes is not None and self.prefixes[rid]:
            return (1, *self.prefixes[rid][: self.spec.prefix_blocks])
        return None

    def route(self, rid: int) -> int:
        key = self.key(rid)
        view = self.view
        if key is not None:
            replica = stable_hash(key) % len(view)
            chosen = view.queue(replica)
            shortest = min(view.queue(r) for r in range(len(view)))
            if chosen - shortest <= self.spec.max_queue_gap or chosen <= self.spec.max_queue_ratio * shortest:
                self.sticky += 1
                return replica
        self.fallbacks += 1
        return self.fallback.route(rid)


def stable_hash(key: tuple[int, ...]) -> int:
    """The same integer for the same key on every machine and run (Python's hash() of str is salted)."""
    data = b"".join((int(k) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little") for k in key)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def make_router(spec: RouterSpec, view: ReplicaView, requests: Requests) -> Router:
    """The router a scenario's `serving.router` names."""
    if isinstance(spec, RoundRobin):
        return RoundRobinRouter(len(view))
    if isinstance(spec, LeastOutstandingTokens):
        return LeastOutstandingTokensRouter(view)
    if isinstance(spec, ShortestQueue):
        return ShortestQueueRouter(view)
    if isinstance(spec, Affinity):
        return AffinityRouter(spec, view, requests)
    raise TypeError(f"not a router: {spec!r}")
