"""Scenario files -> validated, frozen configuration with SI units (stage 1 of the data flow)."""
