"""Strings with units -> SI floats. The only place in infersim where text becomes a number.

Decimal prefixes (k, M, G, T, P) are powers of 1000 and binary prefixes (Ki, Mi, Gi, Ti, Pi) powers of 1024,
so "80 GB" = 80e9 bytes and "80 GiB" = 85.9e9 bytes. Rates: "3.35 TB/s" (bytes/s), "989 TFLOP/s",
"400 Gb/s" (bits/s, divided by 8). Times: "2 us", "1.5 ms", "3 s", "1 h". Power "700 W", energy "5 pJ".
"""

from __future__ import annotations

import math
import re

from simulator.errors import brief

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_SMALL = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*([^\s\d].*?)?\s*$")


class UnitError(ValueError):
    """A quantity string could not be read as the expected kind of quantity."""


def _split(text: str | float | int, kind: str) -> tuple[float, str]:
    if isinstance(text, bool):
        raise UnitError(f"expected {kind}, got {brief(text)}")
    if isinstance(text, (int, float)):
        return float(text), ""
    match = _PATTERN.match(str(text))
    if not match:
        raise UnitError(f"expected {kind} like {_EXAMPLES[kind]}, got {brief(text)}")
    return float(match.group(1)), (match.group(2) or "")


def _scaled(value: float, unit: str, base: str, kind: str, binary: bool = True) -> float:
    if not unit.endswith(base):
        raise UnitError(f"expected {kind} like {_EXAMPLES[kind]}, got unit {brief(unit)}")
    prefix = unit[: len(unit) - len(base)]
    if binary and prefix in _BINARY:
        return value * _BINARY[prefix]
    if prefix in _DECIMAL:
        return value * _DECIMAL[prefix]
    raise UnitError(f"unknown prefix {brief(prefix)} in {brief(unit)} for {kind}")


def _finite(value: float, text: object, kind: str) -> float:
    if not math.isfinite(value):
        raise UnitError(f"expected a finite {kind}, got {brief(text)}")
    return value


def parse_bytes(text: str | float) -> float:
    """'80 GiB' -> 85899345920.0; a bare number is bytes."""
    value, unit = _split(text, "bytes")
    if unit in ("", "B"):
        return _finite(value, text, "bytes")
    return _finite(_scaled(value, unit, "B", "bytes"), text, "bytes")


def parse_bandwidth(text: str | float) -> float:
    """'3.35 TB/s' -> 3.35e12 bytes/s; '400 Gb/s' -> 5e10 bytes/s; a bare number is bytes/s."""
    value, unit = _split(text, "bandwidth")
    if unit == "":
        return _finite(value, text, "bandwidth")
    if unit.endswith("bps"):
        unit = unit[:-3] + "b/s"
    if unit.endswith("B/s"):
        return _finite(_scaled(value, unit[:-2], "B", "bandwidth"), text, "bandwidth")
    if unit.endswith("b/s"):
        return _finite(_scaled(value, unit[:-2], "b", "bandwidth") / 8.0, text, "bandwidth")
    raise UnitError(f"expected bandwidth like {_EXAMPLES['bandwidth']}, got unit {brief(unit)}")


def parse_flops(text: str | float) -> float:
    """'989.4 TFLOP/s' -> 9.894e14 FLOP/s; 'TOP/s', 'TFLOPS' and 'TOPS' are accepted too."""
    value, unit = _split(text, "compute rate")
    if unit == "":
        return _finite(value, text, "compute rate")
    for suffix in ("FLOP/s", "FLOPS", "OP/s", "OPS"):
        if unit.endswith(suffix):
            prefix = unit[: -len(suffix)]
            if prefix in _DECIMAL:
                return _finite(value * _DECIMAL[prefix], text, "compute rate")
            raise UnitError(f"unknown prefix {brief(prefix)} in {brief(unit)} for compute rate")
    raise UnitError(f"expected compute rate like {_EXAMPLES['compute rate']}, got unit {brief(unit)}")


def parse_seconds(text: str | float) -> float:
    """'2 us' -> 2e-6; '1 h' -> 3600; a bare number is seconds."""
    value, unit = _split(text, "duration")
    if unit == "":
        return _finite(value, text, "duration")
    if unit in _TIME:
        return _finite(value * _TIME[unit], text, "duration")
    raise UnitError(f"expected duration like {_EXAMPLES['duration']}, got unit {brief(unit)}")


def parse_rate(text: str | float) -> float:
    """'5 /s', '300 /min', '5/s' -> events per second; a bare number is per second."""
    value, unit = _split(text, "rate")
    unit = unit.replace(" ", "")
    if unit in ("", "/s", "1/s"):
        return _finite(value, text, "rate")
    if unit.startswith("/") and unit[1:] in _TIME:
        return _finite(value / _TIME[unit[1:]], text, "rate")
    raise UnitError(f"expected rate like {_EXAMPLES['rate']}, got unit {brief(unit)}")


def parse_watts(text: str | float) -> float:
    """'700 W' -> 700.0; '23 kW' -> 23000.0."""
    value, unit = _split(text, "power")
    if unit == "":
        return _finite(value, text, "power")
    return _finite(_scaled(value, unit, "W", "power", binary=False), text, "power")


def parse_joules(text: str | float) -> float:
    """'5 pJ' -> 5e-12; '1 kJ' -> 1000."""
    value, unit = _split(text, "energy")
    if unit == "" or unit == "J":
        return _finite(value, text, "energy")
    if unit.endswith("J") and unit[:-1] in _SMALL:
        return _finite(value * _SMALL[unit[:-1]], text, "energy")
    return _finite(_scaled(value, unit, "J", "energy", binary=False), text, "energy")


_EXAMPLES = {
    "bytes": "'80 GiB' or '141 GB'",
    "bandwidth": "'3.35 TB/s' or '400 Gb/s'",
    "compute rate": "'989 TFLOP/s'",
    "duration": "'2 us', '1.5 ms' or '3 s'",
    "rate": "'5 /s' or '300 /min'",
    "power": "'700 W'",
    "energy": "'5 pJ'",
}
