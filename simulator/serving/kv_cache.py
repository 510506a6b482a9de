"""Paged KV-cache: a pool of fixed-size blocks per replica, with exact block (and so byte) accounting."""

from __future__ import annotations


class KvBlockPool:
    """Blocks of `block_tokens` tokens; a request holds whole blocks from admission until it finishes."""

    def __init__(self, capacity_blocks: int, block_tokens: int, bytes_per_block: float):
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.bytes_per_block = bytes_per_block
        self.used_blocks = 0
        self.peak_blocks = 0
        self.held: dict[int | tuple, int] = {}  # request id (or ("prefix", hash) for cached blocks) -> blocks

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_tokens)

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
    """Blocks of shared prompt prefixes kept in the KV pool after their requests finish (vLLM's automatic
    prefix caching). Entries are whole hashed blocks of `block_tokens` tokens (Mooncake traces: 512); an
    entry in use by a running request is pinned, the others are evicted least recently used first whenever
    the pool needs room."""

    def __init__(self, pool: KvBlockPool, block_tokens: int):
        self.pool = pool
        self.block_tokens = block_tokens
        self.blocks_per_entry = pool.blocks_for(block_tokens)
        self.entries: dict[int, int] = {}  # hash -> requests using it, least recently used first

    def match(self, hashes: tuple[int, ...]) -> int:
        """How many leading blocks of `hashes` are cached."""
        n = 0
        while n < len(hashes) and hashes[n] in self.entries:
            n += 1
        return n

    def pin(self, hashes: tuple[int, ...]) -> None:
        for h in hashes:
            self.entries[h] = self.entries.pop(h) + 1  # and now most recently used

    def unpin(self, hashes: tuple[int, ...]) -> None:
        for h in hashes:
            if h in self.entries:
                self.entries[h] -= 1

    def make_room(self, blocks: int) -> bool:
        """Evict unpinned entries, oldest first, until `blocks` blocks are free; False if they cannot be."""
        for h in [h for h, users in self.entries.items() if users == 0]:
            if self.pool.can_allocate(blocks):
                break
            del self.entries[h]
            self.pool.free(("prefix", h))
        return self.pool.can_allocate(blocks)

    def insert(self, hashes: tuple[int, ...]) -> None:
        """Keep the blocks of a finished prompt's full hashed blocks, room permitting."""
        for h in hashes:
            if h in self.entries:
                self.entries[h] = self.entries.pop(h)
            elif self.make_room(self.blocks_per_entry):
                self.pool.allocate(("prefix", h), self.blocks_per_entry)
                self.entries[h] = 0
