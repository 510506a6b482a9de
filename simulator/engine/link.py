"""Links with max-min fair bandwidth sharing among concurrent flows, and exact byte counters.

A transfer is a flow of bytes along a route of directed links. The flows of one collective phase (every
member moving the same number of bytes, in lock-step as ring steps are) travel as one *bundle*: one rate for
all members, and on each link the bundle counts as as many flows as members cross that link. A single
point-to-point transfer is a bundle of one.

Whenever a bundle starts or ends, the rates of the bundles that share links with it (transitively: its
connected component) are recomputed by progressive filling (weighted max-min fairness, the
processor-sharing idea applied to networks); bundles elsewhere are untouched, so idle links cost nothing.
Between two such events every rate is constant, so the bytes a link carried in each time bucket are exact;
buckets double in width as the run grows (`results.collect.LinkHistogram`), so memory stays bounded however
long it runs.
"""

from __future__ import annotations

from collections import defaultdict

import simpy

from simulator.results.collect import LinkHistogram


class Bundle:
    """Flows that move `size` bytes each along their routes at one common rate (bytes/s per member)."""
    __slots__ = (
        "done",
        "id",
        "last",
        "latency",
        "links",
        "members",
        "mult",
        "rate",
        "remaining",
        "size",
        "version",
    )

    def __init__(self, bid: int, members: tuple[tuple[str, str], ...], links: tuple[str, ...],
                 mult: tuple[int, ...], size: float, now: float, done: simpy.Event, latency: float):
        self.id, self.members, self.links, self.mult = bid, members, links, mult
        self.size = self.remaining = size
        self.rate = 0.0
        self.last = now
        self.version = 0
        self.done = done
        self.latency = latency


class Network:
    """All links of one simulation: capacity (bytes/s per direction), active bundles, byte counters."""

    def __init__(self, env: simpy.Environment, capacity: dict[str, float], buckets: int = 100):
        self.env = env
        self.capacity = capacity
        self.histogram = LinkHistogram(buckets)
        self.active: dict[str, dict[Bundle, None]] = {}  # link -> bundles on it, in start order
        self.carried: dict[str, float] = defaultdict(float)  # bytes through each link so far
        self.delivered: dict[str, float] = defaultdict(float)  # bytes of completed bundles per link
        self.sent: dict[str, float] = defaultdict(float)
        self.received: dict[str, float] = defaultdict(float)
        self.next_id = 0
        self.events = 0
        # closed-form traffic: source name -> (bytes per link per unit, units booked); id(carried) -> name
        self._private: dict[str, tuple[dict[str, float], list[float]]] = {}
        self._private_key: dict[int, str] = {}

    def transfer(self, members: list[tuple[str, str, tuple[str, ...]]], size: float,
                 latency: float) -> simpy.Event:
        """Event that fires when every member (src, dst, route links) has moved `size` bytes, plus `latency`."""
        done = self.env.event()
        mult: dict[str, int] = {}
        for src, _dst, links in members:
            self.sent[src] += size
            for link in links:
                mult[link] = mult.get(link, 0) + 1
        ends = tuple((src, dst) for src, dst, _ in members)
        if size <= 0 or not mult:
            for _, dst in ends:
                self.received[dst] += size
            self._after(latency, done)
            return done
        bundle = Bundle(self.next_id, ends, tuple(mult), tuple(mult.values()), size, self.env.now, done, latency)
        self.next_id += 1
        for link in bundle.links:
            self.active.setdefault(link, {})[bundle] = None
        self._reshare(self._component(bundle))
        return done

    def account_private(self, start: float, end: float, carried: dict[str, float], sent: float,
                        scale: float = 1.0) -> None:
        """Book traffic that ran on links nothing else uses, timed in closed form (no flows needed):
        `carried` bytes per link (times `scale`) spread over [start, end]; `sent` bytes sent and received.
        O(1) whatever the number of links: every link of one `carried` source gets the same share of it
        in every bucket, so the source is booked once and spread over its links by `fold_private`."""
        key = self._private_key.get(id(carried))
        if key is None:
            key = self._private_key[id(carried)] = f"private#{len(self._private)}"
            self._private[key] = (carried, [0.0])  # keeps `carried` alive, so that its id stays its own
        self._private[key][1][0] += scale
        self.histogram.add(key, start, end, scale)
        self.sent["private"] += sent
        self.received["private"] += sent

    def account_private_each(self, starts: list[float], ends: list[float],
                             sources: list[tuple[dict[str, float], float, float]]) -> None:
        """`account_private(start, end, carried, sent, scale)` for each (start, end) in turn and, within it,
        each (carried, sent, scale) source in turn: the same additions in the same order, one lookup."""
        booked = []
        for carried, sent, scale in sources:
            key = self._private_key.get(id(carried))
            if key is None:
                key = self._private_key[id(carried)] = f"private#{len(self._private)}"
                self._private[key] = (carried, [0.0])
            booked.append((key, self._private[key][1], sent, scale))
        add, counters = self.histogram.add, (self.sent, self.received)
        for start, end in zip(starts, ends):
            for key, total, sent, scale in booked:
                total[0] += scale
                add(key, start, end, scale)
                for counter in counters:
                    counter["private"] += sent

    def fold_private(self) -> None:
        """Spread the private sources' bookings over their links (before reading counters or buckets)."""
        bins = self.histogram.bins
        for key, (carried, (total,)) in self._private.items():
            units = bins.pop(key, [])
            for link, per_unit in carried.items():
                row = bins.setdefault(link, [])
                row.extend([0.0] * (len(units) - len(row)))
                for i, u in enumerate(units):
                    row[i] += per_unit * u
                self.carried[link] += per_unit * total
                self.delivered[link] += per_unit * total
        self._private.clear()
        self._private_key.clear()

    def _after(self, delay: float, event: simpy.Event) -> None:
        if delay > 0:
            self.events += 1

            def fire(_e: simpy.Event) -> None:
                event.succeed()
            self.env.timeout(delay).callbacks.append(fire)
        else:
            event.succeed()

    def _component(self, bundle: Bundle) -> list[Bundle]:
        """Every active bundle connected to `bundle` through shared links, in start order."""
        if all(len(self.active[link]) == 1 for link in bundle.links):
            return [bundle]
        seen_links: set[str] = set()
        seen: dict[Bundle, None] = {bundle: None}
        stack = [bundle]
        while stack:
            for link in stack.pop().links:
                if link in seen_links:
                    continue
                seen_links.add(link)
                for other in self.active.get(link, ()):
                    if other not in seen:
                        seen[other] = None
                        stack.append(other)
        return sorted(seen, key=lambda b: b.id)

    def _settle(self, bundles: list[Bundle]) -> None:
        """Advance bundles to now at their current rates and log the links they touch."""
        now = self.env.now
        carried, add = self.carried, self.histogram.add
        for b in bundles:
            moved = min(b.rate * (now - b.last), b.remaining)
            if moved > 0:
                b.remaining -= moved
                for link, m in zip(b.links, b.mult):
                    carried[link] += moved * m
                    add(link, b.last, now, moved * m)
            b.last = now

    def _reshare(self, bundles: list[Bundle]) -> None:
        """Settle, then give the component's bundles their max-min fair rates and reschedule their ends."""
        self._settle(bundles)
        if len(bundles) == 1:
            b = bundles[0]
            b.rate = min(self.capacity[link] / m for link, m in zip(b.links, b.mult))
        else:
            self._fill(bundles)
        for b in bundles:
            b.version += 1
            self.events += 1
            version = b.version

            def on_end(_e: simpy.Event, b: Bundle = b, version: int = version) -> None:
                self._end(b, version)
            self.env.timeout(b.remaining / b.rate).callbacks.append(on_end)

    def _fill(self, bundles: list[Bundle]) -> None:
        """Progressive filling: raise every rate together; freeze the bundles of the link that fills first."""
        left: dict[str, float] = {}
        weight: dict[str, int] = {}
        for b in bundles:
            for link, m in zip(b.links, b.mult):
                left[link] = self.capacity[link]
                weight[link] = weight.get(link, 0) + m
        unfixed = dict.fromkeys(bundles)
        while unfixed:
            link = min((k for k in left if weight[k] > 0), key=lambda k: (max(left[k], 0.0) / weight[k], k))
            share = max(left[link], 0.0) / weight[link]
            for b in [b for b in self.active[link] if b in unfixed]:
                b.rate = share
                del unfixed[b]
                for other, m in zip(b.links, b.mult):
                    left[other] -= share * m
                    weight[other] -= m

    def _end(self, bundle: Bundle, version: int) -> None:
        if bundle.version != version:  # rates changed since this end was scheduled
            return
        component = self._component(bundle)
        self._settle(component)
        for link, m in zip(bundle.links, bundle.mult):  # rounding residue: all bytes are delivered, exactly
            self.carried[link] += bundle.remaining * m
            self.histogram.add(link, self.env.now, self.env.now, bundle.remaining * m)
            self.delivered[link] += bundle.size * m
            del self.active[link][bundle]
            if not self.active[link]:
                del self.active[link]
        bundle.remaining = 0.0
        for _, dst in bundle.members:
            self.received[dst] += bundle.size
        rest = [b for b in component if b is not bundle]
        if rest:
            self._reshare(rest)
        self._after(bundle.latency, bundle.done)

    def records(self) -> dict:
        """The counters and buckets of a finished run (after `fold_private`), to merge into another's."""
        return {"width": self.histogram.width, "bins": self.histogram.bins, "carried": dict(self.carried),
                "delivered": dict(self.delivered), "sent": dict(self.sent), "received": dict(self.received)}

    def merge(self, records: dict) -> None:
        """Add the counters and buckets of another run of the same links (replica_groups.py)."""
        self.histogram.merge(records["width"], records["bins"])
        for name in ("carried", "delivered", "sent", "received"):
            mine = getattr(self, name)
            for key, value in records[name].items():
                mine[key] += value

    def check(self, span_s: float | None = None) -> list[str]:
        """Conservation: what each link carried is what its completed bundles delivered plus in-flight
        progress; bytes sent equal bytes received plus bytes still in flight; no link above capacity over
        `span_s` (default: the clock's time)."""
        span_s = self.env.now if span_s is None else span_s
        problems = []
        in_flight: dict[str, float] = defaultdict(float)
        pending = 0.0
        for b in {b for bs in self.active.values() for b in bs}:
            pending += b.size * len(b.members)
            for link, m in zip(b.links, b.mult):
                in_flight[link] += (b.size - b.remaining) * m  # settled progress
        for link, carried in self.carried.items():
            expected = self.delivered[link] + in_flight[link]
            if abs(carried - expected) > 1e-6 * max(1.0, expected):
                problems.append(f"link {link} carried {carried} bytes but its flows account for {expected}")
                break
            if carried > self.capacity[link] * span_s * (1 + 1e-9) + 1e-6:
                problems.append(f"link {link} carried more than its capacity allows")
                break
        sent, received = sum(self.sent.values()), sum(self.received.values())
        if abs(sent - received - pending) > 1e-6 * max(1.0, sent):
            problems.append(f"bytes sent {sent} != received {received} + in flight {pending}")
        return problems
