"""Where each MoE layer's tokens go: a routing model over experts, the experts' placement on the
expert-parallel ranks (contiguous, or balanced EPLB-style with redundant copies), and each step's sampled
load on the busiest rank, which every rank waits for.

Routing model: expert i of a layer is picked by a token with probability p_i. With `skew` s the experts
follow a Zipf law, p proportional to 1 / rank^s, their popularity order drawn once per layer (hot experts
differ from layer to layer); s = 0 is uniform routing. A token picks top_k distinct experts, so it
includes expert i with probability pi_i = min(1, top_k p_i) (the excess of the capped experts shared out
over the others, so that sum pi = top_k), and each step the tokens an expert receives are Binomial(T, pi_i),
independently per expert and layer.

Placement: without balancing, rank r holds experts r E/ep .. (r+1) E/ep - 1 (the checkpoint's order).
EPLB (DeepSeek's expert-parallel load balancer, github.com/deepseek-ai/EPLB): the `redundant` extra slots go,
one at a time, to the expert with the largest load per copy; then copies are packed heaviest first onto the
least-loaded rank with a free slot (never two copies of an expert on one rank when avoidable), E/ep +
redundant/ep slots per rank. An expert's tokens split evenly over its copies.

Sampling cost: one step's draw is a binomial per expert and layer (15k for DeepSeek-V3), about 1 ms, and a
long run repeats a few token counts thousands of times (a steady decode batch). Each token count keeps a pool
of its first POOL_DRAWS independent draws; later steps with that count pick one of them uniformly at random.
Every step's load still follows the same distribution (the pool's empirical one), steps stay independent, and
the cost is bounded by POOL_DRAWS draws per distinct token count.
"""

from __future__ import annotations

import math

import numpy as np

from simulator.errors import ScenarioError

LOADS_FIELD = "deployment.expert_routing.loads"
MAX_LOADS_BYTES = 16 * 2**20
POOL_DRAWS = 64  # draws kept per token count: the pool's mean is within ~1/8 of one step's spread of the truth


def read_loads(path: str, experts: int, moe_layers: int) -> np.ndarray:
    """A measured expert-load file -> (moe_layers, experts) routing probabilities, each row normalised. One
    line per MoE layer, or one line for all of them; every problem is one line naming the file and line."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_LOADS_BYTES + 1)
        if len(text) > MAX_LOADS_BYTES:
            raise ScenarioError(LOADS_FIELD, f"{path}: larger than {MAX_LOADS_BYTES // 2**20} MiB")
        lines = text.decode("utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(LOADS_FIELD, f"{path} cannot be read: {exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split(",")
        if len(cells) != experts:
            raise ScenarioError(LOADS_FIELD, f"{path} line {number}: {len(cells)} values; the model has "
                                f"{experts} experts")
        try:
            row = [float(cell) for cell in cells]
        except ValueError:
            raise ScenarioError(LOADS_FIELD, f"{path} line {number}: not all numbers") from None
        if any(not math.isfinite(x) or x < 0 for x in row) or not sum(row) > 0:
            raise ScenarioError(LOADS_FIELD, f"{path} line {number}: loads must be finite, non-negative and "
                                "not all zero")
        rows.append(row)
    if len(rows) not in (1, moe_layers):
        raise ScenarioError(LOADS_FIELD, f"{path}: {len(rows)} lines of loads; allowed: 1 (every layer) or "
                            f"{moe_layers} (one per MoE layer)")
    loads = np.array(rows if len(rows) == moe_layers else rows * moe_layers, dtype=np.float64)
    return loads / loads.sum(axis=1, keepdims=True)


def inclusion(p: np.ndarray, top_k: int) -> np.ndarray:
    """Per-token inclusion probability of each expert (rows: layers) for top_k distinct picks: top_k x p,
    capped at 1 with the excess shared over the uncapped experts in proportion to p."""
    pi = np.array(p, dtype=np.float64) * top_k
    capped = np.zeros(pi.shape, dtype=bool)
    for _ in range(pi.shape[-1]):  # each round caps at least one more expert
        over = pi > 1.0
        if not over.any():
            break
        excess = np.where(over, pi - 1.0, 0.0).sum(axis=-1, keepdims=True)
        capped |= over
        free = np.where(capped, 0.0, pi)
        pi = np.where(capped, 1.0, free + excess * free / np.maximum(free.sum(axis=-1, keepdims=True), 1e-300))
    return np.minimum(pi, 1.0)


def zipf_probabilities(experts: int, layers: int, skew: float, rng: np.random.Generator) -> np.ndarray:
    """(layers, experts) routing probabilities: Zipf with exponent `skew` over a popularity order drawn per
    layer; exactly uniform when skew is 0 (and no random numbers drawn)."""
    if skew == 0.0:
        return np.full((layers, experts), 1.0 / experts)
    weights = 1.0 / np.arange(1, experts + 1, dtype=np.float64) ** skew
    weights /= weights.sum()
    return np.stack([weights[rng.permutation(experts)] for _ in range(layers)])


def contiguous(experts: int, ranks: int) -> np.ndarray:
    """(ranks, experts) share of each expert's tokens each rank gets: rank r holds a contiguous block."""
    share = np.zeros((ranks, experts))
    share[np.arange(experts) // (experts // ranks), np.arange(experts)] = 1.0
    return share


def eplb(load: np.ndarray, ranks: int, redundant: int) -> np.ndarray:
    """(ranks, experts) shares of one layer under EPLB: redundant copies to the heaviest experts per copy,
    then copies packed heaviest first onto the least-loaded rank with room."""
    experts = len(load)
    copies = np.ones(experts, dtype=np.int64)
    for _ in range(redundant):
        copies[int(np.argmax(load / copies))] += 1
    slots = (experts + redundant) // ranks
    share = np.zeros((ranks, experts))
    rank_load, used = np.zeros(ranks), np.zeros(ranks, dtype=np.int64)
    items = sorted(((load[e] / copies[e], e) for e in range(experts) for _ in range(copies[e])),
                   key=lambda item: (-item[0], item[1]))
    for weight, e in items:
        room = [r for r in range(ranks) if used[r] < slots]
        fresh = [r for r in room if share[r, e] == 0.0] or room
        r = min(fresh, key=lambda r: (rank_load[r], r))
        share[r, e] += 1.0 / copies[e]
        rank_load[r] += weight
        used[r] += 1
    return share


class ExpertRouter:
    """The routing of one pipeline stage's MoE layers over `ranks` expert-parallel ranks."""

    def __init__(self, experts: int, top_k: int, layers: int, ranks: int, skew: float = 0.0,
                 balance: str = "none", redundant: int = 0, rng: np.random.Generator | None = None,
                 loads: np.ndarray | None = None):
        """`loads`: measured routing probabilities of these layers (rows), instead of the Zipf model."""
        p = zipf_probabilities(experts, layers, skew, rng or np.random.default_rng(0)) if loads is None else loads
        self.pi = inclusion(p, top_k)  # (layers, experts)
        if balance == "eplb":
            self.share = np.stack([eplb(self.pi[layer], ranks, redundant) for layer in range(layers)])
        else:
            self.share = np.broadcast_to(contiguous(experts, ranks), (layers, ranks, experts))
        self.holds = (self.share > 0.0).astype(np.float64)  # (layers, ranks, experts): the rank has a copy
        self._pools: dict[int, list[tuple[float, float]]] = {}

    def busiest(self, tokens: int, rng: np.random.Generator) -> tuple[float, float]:
        """One step of `tokens` tokens: the busiest rank's (routed tokens, expert copies with work), summed
        over the layers (each layer waits for its busiest rank); a fresh draw until the token count's pool is
        full, then one of the pool's draws."""
        if len(self.pi) == 0 or tokens == 0:
            return 0.0, 0.0
        pool = self._pools.setdefault(tokens, [])
        if len(pool) < POOL_DRAWS:
            pool.append(self.draw(tokens, rng))
            return pool[-1]
        return pool[int(rng.integers(POOL_DRAWS))]

    def draw(self, tokens: int, rng: np.random.Generator) -> tuple[float, float]:
        """Sample the routing of one step of `tokens` tokens (see `busiest`)."""
        layers = len(self.pi)
        counts = rng.binomial(tokens, self.pi).astype(np.float64)  # (layers, experts)
        routed = np.einsum("lre,le->lr", self.share, counts)
        touched = np.einsum("lre,le->lr", self.holds, (counts > 0).astype(np.float64))
        rows = np.arange(layers)
        busiest = routed.argmax(axis=1)
        return float(routed[rows, busiest].sum()), float(touched[rows, busiest].sum())
