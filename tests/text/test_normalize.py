import json
import pickle
from importlib import resources

import pytest

from pipeline.text.normalize import NORMALIZER_NAMES, get_normalizer


def test_names_are_the_ones_the_spec_accepts():
    assert NORMALIZER_NAMES == ("none", "basic", "whisper_english")
    for name in NORMALIZER_NAMES:
        assert get_normalizer(name).name == name


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'none', 'basic', 'whisper_english'"):
        get_normalizer("Whisper")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello,   World!\n", "Hello, World!"),
        ("\t", ""),
        ("", ""),
    ],
)
def test_none_only_collapses_whitespace(text, expected):
    assert get_normalizer("none")(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("Don't stop", "don't stop"),
        ("it\u2019s o\u02bcclock", "it's o'clock"),
        ("'quoted' goin' 'tis", "quoted goin tis"),
        ("well-known state\u2014of\u2013the art", "well known state of the art"),
        ("1,000 people; 3.14 and 10:30.", "1000 people 3.14 and 10 30"),
        ("1, 2, 3", "1 2 3"),
        ("e.g. U.S.A.", "e g u s a"),
        ("Stra\u00dfe \uff21\uff22\uff23 \ufb01ne", "strasse abc fine"),
        ("$5 + \u20ac3 \U0001f600 caf\u00e9", "$5 + \u20ac3 \U0001f600 caf\u00e9"),
        ("soft\u00adhyphen zero\u200bwidth \ufeffbom", "softhyphen zero width bom"),
        (
            "\u00abBonjour\u00bb \u00bfqu\u00e9? \u300c\u65e5\u672c\u300d",
            "bonjour qu\u00e9 \u65e5\u672c",
        ),
        ("snake_case", "snake case"),
        ("  ...  ", ""),
    ],
)
def test_basic(text, expected):
    assert get_normalizer("basic")(text) == expected


def test_basic_is_idempotent():
    basic = get_normalizer("basic")
    once = basic("\u00abIt\u2019s 1,000\u2014no, 3.14!\u00bb said O'Neil.")
    assert once == "it's 1000 no 3.14 said o'neil"
    assert basic(once) == once


# From openai-whisper's tests/test_normalizer.py (version 20250625).
WHISPER_CASES = [
    ("two", "2"),
    ("thirty one", "31"),
    ("twenty five", "25"),
    ("five twenty four", "524"),
    ("nineteen ninety nine", "1999"),
    ("twenty nineteen", "2019"),
    ("two point five million", "2500000"),
    ("four point two billions", "4200000000s"),
    ("200 thousand dollars", "$200000"),
    ("$20 million", "$20000000"),
    ("\u20ac52.4 million", "\u20ac52400000"),
    ("\u00a377 thousands", "\u00a377000s"),
    ("two double o eight", "2008"),
    ("forty three thousand two hundred and sixty", "43260"),
    ("nineteen fifties", "1950s"),
    ("thirty three thousand and three hundred and thirty third", "33333rd"),
    ("july third twenty twenty", "july 3rd 2020"),
    ("3 point 14", "3.14"),
    ("two point two five dollars", "$2.25"),
    ("seventy six per cent", "76%"),
    ("one triple oh one", "10001"),
    ("minus 500", "-500"),
    ("two dollars and seventy cents", "$2.70"),
    ("$0.36", "\u00a236"),
    ("forty eight and a half dollars", "$48.5"),
    ("b747", "b 747"),
    ("Let's", "let us"),
    ("he's like", "he is like"),
    ("she's been like", "she has been like"),
    ("10km", "10 km"),
    ("RC232", "rc 232"),
    ("Mr. Park visited Assoc. Prof. Kim Jr.", "mister park visited associate professor kim junior"),
    ("mobilisation", "mobilization"),
    ("The colour of the organisation", "the color of the organization"),
]


@pytest.mark.parametrize(("text", "expected"), WHISPER_CASES)
def test_whisper_english_matches_whispers_own_tests(text, expected):
    assert get_normalizer("whisper_english")(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello %", "hello"),  # Whisper's own code leaves "hello " here
        ("Um, [noise] I (laughs) agree.", "i agree"),
        ("hmm", ""),
    ],
)
def test_whisper_english_strips_what_whisper_leaves(text, expected):
    assert get_normalizer("whisper_english")(text) == expected


def test_spelling_mapping_ships_with_the_package():
    text = resources.files("pipeline.text").joinpath("english_spelling.json").read_text()
    mapping = json.loads(text)
    assert len(mapping) == 1739
    assert mapping["colour"] == "color"


@pytest.mark.parametrize("name", NORMALIZER_NAMES)
def test_normalizers_survive_pickling_after_use(name):
    # Ray ships stages (and their normaliser) to workers by pickling them.
    norm = get_normalizer(name)
    before = norm("Mr. Smith's colour, twenty five")
    clone = pickle.loads(pickle.dumps(norm))
    assert clone.name == name
    assert clone("Mr. Smith's colour, twenty five") == before
