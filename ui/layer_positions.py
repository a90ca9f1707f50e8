"""Layers chosen by typed position from the end ("1, 6, 20"): every token checked, one sentence per bad one."""

from __future__ import annotations

import re

INPUT_NAME = "Positions from the end"
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")


def parse_positions(text: str, count: int) -> tuple[list[int], list[str]]:
    """The valid positions in ``text`` (1 = last of ``count`` layers), and one sentence per token that is not one.

    Tokens are separated by commas, semicolons or spaces. A token is refused when
    it is not a whole number, lies outside 1..``count``, or repeats an earlier
    position; the valid ones are kept, in the order typed.
    """
    positions: list[int] = []
    problems: list[str] = []
    for token in (t for t in re.split(r"[,;\s]+", text) if t):
        if not _WHOLE_NUMBER.fullmatch(token):
            problems.append(f"{INPUT_NAME}: '{token}' is not a whole number.")
            continue
        position = int(token)
        if not 1 <= position <= count:
            problems.append(f"{INPUT_NAME}: {token} is outside 1 to {count}, this model's spatial layers counted "
                            "from the end.")
        elif position in positions:
            problems.append(f"{INPUT_NAME}: {token} is listed more than once; the layer is shown once.")
        else:
            positions.append(position)
    return positions, problems


def positions_of(layers: list[str], chosen: list[str]) -> str:
    """``chosen`` layers as the text ``parse_positions`` reads back, nearest the output first (1 = last of ``layers``)."""
    return ", ".join(str(p) for p in sorted(len(layers) - layers.index(path) for path in chosen if path in layers))
