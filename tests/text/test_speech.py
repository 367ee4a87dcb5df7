"""normalize_for_speech and split_sentences: written text -> speakable pieces."""

from __future__ import annotations

import pytest

from pipeline.text.speech import (
    cardinal,
    normalize_for_speech,
    ordinal,
    split_sentences,
    year,
)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (21, "twenty-one"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1234, "one thousand two hundred thirty-four"),
        (100_000, "one hundred thousand"),
        (1_000_001, "one million one"),
        (2_500_000_000, "two billion five hundred million"),
        (-42, "minus forty-two"),
    ],
)
def test_cardinal(n, words):
    assert cardinal(n) == words


def test_cardinal_reads_huge_numbers_digit_by_digit():
    assert cardinal(10**15) == "one " + "zero " * 14 + "zero"


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (4, "fourth"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty-first"),
        (42, "forty-second"),
        (100, "one hundredth"),
        (103, "one hundred third"),
        (1000, "one thousandth"),
    ],
)
def test_ordinal(n, words):
    assert ordinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1984, "nineteen eighty-four"),
        (1905, "nineteen oh five"),
        (1900, "nineteen hundred"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2010, "twenty ten"),
        (2024, "twenty twenty-four"),
        (1100, "eleven hundred"),
        (1215, "twelve fifteen"),
    ],
)
def test_year(n, words):
    assert year(n) == words


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        # numbers
        ("I have 3 cats.", "I have three cats."),
        ("1,234 apples", "one thousand two hundred thirty-four apples"),
        ("1,000,000 stars", "one million stars"),
        ("pi is 3.14", "pi is three point one four"),
        ("take .5 of it", "take point five of it"),
        ("0.25", "zero point two five"),
        ("agent 007", "agent zero zero seven"),
        ("It was -4 outside", "It was minus four outside"),
        ("(-2.5)", "(minus two point five)"),
        ("COVID-19 and mp3", "COVID-nineteen and mp three"),
        ("room 42b", "room forty-two b"),
        # years and decades
        ("Born in 1984.", "Born in nineteen eighty-four."),
        ("In 2005 and 2024", "In two thousand five and twenty twenty-four"),
        ("the 1980s and 1900s", "the nineteen eighties and nineteen hundreds"),
        ("1,984 people", "one thousand nine hundred eighty-four people"),
        ("from 2019–2021", "from twenty nineteen to twenty twenty-one"),
        # ordinals
        ("the 1st, 2nd, 3rd and 4th", "the first, second, third and fourth"),
        ("her 21st birthday", "her twenty-first birthday"),
        ("the 100th time", "the one hundredth time"),
        ("the 1,000th visitor", "the one thousandth visitor"),
        # currency
        ("$5", "five dollars"),
        ("$1", "one dollar"),
        ("It costs $5.50.", "It costs five dollars and fifty cents."),
        ("$0.99", "ninety-nine cents"),
        ("$0.01", "one cent"),
        ("$3.00", "three dollars"),
        ("$1,250", "one thousand two hundred fifty dollars"),
        ("$1.5 million", "one point five million dollars"),
        ("$2 billion", "two billion dollars"),
        ("€3.50", "three euros and fifty cents"),
        ("£1", "one pound"),
        ("£0.50", "fifty pence"),
        ("£2.01", "two pounds and one penny"),
        ("¥100", "one hundred yen"),
        ("-$5", "minus five dollars"),
        ("$2.5", "two point five dollars"),
        # percent, temperature
        ("45%", "forty-five percent"),
        ("3.5 %", "three point five percent"),
        ("-2% growth", "minus two percent growth"),
        ("20°C", "twenty degrees Celsius"),
        ("68 °F", "sixty-eight degrees Fahrenheit"),
        ("-5°C", "minus five degrees Celsius"),
        ("1°C", "one degree Celsius"),
        ("a 90° angle", "a ninety degrees angle"),
        ("20℃", "twenty degrees Celsius"),
        # times
        ("at 10:30", "at ten thirty"),
        ("at 9:05", "at nine oh five"),
        ("at 10:00", "at ten o'clock"),
        # symbols
        ("Tom & Jerry", "Tom and Jerry"),
        ("me@home", "me at home"),
        ("2+2=4", "two plus two equals four"),
        ("#1 fan", "number one fan"),
        ("No. 5", "number five"),
        ("3×4", "three times four"),
        # abbreviations
        ("Dr. Smith", "Doctor Smith"),
        ("Mulholland Dr. at night", "Mulholland Drive at night"),
        ("St. Louis", "Saint Louis"),
        ("Baker St.", "Baker Street."),
        ("Mr. and Mrs. Jones", "Mister and Missus Jones"),
        ("Ms. Lee, Prof. Kim", "Miz Lee, Professor Kim"),
        ("John Smith Jr. is here", "John Smith Junior is here"),
        ("fruit, e.g. apples", "fruit, for example apples"),
        ("i.e. this", "that is this"),
        ("cats vs. dogs", "cats versus dogs"),
        ("apples, pears, etc.", "apples, pears, et cetera."),
        ("apples, etc. and more", "apples, et cetera and more"),
        ("at 7 a.m.", "at seven a m"),
        # whitespace and dashes
        ("  lots   of\n space\t", "lots of space"),
        ("wait — what", "wait, what"),
        ("hello , world !", "hello, world!"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_normalize_for_speech(text, spoken):
    assert normalize_for_speech(text) == spoken


def test_normalize_leaves_no_digits_or_spelled_symbols_in_english():
    text = "On 3/4 at 10:30, 45% of 1,234 people paid $5.50 (€3) for #2 & 1st-class seats."
    out = normalize_for_speech(text)
    assert not any(c.isdigit() for c in out)
    assert not any(c in out for c in "$€%#&")


def test_other_languages_get_only_unicode_and_whitespace_cleanup():
    assert normalize_for_speech("Es kostet  5 € (１０%)", language="de") == "Es kostet 5 € (10%)"
    assert normalize_for_speech("I have 3 cats", language="en-US") == "I have three cats"


def test_normalize_is_idempotent_on_its_output():
    text = "Dr. Smith paid $5.50 in 1984 for 3 items, i.e. 45% off!"
    once = normalize_for_speech(text)
    assert normalize_for_speech(once) == once


def test_short_text_is_one_piece():
    assert split_sentences("Hello there. How are you?", 100) == ["Hello there. How are you?"]
    assert split_sentences("   ", 10) == []
    assert split_sentences("a  b\nc", 10) == ["a b c"]


def test_split_packs_sentences_up_to_the_limit():
    text = "One two. Three four! Five six? Seven eight."
    assert split_sentences(text, 20) == ["One two. Three four!", "Five six?", "Seven eight."]
    assert split_sentences(text, 9) == [
        "One two.",
        "Three",
        "four!",
        "Five six?",
        "Seven",
        "eight.",
    ]


def test_split_does_not_break_after_initials_or_titles():
    text = "J. R. R. Tolkien met Mr. Lewis. They talked."
    assert split_sentences(text, 35) == ["J. R. R. Tolkien met Mr. Lewis.", "They talked."]


def test_split_keeps_closing_quotes_with_their_sentence():
    text = 'He said "stop." Then he left. (Quietly.) Done.'
    assert split_sentences(text, 16) == ['He said "stop."', "Then he left.", "(Quietly.) Done."]


def test_long_sentence_splits_at_commas_then_spaces():
    text = "first part here, second part here; third part, and a very long tail end"
    pieces = split_sentences(text, 20)
    assert pieces == [
        "first part here,",
        "second part here;",
        "third part, and a",
        "very long tail end",
    ]


def test_overlong_word_is_cut_hard():
    assert split_sentences("ab " + "x" * 25, 10) == ["ab", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxx"]


@pytest.mark.parametrize("max_chars", [10, 12, 30, 80])
def test_pieces_respect_the_limit_and_keep_every_word(max_chars):
    text = (
        "Doctor Smith arrived at nine. He said, quietly but firmly, that the meeting "
        "would begin without delay; nobody objected! Was that wise? Perhaps not."
    )
    pieces = split_sentences(text, max_chars)
    assert all(0 < len(p) <= max_chars for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_max_chars_must_be_positive():
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("text", 0)
