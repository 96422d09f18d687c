"""What the explorer accepts: each value's range or choices, and the one-line refusals."""

from __future__ import annotations

import pytest

from glowflow.explorer.checks import (
    ExplorerError,
    UnknownImage,
    check_amounts,
    check_label,
    check_levels,
    check_path,
    check_range,
)


def test_values_in_range_pass_unchanged():
    assert check_range("t", 0.0, (0.0, 1.0)) == 0.0 and check_range("t", 1.0, (0.0, 1.0)) == 1.0
    assert check_amounts({"B": -2, "A": 0.5, "C": 0}, ["A", "B", "C"]) == {"A": 0.5, "B": -2.0}
    assert check_levels(None, 3) == "mmm" and check_levels("abm", 3) == "abm"
    assert check_path("spherical") == "spherical"


def test_a_label_is_needed_only_by_a_class_conditional_model():
    assert check_label(None, None) is None
    assert check_label(None, 10) == 0 and check_label(9, 10) == 9
    with pytest.raises(ExplorerError, match="not class-conditional: drop label"):
        check_label(0, None)
    with pytest.raises(ExplorerError, match=r"label must lie in \[0, 9\], got 10"):
        check_label(10, 10)


@pytest.mark.parametrize(
    "call, fragment",
    [(lambda: check_range("t", float("nan"), (0.0, 1.0)), "t must lie in [0.0, 1.0], got nan"),
     (lambda: check_amounts({"X": 1}, []), "unknown attribute 'X': this model has none"),
     (lambda: check_amounts({"X": 1}, ["A"]), "this model has 1 (see /api/attributes)"),
     (lambda: check_levels("ab", 3), "levels must be 3 letters"),
     (lambda: check_path("zigzag"), "path must be one of linear, spherical, got 'zigzag'")],
)  # fmt: skip
def test_a_value_outside_is_refused_with_what_is_allowed(call, fragment):
    with pytest.raises(ExplorerError) as e:
        call()
    assert fragment in str(e.value)


def test_an_unknown_image_is_a_404_kind_of_error_that_names_the_id():
    e = UnknownImage("abc")
    assert (
        isinstance(e, ExplorerError) and e.image_id == "abc" and "upload the file again" in str(e)
    )
