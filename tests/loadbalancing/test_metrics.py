"""The closed-loop scores (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.loadbalancing.metrics import (
    LoadSample,
    jain_index,
    overload,
    pauses,
    pauses_per_hour,
    utilization,
)
from tests.loadbalancing.checks import at

D = Decimal


def test_jain_index_is_one_when_equal_and_one_over_n_when_one_gets_everything():
    assert jain_index([D(5), D(5), D(5)]) == D("1.0000")
    assert jain_index([D(10), D(0), D(0), D(0)]) == D("0.2500")
    assert jain_index([D(1), D(2), D(3)]) == D("0.8571")  # 36 / (3 x 14)
    assert jain_index([]) is None
    assert jain_index([0, 0]) == D(1)
    with pytest.raises(ValueError, match=">= 0"):
        jain_index([D(-1), D(1)])


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=50))
def test_jain_index_lies_between_one_over_n_and_one(values):
    index = jain_index(values)
    assert D(1) / len(values) - D("0.0001") <= index <= 1


def test_utilization_is_delivered_over_what_could_have_been():
    assert utilization(delivered_wh=9_000, spare_wh=12_000, demand_wh=10_000) == D("0.9000")
    assert utilization(delivered_wh=6_000, spare_wh=8_000, demand_wh=50_000) == D("0.7500")
    assert utilization(delivered_wh=0, spare_wh=0, demand_wh=10_000) is None
    with pytest.raises(ValueError):
        utilization(delivered_wh=-1, spare_wh=1, demand_wh=1)


def test_seconds_above_100_and_113_percent_and_each_excursion():
    rating = D(155)
    samples = [
        LoadSample(at(0), D(150), rating),
        LoadSample(at(10), D(160), rating),  # 103 %: an excursion starts
        LoadSample(at(15), D(180), rating),  # 116 %: above 113 % for 5 s
        LoadSample(at(20), D(150), rating),  # cleared after 10 s
        LoadSample(at(60), D(156), rating),  # another, still running at the end
    ]
    report = overload(samples, end=at(100))
    assert report.seconds_above_100 == D(50)
    assert report.seconds_above_113 == D(5)
    assert [(e.start, e.end, e.seconds) for e in report.excursions] == [(at(10), at(20), D(10)), (at(60), at(100), D(40))]
    assert report.excursions[0].peak_ratio == D("1.1613")
    assert report.longest_excursion_s == D(40)
    assert not report.safe  # above 113 %, and 40 s over 100 %
    calm = overload([LoadSample(at(0), D(100), rating), LoadSample(at(5), D(158), rating),
                     LoadSample(at(25), D(120), rating)], end=at(60))
    assert calm.safe and calm.seconds_above_100 == D(20)


def test_overload_refuses_samples_out_of_order():
    with pytest.raises(ValueError, match="time order"):
        overload([LoadSample(at(5), D(1), D(2)), LoadSample(at(1), D(1), D(2))], end=at(10))
    with pytest.raises(ValueError, match="rating must be positive"):
        overload([LoadSample(at(0), D(1), D(0))], end=at(1))


def test_pauses_per_session():
    limits = [(at(0), D(16)), (at(60), D(0)), (at(120), D(0)), (at(400), D(6)), (at(900), D(0)), (at(3600), D(8))]
    assert pauses(limits) == 2
    assert pauses_per_hour(limits) == D(2)
    assert pauses_per_hour(limits[:1]) is None
