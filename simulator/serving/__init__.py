"""Serving policies as plain objects (stage 4): batching, KV-cache blocks, routing. No SimPy here."""
