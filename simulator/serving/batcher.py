"""Continuous (iteration-level) batching: which requests run in the next forward pass of a replica.

Admission reserves KV blocks for a request's prompt and all its output tokens (TensorRT-LLM's
"guaranteed no evict" policy), so a running request is never preempted; the KV capacity therefore bounds
the batch. Decode bookkeeping is O(1) per iteration: every decoding request gains one token per iteration,
so a request that starts decoding at step s with n tokens to go finishes at step s + n, kept in a heap.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from simulator.config.schema import ContinuousBatcher
from simulator.hardware.roofline import BatchShape
from simulator.serving.kv_cache import KvBlockPool


@dataclass
class Batch:
    """One iteration's work: its shape for the cost model and the prefill chunks it advances."""
    shape: BatchShape
    chunks: list[tuple[list[int], int]] = field(default_factory=list)  # ([rid, done], tokens)

    @property
    def size(self) -> int:
        return self.shape.decode_tokens + len(self.chunks)


class ContinuousBatching:
    """State of one replica's scheduler. Request lengths are indexed by request id."""

    def __init__(self, cfg: ContinuousBatcher, kv: KvBlockPool, prompt_tokens: list[int],
                 output_tokens: list[int], max_context: int | None):
        self.cfg = cfg
        self.kv = kv
        self.prompt = prompt_tokens
        self.output = output_tokens
        self.max_context = max_context
        self.waiting: deque[int] = deque()
        self.prefilling: list[list[int]] = []   # [rid, prompt tokens done], in admission order
        self.decode_heap: list[tuple[int, int]] = []  # (step at which it finishes, rid)
        self.decode_context = 0                 # sum of contexts the next decode iteration attends
        self.step = 0                           # decode iterations run so far
        self.admitted: list[int] = []
        self.dropped: list[tuple[int, str]] = []

    @property
    def running(self) -> int:
        return len(self.prefilling) + len(self.decode_heap)

    def enqueue(self, rid: int) -> None:
        self.waiting.append(rid)

    def _admit(self) -> None:
        while self.waiting and self.running < self.cfg.max_batch_size:
            rid = self.waiting[0]
            tokens = self.prompt[rid] + self.output[rid]
            blocks = self.kv.blocks_for(tokens)
            reason = self._never_fits(rid, tokens, blocks)
            if reason:
                self.waiting.popleft()
                self.dropped.append((rid, reason))
                continue
            if not self.kv.can_allocate(blocks):
                return  # first come, first served: wait for blocks to free
            self.waiting.popleft()
            self.kv.allocate(rid, blocks)
            self.prefilling.append([rid, 0])
            self.admitted.append(rid)

    def _never_fits(self, rid: int, tokens: int, blocks: int) -> str:
        if self.max_context and tokens > self.max_context:
            return "context"
        if blocks > self.kv.capacity_blocks:
            return "kv_capacity"
        if not self.cfg.chunked_prefill and self.prompt[rid] > self.cfg.max_batched_tokens:
            return "token_budget"
        return ""

    def schedule(self) -> Batch | None:
        """The next iteration's batch, or None when there is nothing to run."""
        self._admit()
        n_decode = len(self.decode_heap)
        if self.cfg.chunked_prefill:
            budget = self.cfg.max_batched_tokens - n_decode
        else:  # vLLM without chunking: whole prompts in prefill-only iterations, which pause decodes
            budget = self.cfg.max_batched_tokens if self.prefilling else 0
            if self.prefilling:
                n_decode = 0
        chunks = []
        new = pairs = kv_read = logits = 0
        for entry in self.prefilling:
            if budget <= 0:
                break
            rid, done = entry
            remaining = self.prompt[rid] - done
            if not self.cfg.chunked_prefill and remaining > budget:
                break
            n = min(remaining, budget)
            chunks.append((entry, n))
            new += n
            pairs += n * done + n * (n + 1) // 2
            kv_read += done
            budget -= n
            logits += n == remaining
        if not chunks and not n_decode:
            return None
        decode_context = self.decode_context if n_decode else 0
        shape = BatchShape(new, pairs, kv_read, n_decode, decode_context, logits + n_decode)
        return Batch(shape, chunks)

    def complete(self, batch: Batch) -> tuple[list[int], list[int]]:
        """Apply a finished iteration: (requests that got their first token, requests that finished)."""
        first: list[int] = []
        finished: list[int] = []
        if batch.shape.decode_tokens:
            self.step += 1
            self.decode_context += len(self.decode_heap)
            while self.decode_heap and self.decode_heap[0][0] <= self.step:
                _, rid = heapq.heappop(self.decode_heap)
                self.decode_context -= self.prompt[rid] + self.output[rid]
                self.kv.free(rid)
                finished.append(rid)
        completed_prefill = False
        for entry, n in batch.chunks:
            entry[1] += n
            rid = entry[0]
            if entry[1] == self.prompt[rid]:
                completed_prefill = True
                first.append(rid)
                if self.output[rid] == 1:
                    self.kv.free(rid)
                    finished.append(rid)
                else:
                    heapq.heappush(self.decode_heap, (self.step + self.output[rid] - 1, rid))
                    self.decode_context += self.prompt[rid] + 1
        if completed_prefill:
            self.prefilling = [e for e in self.prefilling if e[1] < self.prompt[e[0]]]
        return first, finished

    def take_admitted(self) -> list[int]:
        admitted, self.admitted = self.admitted, []
        return admitted

    def take_dropped(self) -> list[tuple[int, str]]:
        dropped, self.dropped = self.dropped, []
        return dropped
