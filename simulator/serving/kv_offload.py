"""A KV-cache tier below HBM: host DRAM behind each chip's PCIe link, with a capacity (LMCache-style offload).

It holds two kinds of contents in one budget of bytes per replica:
- prefix-cache entries evicted from HBM (`serving.kv_offload.prefixes`): kept here, least recently used
  dropped first when room is needed, and copied back over PCIe when a later request's prompt starts with
  them, instead of being recomputed; a reloaded entry keeps its host copy (evicting it from HBM again moves
  no bytes);
- the KV-cache of sequences preempted with `preemption: swap`, held until they resume. A swap that does not
  fit even after dropping every prefix entry is refused: that sequence recomputes instead (counted).
Without a tier (no `serving.kv_offload`) swap space is unbounded, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from simulator.serving.kv_cache import leading


class HostKvTier:
    """One replica's host-DRAM KV tier of `capacity_bytes` bytes, with what moved in and out of it."""

    def __init__(self, capacity_bytes: float, keep_prefixes: bool = True):
        self.capacity_bytes = capacity_bytes
        self.keep_prefixes = keep_prefixes
        self.entries: OrderedDict[int, float] = OrderedDict()  # prefix hash -> bytes, least recently used first
        self.swapped: dict[int, float] = {}  # request id -> bytes of its preempted KV-cache
        self.protected: frozenset[int] = frozenset()  # entries a request being admitted has matched
        self.used_bytes = 0.0
        self.peak_bytes = 0.0
        self.stored_blocks = 0      # prefix entries written to the tier
        self.offload_bytes = 0.0    # their bytes, HBM -> host
        self.reloaded_blocks = 0    # prefix entries read back instead of recomputed
        self.reload_bytes = 0.0     # their bytes, host -> HBM
        self.missed_blocks = 0      # prompt blocks found neither in HBM nor here (computed)
        self.dropped_blocks = 0     # entries dropped from the tier for room
        self.swaps_refused = 0      # preemptions that found no room and recompute

    def _fits(self, nbytes: float) -> bool:
        """Drop least recently used prefix entries (not those a request being admitted is about to read)
        until `nbytes` more fit; False if they cannot."""
        while self.used_bytes + nbytes > self.capacity_bytes:
            victim = next((h for h in self.entries if h not in self.protected), None)
            if victim is None:
                break
            self.used_bytes -= self.entries.pop(victim)
            self.dropped_blocks += 1
        return self.used_bytes + nbytes <= self.capacity_bytes

    def _add(self, nbytes: float) -> None:
        self.used_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.used_bytes)

    def store(self, h: int, nbytes: float) -> float:
        """Offload an entry evicted from HBM; the bytes that cross the link (0: already held, or no room)."""
        if not self.keep_prefixes:
            return 0.0
        if h in self.entries:
            self.entries.move_to_end(h)
            return 0.0
        if nbytes > self.capacity_bytes or not self._fits(nbytes):
            return 0.0
        self.entries[h] = nbytes
        self._add(nbytes)
        self.stored_blocks += 1
        self.offload_bytes += nbytes
        return nbytes

    def match(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of `hashes` the tier holds."""
        return leading(hashes, self.entries)

    def protect(self, hashes: Sequence[int]) -> None:
        """Keep these entries while the request that matched them is admitted (room made for it may offload
        other entries here): until the next `protect`."""
        self.protected = frozenset(hashes)

    def reload(self, hashes: Sequence[int], missed: int) -> float:
        """Read entries back for a request (their host copies stay, most recently used); `missed` prompt
        blocks were in neither tier. The bytes that cross the link."""
        nbytes = 0.0
        for h in hashes:
            self.entries.move_to_end(h)
            nbytes += self.entries[h]
        self.reloaded_blocks += len(hashes)
        self.reload_bytes += nbytes
        self.missed_blocks += missed
        return nbytes

    def hold_swap(self, rid: int, nbytes: float) -> bool:
        """Room for a preempted sequence's KV-cache, dropping prefix entries if needed; False: none."""
        if not self._fits(nbytes):
            self.swaps_refused += 1
            return False
        self.swapped[rid] = nbytes
        self._add(nbytes)
        return True

    def release_swap(self, rid: int) -> None:
        self.used_bytes -= self.swapped.pop(rid, 0.0)

    def check(self) -> list[str]:
        """Invariant violations: the bytes in use are those of the entries and swapped sequences held."""
        held = sum(self.entries.values()) + sum(self.swapped.values())
        if abs(self.used_bytes - held) > 1e-6 * max(1.0, held) or self.used_bytes > self.capacity_bytes * (1 + 1e-12):
            return [f"host KV tier uses {self.used_bytes:.6g} B of {self.capacity_bytes:.6g} B but holds {held:.6g} B"]
        return []
