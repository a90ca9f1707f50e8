"""Labels files in every accepted form, and malformed ones refused without evaluating anything."""

import pytest

from explainers.errors import InputError
from explainers.models.labels import parse_labels


@pytest.mark.parametrize(
    "text",
    [
        '["cat", "dog", "person"]',
        '{"0": "cat", "1": "dog", "2": "person"}',
        "{0: 'cat', 1: 'dog', 2: 'person'}",
        "{2: 'person', 0: 'cat', 1: 'dog'}",
        "cat\ndog\nperson\n",
        "\ufeffcat\r\ndog\r\n\r\nperson",
        '{"0": ["n02123045", "cat"], "1": ["n02084071", "dog"], "2": ["n00007846", "person"]}',
    ],
    ids=["json-list", "json-dict", "dict-literal", "unordered-literal", "lines", "bom-crlf", "keras-index"],
)
def test_every_format_gives_the_names_in_output_order(text):
    assert parse_labels(text.encode(), "labels.txt") == ["cat", "dog", "person"]


def test_duplicate_names_are_told_apart_by_index():
    assert parse_labels("crane\nbird\ncrane") == ["crane (0)", "bird", "crane (2)"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{0: 'cat', 2: 'dog'}", "no name for index 1"),
        ("{'a': 'cat'}", "not a class index"),
        ("{0: 'cat',", "neither valid JSON nor a Python literal"),
        ("{0: __import__('os').system('touch /tmp/pwned')}", "neither valid JSON nor a Python literal"),
        ("", "is empty"),
        ("[1.5e400, {}]", "not text"),
    ],
    ids=["gap", "bad-key", "truncated", "code", "empty", "not-text"],
)
def test_malformed_labels_get_one_sentence(text, expected):
    with pytest.raises(InputError) as caught:
        parse_labels(text.encode(), "labels.txt")
    assert "'labels.txt'" in str(caught.value) and expected in str(caught.value)


def test_non_utf8_bytes_are_refused():
    with pytest.raises(InputError, match="not UTF-8"):
        parse_labels(b"\xff\xfe\x00c\x00a", "labels.txt")
