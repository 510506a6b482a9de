"""Shared system prompts and multi-turn conversations: each request's prompt length and the identity of its
KV-cache blocks, so that a prefix cache can find what two requests share.

A request belongs to a user, a user to one of the system prompts; with turns > 1 its requests form
conversations whose token sequence only grows (system prompt, text, answer, text, answer, ...). A block of
`block_tokens` tokens is therefore named by what fixes its content: a block wholly inside the system prompt
by (system prompt, block index), any later block by (conversation, block index), whichever turn wrote it.
Hashes are a fixed integer mix of those numbers (splitmix64), so a run is the same on every machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from simulator.config.workload import SharedPrefixSpec

_TAG_SYSTEM, _TAG_CONVERSATION = 1, 2


@dataclass(frozen=True)
class SharedPrefixes:
    """Per request (by id): its system prompt and its conversation (unique per user and conversation), and
    the tokens of the system prompt every request starts with."""
    system_prompt: np.ndarray
    conversation: np.ndarray
    system_tokens: int

    def take(self, index: np.ndarray) -> SharedPrefixes:
        return SharedPrefixes(self.system_prompt[index], self.conversation[index], self.system_tokens)


def apply(spec: SharedPrefixSpec, text_tokens: np.ndarray,
          output_tokens: np.ndarray) -> tuple[np.ndarray, SharedPrefixes]:
    """(each request's prompt tokens, its prefix identity), request i being user i mod users's; `text_tokens` is
    each turn's new user text. A turn's prompt is the system prompt, the conversation's previous prompts'
    text and answers, and its own text."""
    n, users = len(text_tokens), spec.users
    rid = np.arange(n, dtype=np.int64)
    user, round_ = rid % users, rid // users
    turn = round_ % spec.turns
    history = np.zeros(n, dtype=np.int64)
    written = text_tokens.astype(np.int64) + output_tokens.astype(np.int64)
    for r in range(1, -(-n // users)):  # a user's previous request is `users` ids earlier
        rows = np.arange(r * users, min((r + 1) * users, n))
        previous = rows - users
        history[rows] = np.where(turn[rows] > 0, history[previous] + written[previous], 0)
    prompt = spec.system_prompt_tokens + history + text_tokens.astype(np.int64)
    conversation = user + users * (round_ // spec.turns)
    return prompt, SharedPrefixes(user // spec.users_per_prompt, conversation, spec.system_prompt_tokens)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 (wrapping arithmetic): a well-spread 64-bit hash of an integer."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class BlockHashes(Sequence[tuple[int, ...]]):
    """The hashes of each request's full blocks of `block_tokens` tokens, over its prompt and answer (a prefix
    cache keeps an answer's blocks for the next turn), computed when asked: memory stays per request."""

    def __init__(self, prefixes: SharedPrefixes, prompt_tokens: np.ndarray, output_tokens: np.ndarray,
                 block_tokens: int):
        self.prefixes, self.block_tokens = prefixes, block_tokens
        self.tokens = (prompt_tokens.astype(np.int64) + output_tokens.astype(np.int64)).tolist()

    def __len__(self) -> int:
        return len(self.tokens)

    @overload
    def __getitem__(self, rid: int) -> tuple[int, ...]: ...
    @overload
    def __getitem__(self, rid: slice) -> Sequence[tuple[int, ...]]: ...

    def __getitem__(self, rid: int | slice) -> tuple[int, ...] | Sequence[tuple[int, ...]]:
        if isinstance(rid, slice):
            return [self[i] for i in range(*rid.indices(len(self)))]
        p, b = self.prefixes, self.block_tokens
        blocks = np.arange(self.tokens[rid] // b, dtype=np.uint64)
        shared = (blocks + np.uint64(1)) * np.uint64(b) <= np.uint64(p.system_tokens)
        key = np.where(shared, np.uint64(p.system_prompt[rid]) * np.uint64(4) + np.uint64(_TAG_SYSTEM),
                       np.uint64(p.conversation[rid]) * np.uint64(4) + np.uint64(_TAG_CONVERSATION))
        return tuple((_mix(_mix(key) + blocks) >> np.uint64(1)).tolist())

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        return (self[i] for i in range(len(self)))


def anything_shared(hashes: Sequence[tuple[int, ...]], prompt_tokens: np.ndarray, block_tokens: int) -> bool:
    """Does any full prompt block of one request occur in another request (something a cache could reuse)?"""
    seen: dict[int, int] = {}
    for rid in range(len(hashes)):
        for h in hashes[rid][: int(prompt_tokens[rid]) // block_tokens]:
            if seen.setdefault(h, rid) != rid:
                return True
    return False
