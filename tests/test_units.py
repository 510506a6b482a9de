import math
import re

import pytest

from simulator import units


def test_decimal_and_binary_prefixes_are_kept_apart():
    assert units.parse_bytes("80 GB") == 80e9
    assert units.parse_bytes("80 GiB") == 80 * 2**30
    assert units.parse_bytes("80 GiB") / units.parse_bytes("80 GB") == pytest.approx(1.073741824)
    assert units.parse_bytes("230 MB") == 230e6
    assert units.parse_bytes("1 TiB") == 2**40


def test_bits_are_divided_by_eight_and_bytes_are_not():
    assert units.parse_bandwidth("400 Gb/s") == 50e9
    assert units.parse_bandwidth("400 Gbps") == 50e9
    assert units.parse_bandwidth("3.35 TB/s") == 3.35e12
    assert units.parse_bandwidth("800 GiB/s") == 800 * 2**30


def test_compute_time_power_energy_rate():
    assert units.parse_flops("989.4 TFLOP/s") == pytest.approx(989.4e12)
    assert units.parse_flops("750 TOPS") == 750e12
    assert units.parse_seconds("2 us") == 2e-6
    assert units.parse_seconds("1.5 ms") == 1.5e-3
    assert units.parse_seconds("1 h") == 3600
    assert units.parse_watts("23 kW") == 23e3
    assert units.parse_joules("5 pJ") == 5e-12
    assert units.parse_rate("300 /min") == 5.0
    assert units.parse_rate(4) == 4.0


@pytest.mark.parametrize("parse, text, message", [
    (units.parse_bytes, "80 XB", "unknown prefix 'X' in 'XB' for bytes"),
    (units.parse_bytes, "80 GX", "expected bytes like '80 GiB' or '141 GB', got unit 'GX'"),
    (units.parse_bytes, "lots", "expected bytes like '80 GiB' or '141 GB', got 'lots'"),
    (units.parse_bandwidth, "5 GHz", "expected bandwidth like '3.35 TB/s' or '400 Gb/s', got unit 'GHz'"),
    (units.parse_seconds, "3 days", "expected duration like '2 us', '1.5 ms' or '3 s', got unit 'days'"),
    (units.parse_bytes, float("nan"), "expected a finite bytes, got nan"),
    (units.parse_bytes, "nan GB", "expected bytes like '80 GiB' or '141 GB', got 'nan GB'"),
])
def test_bad_quantities_say_what_was_expected(parse, text, message):
    with pytest.raises(units.UnitError, match="^" + re.escape(message)):
        parse(text)


def test_booleans_are_not_numbers():
    with pytest.raises(units.UnitError):
        units.parse_bytes(True)
    assert math.isfinite(units.parse_bytes(0))
