"""Input and output: storage filesystems, input listing and reading, audio decoding, tables.

`units.py` holds what every input format shares (work units, item ids, item rows,
skipping done items); `formats/` one module per input format, picked by name;
`listing.py` lists the input on the driver and `reading.py` reads one unit in a task.
"""
