"""Paged KV-cache: a pool of fixed-size blocks per replica, with exact block (and so byte) accounting.

Sliding-window layers (gpt-oss, Gemma 2, Mistral 7B v0.1) keep only their window's blocks, as vLLM's hybrid
KV-cache manager does: the layers form groups of g = gcd(global layers, sliding layers) layers, a block holds
`block_tokens` tokens of one group, and a sequence of n token blocks holds n blocks of each global group and
min(n, ceil(window / block_tokens) + 1) of each sliding group (the window's positions straddle at most that
many blocks; older ones are freed as it slides). Without sliding layers there is one group of every layer.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from simulator.hardware.model import ModelShape


@dataclass(frozen=True)
class BlockLayout:
    """How a sequence's token blocks become pool blocks: `full_groups` layer groups hold every token block,
    `sliding_groups` hold at most `window_blocks` of them."""
    full_groups: int = 1
    sliding_groups: int = 0
    window_blocks: int = 0

    @property
    def groups(self) -> int:
        return self.full_groups + self.sliding_groups

    @classmethod
    def of(cls, model: ModelShape, block_tokens: int) -> BlockLayout:
        sliding = model.n_sliding_layers if model.sliding_window else 0
        if not sliding:
            return cls()
        group = math.gcd(model.n_layers - sliding, sliding)
        return cls((model.n_layers - sliding) // group, sliding // group,
                   -(-int(model.sliding_window or 0) // block_tokens) + 1)


class KvBlockPool:
    """Blocks of `block_tokens` tokens (of one layer group, see `BlockLayout`); a request holds whole blocks
    from admission until it finishes."""

    def __init__(self, capacity_blocks: int, block_tokens: int, bytes_per_block: float,
                 layout: BlockLayout | None = None):
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.bytes_per_block = bytes_per_block
        self.layout = layout or BlockLayout()
        self.sliding = self.layout.sliding_groups > 0
        self.used_blocks = 0
        self.peak_blocks = 0
        self.held: dict[int | tuple, int] = {}  # request id (or ("prefix", hash) for cached blocks) -> blocks

    @classmethod
    def for_model(cls, model: ModelShape, capacity_tokens: int, block_tokens: int,
                  full_block_bytes: float) -> KvBlockPool:
        """The pool of a replica with room for `capacity_tokens` tokens of every layer, `full_block_bytes` per
        block of every layer: blocks of one layer group, so a model with sliding layers has `groups` x as
        many, each `groups` x smaller."""
        layout = BlockLayout.of(model, block_tokens)
        if layout.groups == 1:  # one group of every layer (global, or all sliding): the block as it is
            return cls(capacity_tokens // block_tokens, block_tokens, full_block_bytes, layout)
        return cls(capacity_tokens // block_tokens * layout.groups, block_tokens,
                   full_block_bytes / layout.groups, layout)

    def blocks_for(self, tokens: int) -> int:
        """Pool blocks a sequence of `tokens` tokens holds (from its first position)."""
        n = -(-tokens // self.block_tokens)
        if not self.sliding:
            return n
        lay = self.layout
        return lay.full_groups * n + lay.sliding_groups * min(n, lay.window_blocks)

    def can_allocate(self, blocks: int) -> bool:
        return self.used_blocks + blocks <= self.capacity_blocks

    def allocate(self, rid: int | tuple, blocks: int) -> None:
        if not self.can_allocate(blocks):
            raise RuntimeError(f"KV pool over capacity: {self.used_blocks} + {blocks} > {self.capacity_blocks}")
        self.held[rid] = self.held.get(rid, 0) + blocks
        self.used_blocks += blocks
        self.peak_blocks = max(self.peak_blocks, self.used_blocks)

    def free(self, rid: int | tuple) -> None:
        self.used_blocks -= self.held.pop(rid)

    @property
    def used_bytes(self) -> float:
        return self.used_blocks * self.bytes_per_block

    def check(self) -> list[str]:
        """Invariant violations: the blocks in use are exactly those the live requests hold."""
        problems = []
        if self.used_blocks != sum(self.held.values()):
            problems.append(f"KV pool counts {self.used_blocks} blocks used but requests hold "
                            f"{sum(self.held.values())}")
        if not 0 <= self.used_blocks <= self.capacity_blocks:
            problems.append(f"KV pool uses {self.used_blocks} of {self.capacity_blocks} blocks")
        return problems


class PrefixCache:
    """Blocks of prompt (and answer) prefixes kept in the KV pool for later requests: vLLM's automatic prefix
    caching. Entries are whole hashed blocks of `block_tokens` tokens (Mooncake traces: 512; a shared_prefix
    workload: the pool's block). A block becomes an entry as soon as its request has written it (at the end
    of its prefill, and its answer's full blocks when it finishes): the request hands the block over and keeps
    it pinned while it runs. Unpinned entries stay cached until the pool needs room, then the least recently
    released goes first (vLLM's free-block queue: LRU of unreferenced blocks)."""

    def __init__(self, pool: KvBlockPool, block_tokens: int):
        self.pool = pool
        self.block_tokens = block_tokens
        self.blocks_per_entry = pool.blocks_for(block_tokens)
        self.users: dict[int, int] = {}  # hash -> running requests using the entry
        self.unused: OrderedDict[int, None] = OrderedDict()  # entries nobody uses, least recently released first
        self.on_evict: Callable[[int], None] | None = None  # told of each entry evicted (a host tier keeps it)

    def __contains__(self, h: int) -> bool:
        return h in self.users

    def match(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of `hashes` are cached."""
        return leading(hashes, self.users)

    def pin(self, hashes: Sequence[int]) -> None:
        for h in hashes:
            if self.users[h] == 0:
                del self.unused[h]
            self.users[h] += 1

    def unpin(self, hashes: Sequence[int]) -> None:
        for h in hashes:
            if h in self.users:
                self.users[h] -= 1
                if self.users[h] == 0:
                    self.unused[h] = None  # most recently released: evicted last

    def make_room(self, blocks: int) -> bool:
        """Evict unused entries, least recently released first, until `blocks` blocks are free; False if they
        cannot be."""
        while not self.pool.can_allocate(blocks) and self.unused:
            h, _ = self.unused.popitem(last=False)
            del self.users[h]
            self.pool.free(("prefix", h))
            if self.on_evict is not None:
                self.on_evict(h)
        return self.pool.can_allocate(blocks)

    def adopt(self, rid: int, hashes: Sequence[int]) -> list[int]:
        """Take over the blocks of `hashes` that request `rid` has written and holds, as entries it pins; a
        block cached already (another request wrote the same content meanwhile) stays the request's own.
        Returns the hashes adopted."""
        adopted = []
        for h in hashes:
            if h in self.users or self.pool.held.get(rid, 0) < self.blocks_per_entry:
                continue
            self.pool.held[rid] -= self.blocks_per_entry
            self.pool.held[("prefix", h)] = self.blocks_per_entry
            self.users[h] = 1
            adopted.append(h)
        return adopted

    def entries(self) -> int:
        return len(self.users)


def leading(hashes: Sequence[int], held: Container[int]) -> int:
    """How many of `hashes`, from the first, are in `held` (a prompt's blocks are reusable up to the first
    one missing)."""
    n = 0
    while n < len(hashes) and hashes[n] in held:
        n += 1
    return n
