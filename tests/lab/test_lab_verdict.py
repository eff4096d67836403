"""The verdict logic on synthetic samples: never on this machine's speed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weft.errors import ConfigError
from weft.lab import judge, summarize


def test_summary_quartiles_and_extremes() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.n, s.median, s.q1, s.q3, s.min, s.max) == (5, 3.0, 2.0, 4.0, 1.0, 5.0)
    assert s.iqr == 2.0
    one = summarize([7.0])
    assert one.q1 == one.median == one.q3 == 7.0


@pytest.mark.parametrize(("bad", "match"), [([], "empty list"), ([1.0, float("nan")], "non-negative"),
                                            ([-1.0], r"got \[-1\.0\]")])
def test_summary_rejects_bad_samples(bad: list[float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):  # a ValueError too
        summarize(bad)


def test_clear_speedup_holds() -> None:
    v = judge([1.0, 1.02, 0.98, 1.01, 0.99], [0.10, 0.11, 0.09, 0.10, 0.10], threshold=5.0)
    assert v.kind == "holds"
    assert v.ratio == pytest.approx(10.0)
    assert v.low <= v.ratio <= v.high


def test_clear_slowdown_does_not_hold() -> None:
    v = judge([1.0, 1.01, 0.99], [1.5, 1.52, 1.48], threshold=1.1)
    assert v.kind == "does not hold"
    assert v.ratio == pytest.approx(1 / 1.5)


def test_overlapping_spread_is_inconclusive() -> None:
    # Medians give 1.2x, but the spreads overlap the 1.1x threshold.
    v = judge([1.0, 1.2, 1.4, 1.2, 1.0], [1.0, 1.2, 0.8, 1.0, 1.0], threshold=1.1)
    assert v.kind == "inconclusive"
    assert v.low < 1.1 < v.high


def test_at_most_direction() -> None:
    same = [1.0, 1.01, 0.99, 1.0, 1.0]
    assert judge(same, same, threshold=1.1, direction="at_most").kind == "holds"
    assert judge([2.0] * 5, [1.0] * 5, threshold=1.1, direction="at_most").kind == "does not hold"
    noisy = judge([1.0, 1.3, 1.1, 1.2, 1.0], [1.0, 0.95, 1.05, 1.0, 1.0], threshold=1.1,
                  direction="at_most")
    assert noisy.kind == "inconclusive"


def test_deterministic_sizes_have_no_spread() -> None:
    v = judge([4 * 1024.0] * 3, [1024.0] * 3, threshold=2.0)
    assert (v.kind, v.low, v.high) == ("holds", 4.0, 4.0)
    assert v.describe() == "4.00x"


def test_zero_candidate_gives_infinite_ratio_not_an_error() -> None:
    v = judge([100.0, 100.0], [0.0, 0.0], threshold=10.0)
    assert v.kind == "holds" and math.isinf(v.ratio)
    assert v.describe() == "infx"


def test_describe_shows_the_spread() -> None:
    v = judge([1.0, 1.1, 1.2, 1.1, 1.0], [0.5, 0.5, 0.5, 0.5, 0.5], threshold=1.5)
    assert v.describe().startswith(f"{v.ratio:.2f}x (")


@pytest.mark.parametrize(("kwargs", "match"), [({"threshold": 0.0}, "threshold"),
                                                ({"threshold": 1.0, "direction": "up"}, "direction")])
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        judge([1.0], [1.0], **kwargs)  # type: ignore[arg-type]


samples = st.lists(st.floats(min_value=1e-6, max_value=1e3, allow_nan=False), min_size=1, max_size=15)


# deadline=None: hypothesis's default 200 ms per example is a wall-clock bound that a
# busy machine (or a garbage collection) can break; these properties are about values.
@settings(deadline=None)
@given(samples, samples, st.floats(min_value=0.01, max_value=100.0),
       st.sampled_from(["at_least", "at_most"]))
def test_interval_contains_the_median_ratio_and_verdict_is_consistent(
        base: list[float], cand: list[float], threshold: float, direction: str) -> None:
    v = judge(base, cand, threshold=threshold, direction=direction)  # type: ignore[arg-type]
    assert v.low <= v.ratio <= v.high
    if v.kind == "holds":
        assert (v.low >= threshold) if direction == "at_least" else (v.high <= threshold)
    elif v.kind == "does not hold":
        assert (v.high < threshold) if direction == "at_least" else (v.low > threshold)
    else:
        assert v.low <= threshold <= v.high or v.low < threshold < v.high


@settings(deadline=None)
@given(samples, samples, st.floats(min_value=1e-3, max_value=1e3))
def test_verdict_does_not_depend_on_the_unit(base: list[float], cand: list[float],
                                             scale: float) -> None:
    a = judge(base, cand, threshold=1.1)
    b = judge([x * scale for x in base], [x * scale for x in cand], threshold=1.1)
    assert b.ratio == pytest.approx(a.ratio, rel=1e-9)
    if not (math.isclose(a.low, 1.1, rel_tol=1e-9) or math.isclose(a.high, 1.1, rel_tol=1e-9)):
        assert a.kind == b.kind


@settings(deadline=None)
@given(samples, samples)
def test_swapping_variants_inverts_the_ratio(base: list[float], cand: list[float]) -> None:
    a = judge(base, cand, threshold=1.0)
    b = judge(cand, base, threshold=1.0)
    assert a.ratio * b.ratio == pytest.approx(1.0)
    assert a.low * b.high == pytest.approx(1.0)
