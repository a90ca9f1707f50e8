"""Layers typed by position from the end: every token is checked, valid ones are used, each bad one named once."""

from ui.layer_positions import INPUT_NAME, parse_positions, positions_of


def test_valid_positions_are_kept_in_the_order_typed():
    assert parse_positions("1, 6, 20", 30) == ([1, 6, 20], [])
    assert parse_positions(" 3;1  2,", 5) == ([3, 1, 2], [])  # commas, semicolons or spaces; blanks ignored


def test_every_bad_token_gets_its_own_sentence_and_the_good_ones_stay():
    positions, problems = parse_positions("0, abc, 999", 150)
    assert positions == []
    assert problems == [
        f"{INPUT_NAME}: 0 is outside 1 to 150, this model's spatial layers counted from the end.",
        f"{INPUT_NAME}: 'abc' is not a whole number.",
        f"{INPUT_NAME}: 999 is outside 1 to 150, this model's spatial layers counted from the end.",
    ]


def test_signs_decimals_and_exponents_are_not_read_as_digits():
    positions, problems = parse_positions("-3, 2.5, 1e2, 4", 150)
    assert positions == [4]  # before: {1, 2, 3, 5} from the digits inside the tokens
    assert problems == [
        f"{INPUT_NAME}: -3 is outside 1 to 150, this model's spatial layers counted from the end.",
        f"{INPUT_NAME}: '2.5' is not a whole number.",
        f"{INPUT_NAME}: '1e2' is not a whole number.",
    ]


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
