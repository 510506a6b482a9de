"""Requests, pure and seeded (stage 3): arrival processes and length distributions."""
