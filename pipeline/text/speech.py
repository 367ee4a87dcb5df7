"""Written text -> words a speech synthesiser can say, and long texts -> sentence pieces.

SpeechT5's tokenizer is character-level: it reads "1984" as four unknown-ish digit
characters, "$5" as a symbol and a digit. `normalize_for_speech` spells such things out
the way an English reader says them, so the model only sees letters and punctuation.

English rules, applied in this order (each one sees the output of the previous):

1. Unicode NFKC ("½" -> "1⁄2", "℃" -> "°C", full-width digits become plain), typographic
   dashes between words become commas (a pause); an en dash between digits means "to".
2. Abbreviations: Mr. Mrs. Ms. Dr. Prof. St. Jr. Sr. Mt. and the lowercase e.g. i.e.
   etc. vs. approx. a.m. p.m. No. (before a number). "Dr." and "St." before a
   capitalised word are "Doctor" and "Saint", otherwise "Drive" and "Street".
3. A minus sign before a number (at the start or after a space or bracket) -> "minus";
   a hyphen between two digits is left alone (phone numbers, dates).
4. Currency before a number: $ € £ ¥, with cents/pence ("$5.50" -> "five dollars and
   fifty cents") and scale words ("$1.5 million" -> "one point five million dollars").
5. Percent ("45%"), temperatures ("20°C", "-4 °F") and bare degrees ("90°").
6. Ordinals with a suffix: 1st 2nd 3rd 4th 21st 100th 1,000th.
7. Decades ("1980s" -> "nineteen eighties") and times ("10:30" -> "ten thirty",
   "9:05" -> "nine oh five", "10:00" -> "ten o'clock").
8. Every other number: thousands separators ("1,234"), decimals ("3.14" -> "three point
   one four", ".5" -> "point five"); a bare four-digit number from 1100 to 2099 reads as
   a year ("1984" -> "nineteen eighty-four", "2005" -> "two thousand five", "2024" ->
   "twenty twenty-four"), which is also how English says such counts ("fifteen hundred");
   write "1,984" for the count. Integers beyond 999 trillion and numbers with leading
   zeros are read digit by digit.
9. Symbols: & @ + = # × and a stray % or °.
10. Whitespace collapsed, no space before , . ; : ! ?

Other languages get only steps 1 and 10: spelling numbers out in English inside, say,
German text would be worse than leaving the digits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
)  # fmt: skip
_TENS = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
)  # fmt: skip
_SCALES = (
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
_MAX_CARDINAL = 10**15 - 1
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def cardinal(n: int) -> str:
    """English words for an integer: 1234 -> "one thousand two hundred thirty-four"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > _MAX_CARDINAL:
        return digits(str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{cardinal(head)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")  # pragma: no cover


def ordinal(n: int) -> str:
    """English ordinal words: 21 -> "twenty-first", 100 -> "one hundredth"."""
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    stem, hyphen, unit = last.rpartition("-")
    if unit in _ORDINAL_WORDS:
        unit = _ORDINAL_WORDS[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return f"{head}{sep}{stem}{hyphen}{unit}"


def digits(s: str) -> str:
    """Each digit on its own: "007" -> "zero zero seven"."""
    return " ".join(_ONES[int(c)] for c in s if c.isdigit())


def year(n: int) -> str:
    """How English reads a year: 1984 -> "nineteen eighty-four", 1905 -> "nineteen oh five",
    1900 -> "nineteen hundred", 2005 -> "two thousand five", 2024 -> "twenty twenty-four"."""
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} " + (f"oh {_ONES[low]}" if low < 10 else cardinal(low))


def decimal(text: str) -> str:
    """A number as written, without sign: "1,234" , "3.14", ".5", "007"."""
    whole, _, frac = text.replace(",", "").partition(".")
    if len(whole) > 1 and whole.startswith("0"):
        spoken = digits(whole)
    elif whole:
        spoken = cardinal(int(whole))
    else:
        spoken = ""
    if frac:
        spoken = f"{spoken} point {digits(frac)}".strip()
    return spoken


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


# A number as written: thousands separators, decimals, or a bare fraction part.
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_NOT_AFTER_NUMBER = r"(?<!\d)"

_TITLES = {
    "Mr": "Mister",
    "Mrs": "Missus",
    "Ms": "Miz",
    "Prof": "Professor",
    "Jr": "Junior",
    "Sr": "Senior",
    "Mt": "Mount",
}
_LOWER_ABBREVIATIONS = {
    "e.g.": "for example",
    "i.e.": "that is",
    "vs.": "versus",
    "approx.": "approximately",
    "a.m.": "a m",
    "p.m.": "p m",
}
_CURRENCIES = {
    # symbol: (one, many, hundredth one, hundredth many)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_SCALE_WORDS = {"thousand", "million", "billion", "trillion"}
_SYMBOLS = {
    "&": " and ",
    "@": " at ",
    "+": " plus ",
    "=": " equals ",
    "×": " times ",
    "%": " percent ",
    "°": " degrees ",
}


def _sub(pattern: str, flags: int = 0) -> Callable[[Callable[[re.Match], str], str], str]:
    compiled = re.compile(pattern, flags)
    return lambda fn, text: compiled.sub(fn, text)


def _spaced(m: re.Match, words: str) -> str:
    """`words` replacing `m`, with a space where it would otherwise touch a letter."""
    before = m.string[m.start() - 1] if m.start() else ""
    after = m.string[m.end()] if m.end() < len(m.string) else ""
    return (" " if before.isalnum() else "") + words + (" " if after.isalnum() else "")


def _abbreviations(text: str) -> str:
    def title(m: re.Match) -> str:
        word, next_char = m.group(1), m.group(2)
        if word in ("Dr", "St"):
            before_name = next_char.isupper()
            word = {"Dr": ("Drive", "Doctor"), "St": ("Street", "Saint")}[word][before_name]
        else:
            word = _TITLES[word]
        # At the very end the period also ends the sentence: keep one.
        return word + (f" {next_char}" if next_char else ".")

    text = re.sub(r"\b(Mrs|Mr|Ms|Prof|Jr|Sr|Mt|Dr|St)\.\s*(\S?)", title, text)
    for short, long in _LOWER_ABBREVIATIONS.items():
        text = re.sub(rf"(?<!\w){re.escape(short)}", long, text, flags=re.IGNORECASE)
    # "etc." keeps its period where it also ends the sentence.
    text = re.sub(r"\betc\.(?=\s*$|\s+[A-Z])", "et cetera.", text)
    text = re.sub(r"\betc\.", "et cetera", text)
    return re.sub(r"\bNo\.\s*(?=\d)", "number ", text)


def _currency(m: re.Match) -> str:
    one, many, cent_one, cent_many = _CURRENCIES[m.group("cur")]
    amount, scale = m.group("amount"), (m.group("scale") or "").lower()
    if scale:
        return _spaced(m, f"{decimal(amount)} {scale} {many}")
    whole, _, frac = amount.replace(",", "").partition(".")
    units = int(whole or "0")
    unit_words = f"{cardinal(units)} {one if units == 1 else many}"
    if not frac or int(frac) == 0:
        return _spaced(m, unit_words)
    if len(frac) != 2:
        return _spaced(m, f"{decimal(amount)} {many}")
    cents = int(frac)
    cent_words = f"{cardinal(cents)} {cent_one if cents == 1 else cent_many}"
    return _spaced(m, cent_words if units == 0 else f"{unit_words} and {cent_words}")


def _temperature(m: re.Match) -> str:
    amount = m.group("amount")
    unit = {"C": " Celsius", "F": " Fahrenheit"}.get((m.group("unit") or "").upper(), "")
    degrees = "degree" if amount in ("1", "1.0") else "degrees"
    return _spaced(m, f"{decimal(amount)} {degrees}{unit}")


def _time(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if minute == 0:
        return _spaced(m, f"{cardinal(hour)} o'clock")
    spoken = f"oh {_ONES[minute]}" if minute < 10 else cardinal(minute)
    return _spaced(m, f"{cardinal(hour)} {spoken}")


def _number(m: re.Match) -> str:
    text = m.group(0)
    if re.fullmatch(r"1[1-9]\d\d|20\d\d", text):
        return _spaced(m, year(int(text)))
    return _spaced(m, decimal(text))


def _english(text: str) -> str:
    text = _abbreviations(text)
    text = re.sub(r"(?<=\d)\s*–\s*(?=\d)", " to ", text)
    text = re.sub(r"\s*[–—]\s*", ", ", text)
    text = re.sub(r"(?<![\w)\]])[-−](?=[$€£¥]?\.?\d)", "minus ", text)
    cur = "|".join(re.escape(c) for c in _CURRENCIES)
    scales = "|".join(_SCALE_WORDS)
    text = _sub(rf"(?P<cur>{cur})\s?(?P<amount>{_NUM})(?:\s(?P<scale>{scales})\b)?", re.I)(
        _currency, text
    )
    text = _sub(rf"{_NOT_AFTER_NUMBER}(?P<amount>{_NUM})\s?%")(
        lambda m: _spaced(m, f"{decimal(m.group('amount'))} percent"), text
    )
    text = _sub(rf"{_NOT_AFTER_NUMBER}(?P<amount>{_NUM})\s?°\s?(?P<unit>[CF](?![a-z]))?")(
        _temperature, text
    )
    text = _sub(rf"{_NOT_AFTER_NUMBER}(\d{{1,3}}(?:,\d{{3}})+|\d+)(?:st|nd|rd|th)\b", re.I)(
        lambda m: _spaced(m, ordinal(int(m.group(1).replace(",", "")))), text
    )
    text = _sub(rf"{_NOT_AFTER_NUMBER}(1[1-9]|20)(\d)0s\b")(
        lambda m: _spaced(m, _decade(int(m.group(1) + m.group(2) + "0"))), text
    )
    text = _sub(rf"{_NOT_AFTER_NUMBER}\b([01]?\d|2[0-3]):([0-5]\d)\b(?!:)")(_time, text)
    text = re.sub(r"#\s?(?=\d)", "number ", text)
    text = _sub(rf"{_NOT_AFTER_NUMBER}{_NUM}")(_number, text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    return text


def _decade(n: int) -> str:
    head, _, last = year(n).rpartition(" ")
    return f"{head} {_plural(last)}".strip()


def normalize_for_speech(text: str, language: str = "en") -> str:
    """`text` as words to speak (see the module doc for the rules); "" for blank input."""
    text = unicodedata.normalize("NFKC", text)
    if language.lower().split("-")[0] == "en":
        text = _english(text)
    text = " ".join(text.split())
    return re.sub(r"\s+([,.;:!?])", r"\1", text)


# Sentence ends: . ! ? … (with closing quotes/brackets) then whitespace. Not after a
# single capital (an initial, "J. R. R. Tolkien") or a known abbreviation.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_NO_BREAK_AFTER = re.compile(
    r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Mt|No|vs|etc|e\.g|i\.e|approx))\.[\"'”’)\]]*$"
)
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Cut `text` into pieces of at most `max_chars` characters for synthesis.

    A text that fits is one piece. Otherwise it is cut at sentence ends, and
    consecutive sentences are packed into pieces up to `max_chars`; a sentence still
    longer than that is cut at commas, semicolons and colons, then between words, and
    a single longer word is cut hard. Whitespace is collapsed and no piece is empty;
    joining the pieces with spaces gives the collapsed text back (but for hard cuts).
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    units: list[str] = []
    for sentence in _sentences(text):
        units.extend(_fit(sentence, max_chars))
    return _pack(units, max_chars)


def _sentences(text: str) -> list[str]:
    sentences, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if _NO_BREAK_AFTER.search(text, start, m.start() + len(m.group(0).rstrip())):
            continue
        sentences.append(text[start : m.start()] + m.group(0).rstrip())
        start = m.end()
    return [*sentences, text[start:]] if start < len(text) else sentences


def _fit(sentence: str, max_chars: int) -> list[str]:
    """A sentence as units no longer than `max_chars`: itself, or its clauses, or its
    words, or hard cuts of a word (the caller packs the units back together)."""
    if len(sentence) <= max_chars:
        return [sentence]
    clauses = _CLAUSE_END.split(sentence)
    if len(clauses) > 1:
        return [u for c in clauses for u in _fit(c, max_chars)]
    words = sentence.split(" ")
    if len(words) > 1:
        return [u for w in words for u in _fit(w, max_chars)]
    return [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]


def _pack(units: list[str], max_chars: int) -> list[str]:
    """Join consecutive units with a space while the result stays within `max_chars`."""
    pieces: list[str] = []
    for unit in units:
        if pieces and len(pieces[-1]) + 1 + len(unit) <= max_chars:
            pieces[-1] += " " + unit
        else:
            pieces.append(unit)
    return pieces
