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
        self.held: dict[int, int] = {}

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_tokens)

    def can_allocate(self, blocks: int) -> bool:
        return self.used_blocks + blocks <= self.capacity_blocks

    def allocate(self, rid: int, blocks: int) -> None:
        if not self.can_allocate(blocks):
            raise RuntimeError(f"KV pool over capacity: {self.used_blocks} + {blocks} > {self.capacity_blocks}")
        self.held[rid] = self.held.get(rid, 0) + blocks
        self.used_blocks += blocks
        self.peak_blocks = max(self.peak_blocks, self.used_blocks)

    def free(self, rid: int) -> None:
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
