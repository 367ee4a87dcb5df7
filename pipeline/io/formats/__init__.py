"""The input formats, one module each, picked by name from `FORMATS`.

Each module provides an `InputFormat` (`pipeline/io/units.py`): how to cut a listing
into work units, and how to read one unit into item rows. A new format is one module
here and one entry below (and its name in `spec.InputSpec.format`).
"""

from __future__ import annotations

from pipeline.io.formats import files, parquet, texts, webdataset
from pipeline.io.units import InputFormat

FORMATS: dict[str, InputFormat] = {
    f.name: f for f in (files.FORMAT, webdataset.FORMAT, parquet.FORMAT, texts.FORMAT)
}
