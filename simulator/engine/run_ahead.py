"""Run-ahead: a closed-form replica computes its iterations ahead of the clock, without an event each.

A replica whose links carry only its own traffic (closed form) is a deterministic function of what is
submitted to it, and the only thing ever submitted is an arriving request (no disaggregation). So from any
boundary on, its iterations are certain to happen as computed until the next arrival that may be routed to
it: they are committed at once (timed, recorded, applied with their own times), and the replica sleeps until
the last one ends. An arrival changes nothing in the iteration it lands in (it waits for the next boundary),
so that iteration is committed too; the next schedule then happens at the clock's time, after the arrival.

What else is seen outside the replica limits how far it may go:
- a request finishing (or being dropped) releases its tokens from the router's view and may end the run, so
  such an iteration is committed only if it ends before the next arrival anywhere and more arrivals are to
  come (open loop; in a closed loop a finish releases a user's next request at the clock's time);
- nothing is committed that ends at or after the end of the run (`sim.max_time`);
- iterations that copy KV-cache to host memory (swap) move bytes as flows: the normal path runs them.
Arrivals are processed before any iteration boundary at the same instant (engine/cluster.py), so ties
resolve the same way with and without run-ahead.

Steady decode iterations (the batch changes only by its contexts growing, `batcher.steady_steps`) are the
hot loop of a long run and are committed by an unrolled copy of `ReplicaState.closed_form` + `book` +
`Collector.iteration` that builds no per-iteration objects; so are the other iterations of one-stage
replicas. On one-stage replicas without drafting a whole span is committed at once (`batcher.steady_span`:
from one change of the batch to the next, KV blocks taken on the way), timed as arrays and recorded as one
`DecodeSpan` (results/decode_spans.py). Every iteration is timed with the same float
operations in the same order as with one event per iteration (`Replica.run`, the reference, which
`sim.run_ahead: false` selects); tests/test_run_ahead.py holds the two to identical results.
"""

from __future__ import annotations

import numpy as np

from simulator.engine.iteration import ReplicaState
from simulator.hardware.roofline import ACTIVATION_BYTES, StepCost
from simulator.results.collect import IterationAccount
from simulator.results.decode_spans import DecodeSpan, span_times
from simulator.results.iteration_store import ROW, ROWS_PER_CHUNK
from simulator.serving.batcher import Batch

SHORT_SPAN = 8  # iterations: a span this short is packed as rows, a longer one recorded as a DecodeSpan


def run_ahead(replica: ReplicaState, batch: Batch, now: float) -> tuple[float, Batch | None]:
    """Commit what is certain from `batch` (scheduled at `now`) on. Returns (t, next): the end of the last
    committed iteration (`now` when none was) and the batch to run at t if it was scheduled already (None:
    schedule at t)."""
    batcher = replica.batcher
    assert replica.horizon is not None  # Replica.run runs ahead only replicas with a horizon
    mine, anywhere, stop = replica.horizon()
    effects_ok = replica.early_effects and anywhere < float("inf")  # finishes and drops may be committed
    t = now
    end: float | None
    while True:
        if batch.swap_out_bytes or batch.swap_in_bytes or not batch.size:
            return t, batch
        parts = replica.micro_batches_of(batch)
        # spans time contexts growing by one token per request a step: not with drafting or sliding windows
        spans = (len(replica.stages) == 1 and parts == 1 and replica.drafter is None and batcher.growth == 1.0
                 and not batcher.window)
        steps = batcher.steady_span(batch) if spans else batcher.steady_steps(batch)
        if steps:
            # then the iteration that finishes too, if in time
            finish = effects_ok and spans and batcher.finishes_after_span(steps)
            end, committed = _commit_steady(replica, batch, parts, t, steps, mine, stop,
                                            anywhere if finish else -1.0)
            if not committed:
                return t, batch
            t = end
            if t >= mine or committed < steps or (batcher.waiting and not (effects_ok and t < anywhere)):
                return t, None  # an arrival is due, the end is near, or the next schedule may drop a request
            scheduled = replica.schedule(t)
        else:
            commit = _commit_one_stage if len(replica.stages) == 1 and parts == 1 else _commit_pipelined
            end = commit(replica, batch, parts, t, stop, anywhere if effects_ok else -1.0)
            if end is None:
                return t, batch
            t = end
            if t >= mine or (batcher.waiting and not (effects_ok and t < anywhere)):
                return t, None
            scheduled = replica.schedule(t)
        if scheduled is None:
            return t, None
        batch = scheduled


def _commit_pipelined(replica: ReplicaState, batch: Batch, parts: int, t: float, stop: float,
                      finish_before: float) -> float | None:
    """Commit one iteration of any batch, through ReplicaState.closed_form, book and complete. Returns when it
    ends, or None when it may not be committed (it ends at `stop` or later, or it finishes a request at
    `finish_before` or later)."""
    duration, costs, bookings = replica.timing(batch.shape, parts)
    if duration is None:  # transfers inside the replica would contend: the normal path runs it as flows
        replica.remember(batch.shape, parts, (duration, costs, bookings))
        return None
    end = t + duration
    if end >= stop or (end >= finish_before and replica.batcher.may_finish(batch)):
        replica.remember(batch.shape, parts, (duration, costs, bookings))
        return None
    account = IterationAccount(len(replica.stages), replica.chips)
    replica.book(t, end, parts, costs, bookings, account)
    replica.complete(batch, t, end, account)
    return end


def _commit_one_stage(replica: ReplicaState, batch: Batch, parts: int, t: float, stop: float,
                      finish_before: float) -> float | None:
    """_commit_pipelined for a one-stage replica (`parts` is 1), unrolled with the same float operations as
    _commit_steady_one_stage."""
    batcher, stage, shape = replica.batcher, replica.stages[0], batch.shape
    p = stage.private
    assert p is not None  # a closed-form (private) replica's stages all have private links
    size = shape.tokens * stage.cost_model.model.d_model * ACTIVATION_BYTES
    cost = replica.cost(stage, shape)
    c, m, ov = cost.compute_s, cost.memory_s, cost.overhead_s
    cb, mb = cost.compute_bound_s, cost.memory_bound_s
    ar = p.collective(size)
    coll = ar.s_per_byte * size + ar.latency_s
    xfer = p.send_s_per_byte * size
    duration = cb + mb + ov + coll + xfer + p.send_latency_s
    end = t + duration
    if end >= stop or (end >= finish_before and batcher.may_finish(batch)):
        replica.remember_timing(shape, 1, duration, [cost], size)
        return None
    if ar.carried:
        replica.network.account_private(t, end, ar.carried, size * ar.sent, size)
    if p.send_carried:
        replica.network.account_private(t, end, p.send_carried, size * p.send_sent, size)
    first, finished = batcher.complete(batch)
    duration = end - t  # as recorded after an event: the clock's difference
    net = coll + xfer + p.send_latency_s
    collector = replica.collector
    collector.pending_rows.append(ROW.pack(
        replica.index, t, duration, c, m, cb, mb, net, ov, max(duration - (cb + mb + ov + net), 0.0), cost.flops,
        cost.memory_bytes, cost.stream_bytes, size * (ar.sent + p.send_sent) / replica.chips, 0.0,
        replica.chips, shape.prefill_tokens, shape.decode_tokens, batch.output_tokens, batch.size,
        shape.decode_context, batcher.kv.used_blocks))
    if len(collector.pending_rows) >= ROWS_PER_CHUNK:
        collector.iterations.flush()
    replica.deliver(first, finished, end)
    return end


def _commit_steady(replica: ReplicaState, batch: Batch, parts: int, start: float, steps: int, mine: float,
                   stop: float, finish_before: float = -1.0) -> tuple[float, int]:
    """Commit up to `steps` steady decode iterations from `batch` on, up to and including the first that
    reaches `mine` and ending before `stop`; then (one stage only) the iteration that finishes requests, when
    it ends before `finish_before`. Returns (when the last committed one ends, how many)."""
    if replica.drafter is not None:
        return _commit_steady_drafting(replica, batch, parts, start, steps, mine, stop)
    if len(replica.stages) == 1 and parts == 1 and replica.batcher.growth == 1.0:
        return _commit_steady_one_stage(replica, batch, start, steps, mine, stop, finish_before)
    batcher, stages, network, collector = replica.batcher, replica.stages, replica.network, replica.collector
    index, chips, k, pipeline = replica.index, replica.chips, len(stages), replica.pipeline
    shape = batch.shape
    micro = shape.split(parts) if parts > 1 else shape
    size = micro.tokens * stages[0].cost_model.model.d_model * ACTIVATION_BYTES
    nbytes = size * parts
    # per stage, what does not change from one iteration to the next: cost terms, collective and send times
    plan = []
    for stage in stages:
        p = stage.private
        assert p is not None  # a closed-form (private) replica's stages all have private links
        ar = p.collective(size)
        coll = ar.s_per_byte * size + ar.latency_s
        xfer = p.send_s_per_byte * size
        plan.append((stage.cost_model.decode_terms(micro), coll, xfer, p.send_latency_s,
                     parts * (coll + xfer + p.send_latency_s), parts * size * (ar.sent + p.send_sent), p, ar))
    collectives = [x[7] for x in plan]
    size_, used, out, n, pf = batch.size, batcher.kv.used_blocks, batch.output_tokens, shape.decode_tokens, \
        shape.prefill_tokens
    rows, pack = collector.pending_rows, ROW.pack
    t, context, committed = start, shape.decode_context, 0
    while committed < steps:
        c_micro = context / parts if parts > 1 else context
        # ReplicaState.closed_form (with StepCostModel.cost), then ReplicaState.book into a fresh account, unrolled
        total = slowest = 0.0
        costs, passes = [], []
        for (gemm, gc, gcb, gmb, gm, per_pair, tp, tokens, kv_per_token, peak, bw, resident, streamed, ov), coll, \
                xfer, send_latency, _, _, _, _ in plan:
            decode = per_pair * c_micro / tp
            kv = (c_micro + tokens) * kv_per_token
            dc, dm = decode / peak, kv / bw
            cbi = gcb + (dc if dc >= dm else 0.0)
            mbi = gmb + (dm if dm > dc else 0.0)
            fl = gemm + decode
            mem_b, stream_b = resident + kv, streamed
            c, m = gc + dc, gm + dm
            step = cbi + mbi + ov + coll
            total += step + xfer + send_latency
            slowest = max(slowest, step, xfer)
            costs.append((c, m, ov, fl, mem_b, stream_b, cbi, mbi))
            passes.append((cbi + mbi + ov, coll, xfer, send_latency))
        duration = pipeline(total, slowest, parts, passes, size, collectives)
        if duration is None:  # transfers inside the replica would contend: the normal path runs it as flows
            break
        end = t + duration
        if end >= stop:
            replica.remember_timing(batcher.steady_shape(shape, context), parts, duration,
                                    [StepCost(*x) for x in costs], size)
            break
        cs = ms = cb = mb = ovs = flops = mem = stream = net = net_bytes = 0.0
        for c, m, ov, fl, mem_b, stream_b, cbi, mbi in costs:  # IterationAccount.add_compute(cost, parts)
            cs += parts * c
            ms += parts * m
            cb += parts * cbi
            mb += parts * mbi
            ovs += parts * ov
            flops += parts * fl
            mem += parts * mem_b
            stream += parts * stream_b
        for _, _, _, _, net_s, net_b, p, ar in plan:
            net += net_s
            net_bytes += net_b
            if ar.carried:
                network.account_private(t, end, ar.carried, nbytes * ar.sent, nbytes)
            if p.send_carried:
                network.account_private(t, end, p.send_carried, nbytes * p.send_sent, nbytes)
        duration = end - t  # as recorded after an event: the clock's difference
        busy = (cb + mb + ovs + net) / k
        rows.append(pack(index, t, duration, cs / k, ms / k, cb / k, mb / k, net / k, ovs / k,
                         max(duration - busy, 0.0), flops / k, mem / k, stream / k, net_bytes / chips, 0.0, chips,
                         pf, n, out, size_, context, used))
        if len(rows) >= ROWS_PER_CHUNK:
            collector.iterations.flush()
        t = end
        committed += 1
        context = batcher.advance_steady()
        if end >= mine:
            break
    return t, committed


def _commit_steady_one_stage(replica: ReplicaState, batch: Batch, start: float, steps: int, mine: float,
                             stop: float, finish_before: float) -> tuple[float, int]:
    """_commit_steady for one stage and one micro-batch (no pipeline), the common case, a span at a time:
    up to `steps` iterations of one decode batch (`batcher.steady_span`; the KV blocks they need taken on the
    way by `grow_through`), timed as numpy arrays (`span_times`: element by element the float operations of
    one iteration after the other) and the clock advanced by a sequential cumulative sum (np.cumsum adds in
    order, as the clock does), so every time is bit-identical; recorded as one DecodeSpan, whose rows the
    iteration store builds when it needs them. Adding 0.0, multiplying or dividing by 1 and the flow shop
    of one job leave a value unchanged, so they are left out. The last iteration may finish requests
    (batcher and deliveries as in ReplicaState.complete)."""
    batcher, network, collector = replica.batcher, replica.network, replica.collector
    last = steps + (finish_before > start)  # the finishing iteration too, if it may be
    t, committed, chunk = start, 0, 32
    heap = batcher.block_heap
    if not (heap and heap[0][0] < batcher.step + min(chunk, last)):  # no KV block due in the first chunk
        t, committed, ended = _commit_steady_rows(replica, batch, start, steps, min(chunk, last), mine, stop,
                                                  finish_before)
        if ended or committed >= last:
            return t, committed
        chunk *= 4
    shape, stage = batch.shape, replica.stages[0]
    p, size, ar, coll, xfer, send_latency, net_bytes_per_chip = _private_network(replica, batch)
    sources = [(carried, size * sent, size) for carried, sent in ((ar.carried, ar.sent),
                                                                  (p.send_carried, p.send_sent)) if carried]
    terms = stage.cost_model.decode_terms(shape)
    n = shape.decode_tokens
    step0, context0 = batcher.step - committed, shape.decode_context  # integral floats: their sums are exact
    while committed < last:
        # the first iterations one float at a time (most spans end soon: the next arrival is near), then ever
        # longer chunks as arrays: the same float operations either way
        k = min(chunk, last - committed)
        at = context0 + committed * n
        values: list[tuple] = []
        ends, held, timing = (_time_scalar if committed == 0 else _time_arrays)(
            terms, coll, xfer, send_latency, at, n, t, k, steps - committed, mine, stop, finish_before, values)
        chunk *= 4
        done = held < k or (held and ends[held - 1] >= mine)
        if timing is not None:  # the normal path runs the next iteration: remember its timing
            replica.remember_timing(batcher.steady_shape(shape, at + held * n), 1, timing[0], [timing[1]], size)
        # the blocks the schedules before these iterations take; one that is not free ends the span there
        block_steps: list[int] = []
        heap, through = batcher.block_heap, step0 + committed + held - 1
        if heap and heap[0][0] <= through:
            grown_to, block_steps = batcher.grow_through(through)
            if grown_to <= through:
                held, done = grown_to - step0 - committed, True
        if held == 0:
            break
        ends = ends[:held]
        if sources:
            ends = list(ends)
            network.account_private_each([t, *ends[:-1]], ends, sources)
        finishes = committed + held > steps
        plain = held - finishes  # iterations that finish nobody
        used = batcher.kv.used_blocks - len(block_steps)
        batcher.step = step0 + committed + plain
        batcher.decode_context = context0 + (committed + plain) * n
        span_start, t = t, float(ends[held - 1])
        first: list[int] = []
        finished: list[int] = []
        if finishes:  # as ReplicaState.complete: the batcher, then the row, then the deliveries
            first, finished = batcher.complete(Batch(batcher.steady_shape(shape, at + (held - 1) * n), [],
                                                     0.0, 0.0, batch.output_tokens))
        grown = [i for i in (s - step0 - committed for s in block_steps) if i < held] if block_steps else []
        # (not the next span's blocks)
        if values and held <= SHORT_SPAN:  # a short span: its rows packed now cost less than a span record
            _pack_rows(replica, span_start, ends, values, terms, coll + xfer + send_latency, net_bytes_per_chip,
                       batch, used, grown, batcher.kv.used_blocks if finishes else -1)
        else:
            collector.iterations.append_span(DecodeSpan(
                replica.index, span_start, ends, at, terms, coll, xfer, send_latency, net_bytes_per_chip,
                replica.chips, shape.prefill_tokens, n, batch.output_tokens, batch.size, used, tuple(grown),
                batcher.kv.used_blocks if finishes else -1))
        if finishes:
            replica.deliver(first, finished, t)
            return t, committed + held
        committed += held
        if done:
            break
    return t, committed


def _private_network(replica: ReplicaState, batch: Batch) -> tuple:
    """A one-stage replica's network per step on its private links: (links, activation bytes, the all-reduce,
    its time, the send's time per byte and latency, bytes per chip)."""
    shape, stage = batch.shape, replica.stages[0]
    p = stage.private
    assert p is not None  # a closed-form (private) replica's stages all have private links
    size = shape.tokens * stage.cost_model.model.d_model * ACTIVATION_BYTES
    ar = p.collective(size)
    coll = ar.s_per_byte * size + ar.latency_s
    return (p, size, ar, coll, p.send_s_per_byte * size, p.send_latency_s,
            size * (ar.sent + p.send_sent) / replica.chips)


def _commit_steady_rows(replica: ReplicaState, batch: Batch, start: float, steps: int, limit: int, mine: float,
                        stop: float, finish_before: float) -> tuple[float, int, bool]:
    """The first `limit` iterations of _commit_steady_one_stage when no KV block is due meanwhile, one after
    the other, each packed as its row (a span is short, most often: the next arrival is near), with the same
    float operations as `span_times`. Returns (when the last committed one ends, how many, whether the span
    ended: stopped short, finished requests or reached `mine`)."""
    batcher, network, collector, index, chips = (replica.batcher, replica.network, replica.collector,
                                                 replica.index, replica.chips)
    shape, stage = batch.shape, replica.stages[0]
    p, size, ar, coll, xfer, send_latency, net_bytes_per_chip = _private_network(replica, batch)
    net = coll + xfer + send_latency
    coll_carried, coll_bytes, send_carried, send_bytes = (ar.carried, size * ar.sent, p.send_carried,
                                                          size * p.send_sent)
    gemm, gc, gcb, gmb, gm, per_pair, tp, tokens, kv_per_token, peak, bw, resident, streamed, ov = \
        stage.cost_model.decode_terms(shape)
    size_, used, out, n, pf = batch.size, batcher.kv.used_blocks, batch.output_tokens, shape.decode_tokens, \
        shape.prefill_tokens
    rows, pack, advance = collector.pending_rows, ROW.pack, batcher.advance_steady
    t, context, committed = start, shape.decode_context, 0
    while committed < limit:
        decode = per_pair * context / tp
        kv = (context + tokens) * kv_per_token
        dc, dm = decode / peak, kv / bw
        cb = gcb + (dc if dc >= dm else 0.0)
        mb = gmb + (dm if dm > dc else 0.0)
        fl = gemm + decode
        mem_b, stream_b = resident + kv, streamed
        c, m = gc + dc, gm + dm
        step = cb + mb + ov + coll
        end = t + (step + xfer + send_latency)
        finishing = committed == steps
        if end >= stop or (finishing and end >= finish_before):
            replica.remember_timing(batcher.steady_shape(shape, context), 1, step + xfer + send_latency,
                                    [StepCost(c, m, ov, fl, mem_b, stream_b, cb, mb)], size)
            return t, committed, True
        if coll_carried:
            network.account_private(t, end, coll_carried, coll_bytes, size)
        if send_carried:
            network.account_private(t, end, send_carried, send_bytes, size)
        duration = end - t  # as recorded after an event: the clock's difference
        if finishing:
            first, finished = batcher.complete(Batch(batcher.steady_shape(shape, context), [], 0.0, 0.0, out))
            used = batcher.kv.used_blocks
        rows.append(pack(index, t, duration, c, m, cb, mb, net, ov, max(duration - (cb + mb + ov + net), 0.0),
                         fl, mem_b, stream_b, net_bytes_per_chip, 0.0, chips, pf, n, out, size_, context, used))
        if len(rows) >= ROWS_PER_CHUNK:
            collector.iterations.flush()
        t = end
        committed += 1
        if finishing:
            replica.deliver(first, finished, end)
            return t, committed, True
        context = advance()
        if end >= mine:
            return t, committed, True
    return t, committed, False


def _pack_rows(replica: ReplicaState, start: float, ends: list[float], values: list[tuple], terms: tuple, net: float,
               net_bytes_per_chip: float, batch: Batch, used: int, grown: list[int], last_used: int) -> None:
    """The rows `span_columns` would give for these iterations (their values from `_time_scalar`), packed."""
    shape, collector, pack, streamed, ov = batch.shape, replica.collector, ROW.pack, terms[12], terms[13]
    rows = collector.pending_rows
    index, chips, pf, n, out, size_ = (replica.index, replica.chips, shape.prefill_tokens, shape.decode_tokens,
                                       batch.output_tokens, batch.size)
    t, last = start, len(ends) - 1
    for i, (end, (c, m, cb, mb, fl, mem_b, context)) in enumerate(zip(ends, values)):
        if grown:
            used += grown.count(i)
        duration = end - t  # as recorded after an event: the clock's difference
        rows.append(pack(index, t, duration, c, m, cb, mb, net, ov, max(duration - (cb + mb + ov + net), 0.0), fl,
                         mem_b, streamed, net_bytes_per_chip, 0.0, chips, pf, n, out, size_, context,
                         last_used if i == last and last_used >= 0 else used))
        t = end
    if len(rows) >= ROWS_PER_CHUNK:
        collector.iterations.flush()


def _time_scalar(terms: tuple, coll: float, xfer: float, send_latency: float, context: float, n: float, t: float,
                 k: int, finishing: int, mine: float, stop: float, finish_before: float, values: list):
    """Time up to `k` steady iterations from `t`, the first at decode context `context` (+ `n` a step), one
    after the other: (their ends, how many may be committed, the timing of the next one when it ends the
    span there: it ends at `stop` or later, or it is the `finishing` one and ends at `finish_before` or later;
    else None). The iteration that reaches `mine` is the last. `span_times` for one iteration, unrolled; the
    row values (compute, memory, compute-bound, memory-bound time, FLOPs, bytes, context) of the first
    SHORT_SPAN timed iterations appended to `values`."""
    gemm, gc, gcb, gmb, gm, per_pair, tp, tokens, kv_per_token, peak, bw, resident, streamed, ov = terms
    ends: list[float] = []
    for i in range(k):
        decode = per_pair * context / tp
        kv = (context + tokens) * kv_per_token
        dc, dm = decode / peak, kv / bw
        cb = gcb + (dc if dc >= dm else 0.0)
        mb = gmb + (dm if dm > dc else 0.0)
        duration = cb + mb + ov + coll + xfer + send_latency
        end = t + duration
        if end >= stop or (i == finishing and end >= finish_before):
            return ends, i, (duration, StepCost(gc + dc, gm + dm, ov, gemm + decode, resident + kv, streamed, cb, mb))
        ends.append(end)
        if i < SHORT_SPAN:  # only a short span's rows are packed from them
            values.append((gc + dc, gm + dm, cb, mb, gemm + decode, resident + kv, context))
        if end >= mine:
            return ends, i + 1, None
        t = end
        context += n
    return ends, k, None


def _time_arrays(terms: tuple, coll: float, xfer: float, send_latency: float, context: float, n: float, t: float,
                 k: int, finishing: int, mine: float, stop: float, finish_before: float, values: list):
    """_time_scalar with numpy arrays: every iteration's time at once (`span_times`), the clock's additions
    as a sequential cumulative sum (np.cumsum adds in order), so the same floats (`values` left empty)."""
    contexts = context + np.arange(k, dtype=np.float64) * n
    decode, kv, dc, dm, cb, mb, duration = span_times(terms, coll, xfer, send_latency, contexts)
    ends = np.cumsum(np.concatenate(([t], duration)))[1:]
    held = int(np.searchsorted(ends, stop)) if ends[-1] >= stop else k
    if finishing < held and ends[finishing] >= finish_before:
        held = finishing
    if held and ends[held - 1] >= mine:
        return ends, int(np.searchsorted(ends, mine)) + 1, None
    if held == k:
        return ends, k, None
    gemm, gc, _, _, gm, _, _, _, _, _, _, resident, streamed, ov = terms
    j = held
    return ends, held, (float(duration[j]), StepCost(float(gc + dc[j]), float(gm + dm[j]), ov,
                                                     float(gemm + decode[j]), float(resident + kv[j]), streamed,
                                                     float(cb[j]), float(mb[j])))


def _commit_steady_drafting(replica: ReplicaState, batch: Batch, parts: int, start: float, steps: int,
                            mine: float, stop: float) -> tuple[float, int]:
    """As _commit_steady, under speculative decoding: the general path, one iteration after the other."""
    batcher = replica.batcher
    t, shape, committed = start, batch.shape, 0
    while committed < steps:
        duration, costs, bookings = replica.closed_form(shape, parts)
        if duration is None:  # transfers inside the replica would contend: the normal path runs it as flows
            break
        end = t + duration
        if end >= stop:
            replica.remember(shape, parts, (duration, costs, bookings))
            break
        account = IterationAccount(len(replica.stages), replica.chips)
        replica.book(t, end, parts, costs, bookings, account)
        replica.collector.iteration(replica.index, t, end - t, account, shape, batch.size, batcher.kv.used_blocks,
                                    batch.output_tokens)
        t = end
        committed += 1
        shape = batcher.steady_shape(shape, batcher.advance_steady())
        if end >= mine:
            break
    return t, committed
