"""Layers typed by position from the end: every token is checked, valid ones are used, each bad one named once."""

import pytest

from ui.layer_positions import INPUT_NAME, parse_positions, positions_of


def test_valid_positions_are_kept_in_the_order_typed():
    assert parse_positions("1, 6, 20", 30) == ([1, 6, 20], [])
    assert parse_positions(" 3;1  2,", 5) == ([3, 1, 2], [])  # commas, semicolons or spaces; blanks ignored


OUTSIDE = "is outside 1 to 150, this model's spatial layers counted from the end."
NOT_WHOLE = "is not a whole number."


@pytest.mark.parametrize(("text", "positions", "problems"), [
    # every bad token gets its own sentence and the good ones stay
    ("0, abc, 999", [], [f"0 {OUTSIDE}", f"'abc' {NOT_WHOLE}", f"999 {OUTSIDE}"]),
    # signs, decimals and exponents are not read as digits (before: {1, 2, 3, 5} from the digits inside the tokens)
    ("-3, 2.5, 1e2, 4", [4], [f"-3 {OUTSIDE}", f"'2.5' {NOT_WHOLE}", f"'1e2' {NOT_WHOLE}"]),
])
def test_each_bad_token_gets_its_own_sentence(text, positions, problems):
    assert parse_positions(text, 150) == (positions, [f"{INPUT_NAME}: {problem}" for problem in problems])


def test_a_repeated_position_is_used_once_and_reported():
    positions, problems = parse_positions("2, 5, 02", 10)
    assert positions == [2, 5]
    assert problems == [f"{INPUT_NAME}: 02 is listed more than once; the layer is shown once."]


def test_empty_text_chooses_nothing_without_complaint():
    assert parse_positions("", 10) == ([], [])
    assert parse_positions(" , ", 10) == ([], [])


def test_positions_of_reads_back_to_the_same_layers():
    layers = [f"layer_{i}" for i in range(10)]
    text = positions_of(layers, ["layer_1", "layer_5", "layer_9"])
    assert text == "1, 5, 9"
    positions, problems = parse_positions(text, len(layers))
    assert sorted(layers[-p] for p in positions) == ["layer_1", "layer_5", "layer_9"] and not problems
