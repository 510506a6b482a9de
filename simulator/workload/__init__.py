"""Requests, pure and seeded (stage 3): arrival processes, length distributions, trace replay, statistics."""
