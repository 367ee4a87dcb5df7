"""Reports built from the written output tables, through the views of `pipeline.query`.

- `report`: `build_report(ReportRequest)` -> the report dict (report.json), `write_report`
  writes report.json, report.md and report.html;
- `asr`, `compare`, `drift`, `classes`, `operations`: the sections, each a few DuckDB
  aggregates over the views;
- `stats` (bootstrap intervals, matched-pairs test), `align` (sclite's tallies);
- `html` + `templates/report.html.j2` (Jinja2, autoescaped; each result table's part in
  `templates/tables/`, the shared macros in `templates/_macros.html.j2`) and `plots`
  (matplotlib SVG);
- `labels`, `syntheses`: Arrow summaries of classification and synthesis rows.
"""
