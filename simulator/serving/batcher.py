"""Continuous (iteration-level) batching: which requests run in the next forward pass of a replica.

Two KV-cache policies (`kv_policy`):
- reserve (TensorRT-LLM's "guaranteed no evict"): admission reserves blocks for the prompt and every output
  token, so nothing is ever preempted and the KV capacity bounds the batch.
- paged (vLLM): admission takes blocks for the prompt; a decoding request takes one more block whenever its
  context crosses a block boundary. When no block is free, the most recently admitted running request is
  preempted: its blocks are freed and it later either recomputes its prompt and generated tokens
  (`preemption: recompute`) or has its KV-cache copied to host memory over PCIe and back (`swap`).

Priority: decode_first puts every decoding request in the iteration and fills the rest of the token
budget with prefill (Sarathi, vLLM with chunked prefill); prefill_first runs prefill-only iterations while
prompts wait, pausing decodes (vLLM without chunking). Static batching (kind: static) admits a new batch only
when the replica is empty.

Decode bookkeeping stays O(1) per iteration (plus the requests crossing a block boundary): every decoding
request gains one token per iteration, so a request's finish and its next block boundary are decode-step
numbers, kept in heaps; entries of preempted requests go stale and are skipped.

Sliding-window layers (`window`, a `sliding_share` of the layers): a decode attends, averaged over the layers,
e(c) = c - share x max(0, c - window) positions of its context c, and the batch's `decode_context` is the sum
of e(c) (what attention reads and multiplies); a request's e grows by one token per step until its context
reaches the window, then by 1 - share: that step is a third heap. The KV pool frees the blocks that slide out
of the window (`KvBlockPool.blocks_for`), so a decoding request takes fewer blocks at each boundary.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from simulator.config.serving import ContinuousBatcher, StaticBatcher
from simulator.hardware.roofline import BatchShape
from simulator.serving.kv_cache import KvBlockPool, PrefixCache
from simulator.serving.kv_offload import HostKvTier
from simulator.serving.speculation import Speculation


@dataclass
class Batch:
    """One iteration's work: its shape for the cost model, the prefill chunks it advances, and the KV-cache
    bytes it copies to and from host memory first."""
    shape: BatchShape
    chunks: list[tuple[list[int], int]] = field(default_factory=list)  # ([rid, done, target], tokens)
    swap_out_bytes: float = 0.0
    swap_in_bytes: float = 0.0
    output_tokens: float = 0.0  # tokens it produces (expected, under speculative decoding)
    size: int = field(init=False)  # requests it advances (read often: computed once)

    def __post_init__(self) -> None:
        # a batch's own shape counts whole requests (only `split` micro-batch shapes are fractional)
        self.size = cast(int, self.shape.decode_tokens) + len(self.chunks)


class ContinuousBatching:
    """State of one replica's scheduler. Request lengths are indexed by request id."""

    def __init__(self, cfg: ContinuousBatcher | StaticBatcher, kv: KvBlockPool, prompt_tokens: Sequence[int],
                 output_tokens: Sequence[int], max_context: int | None,
                 prefix_hashes: Sequence[tuple[int, ...]] | None = None, prefix_block_tokens: int = 512,
                 full_output_tokens: Sequence[int] | None = None, speculative: Speculation | None = None,
                 answer_blocks: bool = False, window: int = 0, sliding_share: float = 0.0,
                 host: HostKvTier | None = None):
        """`prefix_hashes`: each request's prefix block hashes, for a prefix cache (None: no caching);
        `answer_blocks`: they name the answer's blocks too, cached when it finishes (multi-turn chat);
        `window`, `sliding_share`: the sliding-window layers' window and their share of the layers;
        `host`: a host-DRAM KV tier (serving/kv_offload.py) that bounds swap and keeps evicted prefix blocks."""
        self.cfg = cfg
        self.kv = kv
        self.paged = cfg.kv_policy == "paged"
        self.static = cfg.kind == "static"
        self.prefill_first = (cfg.priority or ("decode_first" if cfg.chunked_prefill else "prefill_first")) \
            == "prefill_first"
        self.enqueued_at: dict[int, float] = {}
        self.wake_at: float | None = None  # static batching: when the oldest waiting request's wait runs out
        self.prompt = prompt_tokens
        self.output = output_tokens
        # a prefill-only replica checks limits with these
        self.full_output = output_tokens if full_output_tokens is None else full_output_tokens
        self.speculation = speculative
        self.growth = speculative.expected_tokens if speculative else 1.0  # tokens per request per decode step
        self.max_context = max_context
        self.waiting: deque[int] = deque()
        self.running: dict[int, None] = {}      # admitted and not finished, in admission order
        self.prefilling: list[list[int]] = []   # [rid, tokens done, tokens to compute]
        self.decoding: dict[int, tuple[int, int, int, int]] = {}  # rid -> (join step, context then,
        #                                                             generated then, step it finishes at)
        self.decode_heap: list[tuple[int, int]] = []  # (step at which it finishes, rid)
        self.block_heap: list[tuple[int, int]] = []   # (step at which it needs another block, rid)
        self.decode_context: float = 0          # sum of contexts the next decode iteration attends
        # sliding-window layers: the window, their share of the layers, each decoding request's attended
        # context as (step, e(c) then, its growth per step, the step its context reaches the window or -1)
        self.window = window if sliding_share > 0 else 0
        self.sliding_share = sliding_share
        self.attended: dict[int, tuple[int, float, float, int]] = {}
        self.window_heap: list[tuple[int, int]] = []  # (step at which its context reaches the window, rid)
        self.attended_growth = 0.0              # sum of the decoding requests' growth of e per step
        self.span: dict[int, int] = {}          # rid -> tokens its own KV blocks cover (paged)
        self.step = 0                           # decode iterations run so far
        self.generated_before: dict[int, int] = {}  # tokens generated before a recompute preemption
        self.swapped: dict[int, tuple[int, int, int]] = {}  # rid -> (context, generated, blocks in host memory)
        self.swap_out = self.swap_in = 0.0
        self.watermark = max(1, kv.capacity_blocks // 100) if self.paged else 0
        self.admitted: list[int] = []
        self.dropped: list[tuple[int, str]] = []
        self.preempted: list[int] = []
        # prefix caching: when the workload names its prompts' blocks (Mooncake hash_ids, shared_prefix)
        self.prefix_hashes = prefix_hashes
        self.prefix = PrefixCache(kv, prefix_block_tokens) if prefix_hashes is not None else None
        self.host = host
        self.host_lookup: tuple[Sequence[int], int] = ((), 0)  # _prefix_hit: host entries to reload, blocks missed
        if host is not None and self.prefix is not None:
            self.prefix.on_evict = self._offload
        self.answer_blocks = answer_blocks
        self.pinned: dict[int, tuple[int, ...]] = {}  # rid -> cached prefix blocks it reuses
        self.cached_tokens: dict[int, int] = {}  # rid -> prompt tokens those blocks cover
        self.hits: list[tuple[int, int]] = []  # (rid, prompt tokens served from the prefix cache)
        self.drafts: dict[int, tuple[int, int]] = {}  # speculation: rid -> (tokens drafted, accepted) planned
        self.speculated: list[tuple[int, int, int]] = []  # (rid, drafted, accepted) of finished requests

    def enqueue(self, rid: int, now: float = 0.0) -> None:
        self.waiting.append(rid)
        self.enqueued_at[rid] = now

    def accept(self, rid: int, context: int, generated: int) -> str:
        """Queue a request whose KV-cache (`context` tokens) was prefilled elsewhere (disaggregation): it
        decodes without a prefill. Returns '' or why it can never fit here."""
        reason = self._never_fits(rid)
        if reason:
            return reason
        self.swapped[rid] = (context, generated, 0)  # like a swapped-out request, with nothing to copy back
        self.waiting.append(rid)
        return ""

    # ------------------------------------------------------------ admission

    def _static_gate(self, now: float) -> bool:
        """Static batching: may a new batch start now? If not, note when it may."""
        self.wake_at = None
        if self.running or not self.waiting:
            return False
        assert isinstance(self.cfg, StaticBatcher)  # only static batching gates (`self.static`)
        deadline = self.enqueued_at[self.waiting[0]] + self.cfg.max_wait
        if len(self.waiting) >= self.cfg.max_batch_size or now >= deadline:
            return True
        self.wake_at = deadline
        return False

    def _admit(self, now: float) -> None:
        if self.static and not self._static_gate(now):
            return
        while self.waiting and len(self.running) < self.cfg.max_batch_size:
            rid = self.waiting[0]
            reason = "" if rid in self.swapped else self._never_fits(rid)
            if reason:
                self.waiting.popleft()
                self.generated_before.pop(rid, None)
                self.dropped.append((rid, reason))
                continue
            hit, cached = self._prefix_hit(rid)
            own_hit = min(len(cached) * self.prefix.block_tokens, hit) if self.prefix is not None else 0
            blocks = self._blocks_to_admit(rid, own_hit)  # reloaded blocks are its own, like computed ones
            if self.prefix is not None:
                self.prefix.pin(cached)  # before making room, so that its own prefix is not evicted
                self.prefix.make_room(blocks + self.watermark)
            if self.kv.used_blocks + blocks + self.watermark > self.kv.capacity_blocks:
                if self.prefix is not None:
                    self.prefix.unpin(cached)
                return  # first come, first served: wait for blocks to free
            if cached:
                self.pinned[rid] = cached
                self.cached_tokens[rid] = own_hit
            if hit:
                self.hits.append((rid, hit))
            if self.host is not None and self.prefix is not None and rid not in self.swapped:
                # read back from the host tier before the iteration computes
                self.swap_in += self.host.reload(*self.host_lookup)
            self.waiting.popleft()
            self.enqueued_at.pop(rid, None)
            self.kv.allocate(rid, blocks)
            self.span[rid] = -(-self._tokens_to_admit(rid, own_hit) // self.kv.block_tokens) * self.kv.block_tokens
            self.running[rid] = None
            if rid in self.swapped:
                context, generated, in_host = self.swapped.pop(rid)
                self.swap_in += in_host * self.kv.bytes_per_block  # a block it still lacked comes fresh
                if self.host is not None:
                    self.host.release_swap(rid)
                self._join(rid, context, generated)
            else:
                target = self.prompt[rid] + self.generated_before.get(rid, 0)
                self.prefilling.append([rid, hit, target])
                self.admitted.append(rid)

    def _prefix_hit(self, rid: int) -> tuple[int, tuple[int, ...]]:
        """(prompt tokens whose KV-cache is cached already, the blocks cached in HBM) for a request about to
        be admitted fresh: HBM's entries first, then the host tier's that follow them (`host_lookup`: those
        to reload and the prompt blocks in neither tier); at least the prompt's last token is always computed,
        to produce the first token."""
        self.host_lookup = ((), 0)
        if self.prefix is None or rid in self.swapped or rid in self.generated_before:
            return 0, ()
        assert self.prefix_hashes is not None  # set whenever self.prefix is
        hashes = self.prefix_hashes[rid][: -(-self.prompt[rid] // self.prefix.block_tokens)]
        n = self.prefix.match(hashes)
        while n and self._footprint(rid, n) + self.watermark > self.kv.capacity_blocks:
            n -= 1  # the pinned entries and its own blocks could never be held together: reuse fewer
        block = self.prefix.block_tokens
        m = self.host.match(hashes[n:]) if self.host is not None else 0
        hit = min((n + m) * block, self.prompt[rid] - 1)
        m = max(0, -(-hit // block) - n) if m else 0  # the entries the hit uses
        self.host_lookup = (hashes[n:n + m], len(hashes) - n - m)
        if self.host is not None:
            self.host.protect(hashes[n:n + m])
        return (hit, hashes[:n]) if hit > 0 else (0, ())

    def _offload(self, h: int) -> None:
        """A prefix entry evicted from HBM goes to the host tier, over the PCIe link with the next iteration."""
        assert self.host is not None and self.prefix is not None
        self.swap_out += self.host.store(h, self.prefix.blocks_per_entry * self.kv.bytes_per_block)

    def _footprint(self, rid: int, entries: int) -> int:
        """Blocks a fresh request holds at its longest when it reuses `entries` cached prefix entries: those
        entries (pinned while it runs; an entry rounds up to whole KV blocks) and its own blocks for the rest."""
        assert self.prefix is not None  # only asked with a prefix cache
        hit = min(entries * self.prefix.block_tokens, self.prompt[rid] - 1)
        own = self.kv.blocks_for(self.prompt[rid] + self.output[rid] - hit)
        return entries * self.prefix.blocks_per_entry + own

    def _tokens_to_admit(self, rid: int, cached: int = 0) -> int:
        """Tokens a request takes blocks for at admission, beyond the `cached` prompt tokens the prefix cache
        holds."""
        if rid in self.swapped:
            return self.swapped[rid][0]
        if not self.paged:
            return self.prompt[rid] + self.output[rid] - cached
        return self.prompt[rid] + self.generated_before.get(rid, 0) + 1 - cached

    def _blocks_to_admit(self, rid: int, cached: int = 0) -> int:
        """Blocks a request takes at admission, beyond the `cached` prompt tokens the prefix cache holds."""
        return self.kv.blocks_for(self._tokens_to_admit(rid, cached))

    def _never_fits(self, rid: int) -> str:
        if self.max_context and self.prompt[rid] + self.full_output[rid] > self.max_context:
            return "context"
        tokens = self.prompt[rid] + self.output[rid]
        if self.kv.blocks_for(tokens) + self.watermark > self.kv.capacity_blocks:
            return "kv_capacity"
        # a request preempted by recompute prefills its output so far too: without chunking, a prefill beyond the
        # step's token budget could never be scheduled (vLLM ignores such a sequence, as it does a long prompt)
        if not self.cfg.chunked_prefill and \
                self.prompt[rid] + self.generated_before.get(rid, 0) > self.cfg.max_batched_tokens:
            return "token_budget"
        return ""

    # ------------------------------------------------------------ decode state

    def _context(self, rid: int) -> float:
        join, context, _, _ = self.decoding[rid]
        return context + self.growth * (self.step - join)

    def _join(self, rid: int, context: int, generated: int) -> None:
        """Start (or resume) decoding: `context` tokens in the KV-cache, `generated` output tokens so far."""
        remaining = self.output[rid] - generated
        steps = remaining
        if self.speculation:
            steps, accepted = self.speculation.plan(remaining)
            self.drafts[rid] = (steps * self.speculation.tokens, accepted)
        # the finish step is stored with the state, so that stale heap entries can be recognised
        self.decoding[rid] = (self.step, context, generated, self.step + steps)
        heapq.heappush(self.decode_heap, (self.step + steps, rid))
        if self.window:
            self._attend(rid, context)
        else:
            self.decode_context += context
        if self.paged:
            self._push_block_need(rid)

    def _attend(self, rid: int, context: float) -> None:
        """Start counting a decoding request's attended context e(c) (sliding-window layers)."""
        share, window = self.sliding_share, self.window
        if context < window:
            reach = self.step + math.ceil((window - context) / self.growth)
            heapq.heappush(self.window_heap, (reach, rid))
            state = (self.step, float(context), self.growth, reach)
        else:
            state = (self.step, context - share * (context - window), self.growth * (1.0 - share), -1)
        self.attended[rid] = state
        self.decode_context += state[1]
        self.attended_growth += state[2]

    def _unattend(self, rid: int) -> None:
        """Stop counting a request's attended context (it finishes or is preempted)."""
        step, attended, growth, _ = self.attended.pop(rid)
        self.decode_context -= attended + growth * (self.step - step)
        self.attended_growth -= growth
        if not self.attended:  # no rounding left over
            self.decode_context = self.attended_growth = 0.0

    def _slide(self) -> None:
        """Requests whose context has reached the window: from now on their attended context grows by
        1 - share per token (their sliding layers attend the window only)."""
        while self.window_heap and self.window_heap[0][0] <= self.step:
            reach, rid = heapq.heappop(self.window_heap)
            state = self.attended.get(rid)
            if state is None or state[3] != reach:
                continue  # stale: finished or preempted since
            self._unattend(rid)
            self._attend(rid, self._context(rid))

    def _push_block_need(self, rid: int) -> None:
        join, context, _, _ = self.decoding[rid]
        covered = self.span[rid] + self.cached_tokens.get(rid, 0)
        heapq.heappush(self.block_heap, (join + covered - context + 1, rid))

    def _grow(self) -> None:
        """Give a block to every decoding request whose context is about to cross a block boundary,
        preempting the most recently admitted requests while none is free."""
        if not (self.block_heap and self.block_heap[0][0] <= self.step):
            return
        if not self.kv.sliding and self._grow_through_full(self.step, [])[0] > self.step:
            return  # every block due was free (taken as below, in the same order)
        while self.block_heap and self.block_heap[0][0] <= self.step:
            _, rid = heapq.heappop(self.block_heap)
            if rid not in self.decoding:
                continue  # preempted or finished since
            need = self._block_need(rid)
            while not self.kv.can_allocate(need) and rid in self.running:
                if self.prefix is not None and self.prefix.make_room(need):
                    break  # an unused cached block made room: nobody is preempted
                self._preempt(next(reversed(self.running)))
            if rid in self.decoding:
                self._take_blocks(rid, need)

    def _block_need(self, rid: int) -> int:
        """Pool blocks a decoding request takes as its context crosses the next block boundary (sliding
        groups past their window: none)."""
        span = self.span[rid]
        return self.kv.blocks_for(span + 1) - self.kv.blocks_for(span)

    def _take_blocks(self, rid: int, need: int) -> None:
        """Give `rid` the `need` blocks of its next token block and schedule the boundary after it."""
        if need:
            self.kv.allocate(rid, need)
        self.span[rid] += self.kv.block_tokens
        self._push_block_need(rid)

    def _preempt(self, rid: int) -> None:
        del self.running[rid]
        if rid in self.decoding:
            join, context, generated, _ = self.decoding.pop(rid)
            now_context = context + self.step - join
            if self.window:
                self._unattend(rid)
            else:
                self.decode_context -= now_context
            now_generated = generated + self.step - join
            nbytes = self.kv.held[rid] * self.kv.bytes_per_block
            if self.cfg.preemption == "swap" and (self.host is None or self.host.hold_swap(rid, nbytes)):
                self.swapped[rid] = (now_context, now_generated, self.kv.held[rid])
                self.swap_out += nbytes
            else:  # recompute, or no room left in the host tier
                self.generated_before[rid] = now_generated
        else:  # caught mid-prefill: its partial KV-cache is simply dropped
            self.prefilling = [e for e in self.prefilling if e[0] != rid]
        self.kv.free(rid)
        self.span.pop(rid, None)
        self._release_prefix(rid)
        self.waiting.appendleft(rid)
        self.preempted.append(rid)

    # ------------------------------------------------------------ iterations

    def schedule(self, now: float = 0.0) -> Batch | None:
        """The next iteration's batch, or None when there is nothing to run (see `wake_at`)."""
        if self.paged:
            self._grow()
        if self.window_heap:
            self._slide()
        if self.waiting:
            self._admit(now)
        elif self.static:
            self.wake_at = None  # as _static_gate says when nothing waits
        n_decode = len(self.decoding)
        if self.prefill_first and self.prefilling:  # prefill-only iteration: decodes wait
            n_decode = 0
        budget = self.cfg.max_batched_tokens - n_decode
        chunks = []
        new = pairs = kv_read = logits = 0
        for entry in self.prefilling:
            if budget <= 0:
                break
            _, done, target = entry
            remaining = target - done
            if not self.cfg.chunked_prefill and remaining > budget:
                break
            n = min(remaining, budget)
            chunks.append((entry, n))
            new += n
            pairs += n * done + n * (n + 1) // 2
            kv_read += done
            budget -= n
            logits += n == remaining
        swap_out, swap_in = self.swap_out, self.swap_in
        self.swap_out = self.swap_in = 0.0
        if not chunks and not n_decode and not swap_out and not swap_in:
            return None
        return self._batch(chunks, new, pairs, kv_read, logits, n_decode, swap_out, swap_in)

    def _batch(self, chunks: list, new: int, pairs: int, kv_read: int, logits: int, n_decode: int,
               swap_out: float = 0.0, swap_in: float = 0.0) -> Batch:
        decode_context = self.decode_context if n_decode else 0
        drafted = self.speculation.tokens if self.speculation and n_decode else 0
        # each drafted token is scored too and attends (about) its request's context
        shape = BatchShape(new, pairs, kv_read, n_decode, decode_context, logits + n_decode * (1 + drafted),
                           n_decode * drafted, drafted * decode_context)
        return Batch(shape, chunks, swap_out, swap_in, logits + n_decode * self.growth)

    # ------------------------------------------------------------ steady decoding (run-ahead)

    def steady_steps(self, batch: Batch) -> int:
        """How many decode iterations, from `batch` (just scheduled) on, complete while changing nothing but the
        decoding requests' contexts: no prefill chunk, no swap, nobody finishing (a stale heap entry counts,
        conservatively), no KV block due before the next one. Waiting requests that were not admitted stay
        blocked meanwhile: nothing frees a slot or a block. 0 when `batch` is not such an iteration."""
        if batch.chunks or batch.swap_out_bytes or batch.swap_in_bytes or self.prefilling \
                or not batch.shape.decode_tokens or self.swap_out or self.swap_in:
            return 0
        steps = self.decode_heap[0][0] - self.step - 1 if self.decode_heap else 0
        if self.paged and self.block_heap:
            steps = min(steps, self.block_heap[0][0] - self.step)
        if self.window_heap:
            steps = min(steps, self.window_heap[0][0] - self.step)
        return max(steps, 0)

    def steady_span(self, batch: Batch) -> int:
        """As `steady_steps`, but KV block boundaries do not end the span: the blocks decoding requests need
        meanwhile are taken by `grow_through` as long as they are free (nothing else changes the batch)."""
        if batch.chunks or batch.swap_out_bytes or batch.swap_in_bytes or self.prefilling \
                or not batch.shape.decode_tokens or self.swap_out or self.swap_in:
            return 0
        return max(self.decode_heap[0][0] - self.step - 1, 0) if self.decode_heap else 0

    def finishes_after_span(self, steps: int) -> bool:
        """After `steps` steady iterations (see `steady_span`), is the next one the same decode batch, whose
        completion finishes requests?"""
        return bool(self.decode_heap) and self.decode_heap[0][0] == self.step + steps + 1

    def grow_through(self, last: int) -> tuple[int, list[int]]:
        """Take the blocks that the schedules of decode steps up to `last` would give (`_grow` at each step,
        in the same order; those of steps before `self.step` are done), while one is free: stops at the first
        block that would need a preemption or an eviction (the schedule of that step does the rest). Returns
        (the first step whose growth is not complete, `last` + 1 when none; the step of each block taken)."""
        heap, kv, decoding = self.block_heap, self.kv, self.decoding
        steps: list[int] = []
        if not kv.sliding:
            return self._grow_through_full(last, steps)
        while heap and heap[0][0] <= last:
            due, rid = heap[0]
            if rid in decoding:
                at = max(due, self.step)  # the schedule of that step pops it (those before are done)
                need = self._block_need(rid)
                if not kv.can_allocate(need):
                    return at, steps
                heapq.heappop(heap)
                self._take_blocks(rid, need)
                steps.extend([at] * need)
            else:
                heapq.heappop(heap)  # preempted or finished since
        return last + 1, steps

    def _grow_through_full(self, last: int, steps: list[int]) -> tuple[int, list[int]]:
        """grow_through without sliding layers (a block covers every layer), the hot path of long decodes:
        `_block_need`, `_take_blocks` (`kv.allocate`) and `_push_block_need` unrolled, the same integers."""
        heap, kv, decoding, span, cached = self.block_heap, self.kv, self.decoding, self.span, self.cached_tokens
        held, bt, capacity, step = kv.held, kv.block_tokens, kv.capacity_blocks, self.step
        pop, replace = heapq.heappop, heapq.heapreplace
        while heap and heap[0][0] <= last:
            due, rid = heap[0]
            entry = decoding.get(rid)
            if entry is None:
                pop(heap)  # preempted or finished since
                continue
            at = max(due, step)  # the schedule of that step pops it (those before are done)
            covered = span[rid]
            need = -(-(covered + 1) // bt) - -(-covered // bt)
            if kv.used_blocks + need > capacity:
                return at, steps
            if need:
                held[rid] = held.get(rid, 0) + need
                kv.used_blocks += need
                if kv.used_blocks > kv.peak_blocks:
                    kv.peak_blocks = kv.used_blocks
                steps.extend([at] * need)
            covered += bt
            span[rid] = covered
            join, context = entry[0], entry[1]
            # pop this entry and push its next boundary in one step (the heap yields the same entries after)
            replace(heap, (join + (covered + cached.get(rid, 0)) - context + 1, rid))
        return last + 1, steps

    def finishes_after_steady(self, steps: int) -> bool:
        """After `steps` steady iterations (see `steady_steps`), is the next one the same decode batch, whose
        completion finishes requests (no KV block due before it)?"""
        if not self.decode_heap or self.decode_heap[0][0] != self.step + steps + 1:
            return False
        if self.window_heap and self.window_heap[0][0] <= self.step + steps:
            return False
        return not (self.paged and self.block_heap and self.block_heap[0][0] <= self.step + steps)

    def may_finish(self, batch: Batch) -> bool:
        """Could completing `batch` finish a request (a stale heap entry counts, conservatively)?"""
        if batch.shape.decode_tokens and self.decode_heap and self.decode_heap[0][0] <= self.step + 1:
            return True
        return any(entry[1] + n >= entry[2] and self.generated_before.get(entry[0], 0) + 1 >= self.output[entry[0]]
                   for entry, n in batch.chunks)

    def advance_steady(self) -> float:
        """Complete one of the `steady_steps` iterations (exactly as `complete` would): every decoding request
        gains a token. Returns the decode context of the next iteration."""
        self.step += 1
        self.decode_context += self.attended_growth if self.window else self.growth * len(self.decoding)
        return self.decode_context

    def steady_shape(self, shape: BatchShape, context: float) -> BatchShape:
        """The shape of a steady decode iteration like `shape` at decode context `context`, as `schedule`
        would build it."""
        drafted = self.speculation.tokens if self.speculation else 0
        return BatchShape(0, 0, 0, shape.decode_tokens, context, shape.logits, shape.verify_tokens,
                          drafted * context)

    def complete(self, batch: Batch) -> tuple[list[int], list[int]]:
        """Apply a finished iteration: (requests that got their first token, requests that finished)."""
        first: list[int] = []
        finished: list[int] = []
        if batch.shape.decode_tokens:
            self.step += 1
            self.decode_context += self.attended_growth if self.window else self.growth * len(self.decoding)
            while self.decode_heap and self.decode_heap[0][0] <= self.step:
                end, rid = heapq.heappop(self.decode_heap)
                state = self.decoding.get(rid)
                if state is None or state[3] != end:
                    continue  # stale: preempted (and perhaps resumed) since
                if self.window:
                    self._unattend(rid)
                else:
                    self.decode_context -= self._context(rid)
                del self.decoding[rid]
                self._finish(rid, finished)
        completed = False
        for entry, n in batch.chunks:
            entry[1] += n
            rid, done, target = entry
            self._cache_written(rid, done)  # the full blocks this chunk wrote are reusable from now on
            if done < target:
                continue
            completed = True
            generated = self.generated_before.pop(rid, 0) + 1  # the prefill's last position yields a token
            if generated == 1:
                first.append(rid)
            if generated >= self.output[rid]:
                self._finish(rid, finished)
            else:
                self._join(rid, target + 1, generated)
        if completed:
            self.prefilling = [e for e in self.prefilling if e[1] < e[2]]
        return first, finished

    def _finish(self, rid: int, finished: list[int]) -> None:
        del self.running[rid]
        if self.answer_blocks:  # the answer's full blocks too (the last token's KV is never written)
            self._cache_written(rid, self.prompt[rid] + self.output[rid] - 1)
        self.kv.free(rid)
        self.span.pop(rid, None)
        self._release_prefix(rid)
        if rid in self.drafts:
            self.speculated.append((rid, *self.drafts.pop(rid)))
        finished.append(rid)

    def _cache_written(self, rid: int, tokens: int) -> None:
        """Hand the full hashed blocks of the first `tokens` tokens of a request's context, which it has
        written, over to the prefix cache (pinned by it while it runs), so later requests can reuse them."""
        if self.prefix is None:
            return
        assert self.prefix_hashes is not None  # set whenever self.prefix is
        hashes = self.prefix_hashes[rid][: min(tokens, self.prompt[rid] if not self.answer_blocks else tokens)
                                         // self.prefix.block_tokens]
        adopted = self.prefix.adopt(rid, hashes)
        if adopted:  # its span still counts the adopted blocks' tokens: the positions it covers do not move
            self.pinned[rid] = self.pinned.get(rid, ()) + tuple(adopted)

    def _release_prefix(self, rid: int) -> None:
        """Unpin the cached blocks a request reused or wrote: they stay cached, evictable, for later requests."""
        if self.prefix is None:
            return
        self.prefix.unpin(self.pinned.pop(rid, ()))
        self.cached_tokens.pop(rid, None)

    def take_admitted(self) -> list[int]:
        admitted, self.admitted = self.admitted, []
        return admitted

    def take_dropped(self) -> list[tuple[int, str]]:
        dropped, self.dropped = self.dropped, []
        return dropped

    def take_prefix_hits(self) -> list[tuple[int, int]]:
        hits, self.hits = self.hits, []
        return hits

    def take_speculated(self) -> list[tuple[int, int, int]]:
        speculated, self.speculated = self.speculated, []
        return speculated

    def take_preempted(self) -> list[int]:
        preempted, self.preempted = self.preempted, []
        return preempted
