"""One self-contained index.html: every board as a sortable table, plots inline, no network.

A Content-Security-Policy forbids every fetch, so the page is provably offline; sorting is a few
lines of inline JS. `#sort=<table id>:<column key>:<asc|desc>` in the URL opens a table sorted,
and clicking a header updates it, so a sorted view can be shared as a link.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from suite.leaderboard.boards import NEUROBENCH_COLUMNS, Board
from suite.leaderboard.formatting import (
    DASH,
    NEUROBENCH_HEADER,
    adaptive,
    fixed,
    has_neurobench,
    integer,
    is_missing,
    model_label,
    neurobench_cells,
    short_ids,
    top1_cell,
)
from suite.leaderboard.references import citation
from suite.leaderboard.render_md import RANKING_NOTE
from suite.leaderboard.svg_plot import Point, Series, render_plot

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; white-space: nowrap; }
td.text, th.text { text-align: left; }
th button { all: unset; cursor: pointer; font-weight: bold; }
th[aria-sort=ascending] button::after { content: " \\25B2"; }
th[aria-sort=descending] button::after { content: " \\25BC"; }
tr.synthetic td { color: #666; background: #fafafa; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
.note, .notes { color: #555; font-size: .9rem; }
.scroll { overflow-x: auto; }
.badge { background: #eee; border-radius: 3px; padding: 0 .3rem; font-size: .8rem; }
"""

SCRIPT = """
(function () {
  function key(cell) { var v = cell.getAttribute('data-sort'); return v === null ? cell.textContent : v; }
  function sortTable(table, th, dir) {
    var col = th.cellIndex, numeric = th.getAttribute('data-type') === 'number';
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === '' || y === '') { return (x === '') - (y === ''); }  /* missing values stay last */
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return dir === 'asc' ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 'asc' ? 'ascending' : 'descending');
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.addEventListener('click', function () {
        var dir = th.getAttribute('aria-sort') === 'ascending' ? 'desc' : 'asc';
        sortTable(table, th, dir);
        try { history.replaceState(null, '', '#sort=' + table.id + ':' + th.getAttribute('data-key') + ':' + dir); }
        catch (e) { /* some file:// contexts refuse; sorting still worked */ }
      });
    });
    table.setAttribute('data-sortable', 'ready');
  });
  var wanted = /^#sort=([^:]+):([^:]+):(asc|desc)$/.exec(decodeURIComponent(location.hash));
  if (wanted) {
    var table = document.getElementById(wanted[1]);
    var th = table && table.querySelector('th[data-key="' + wanted[2] + '"]');
    if (th) { sortTable(table, th, wanted[3]); }
  }
})();
"""

# (key, header, type): type "number" sorts numerically, "text" alphabetically.
MEASURED_COLUMNS = (
    ("rank", "rank", "number"),
    ("model", "model", "text"),
    ("data", "data", "text"),
    ("t", "T", "number"),
    ("params", "params (M)", "number"),
    ("top1", "top-1 (%)", "number"),
    ("final", "final top-1 (%)", "number"),
    ("top5", "top-5 (%)", "number"),
    ("sops", "SOPs (G)", "number"),
    ("energy", "energy (mJ)", "number"),
    ("firing", "firing rate", "number"),
    ("speed", "samples/s", "number"),
    ("epochs", "epochs", "number"),
    ("runs", "runs", "text"),
)
NEUROBENCH_HTML_COLUMNS = tuple((key, label, "number") for key, label in zip(NEUROBENCH_COLUMNS, NEUROBENCH_HEADER))
REFERENCE_COLUMNS = (
    ("model", "model", "text"),
    ("t", "T", "number"),
    ("params", "params (M)", "number"),
    ("top1", "top-1 (%)", "number"),
    ("energy", "energy (mJ)", "number"),
    ("source", "source", "text"),
)


def _sort_value(value) -> str:
    if is_missing(value):
        return ""
    return repr(float(value)) if isinstance(value, (int, float)) else str(value)


def _cell(text: str, sort_value, kind: str, title: str = "") -> str:
    cls = ' class="text"' if kind == "text" else ""
    tip = f' title="{escape(title)}"' if title else ""
    return f'<td{cls} data-sort="{escape(_sort_value(sort_value))}"{tip}>{escape(text)}</td>'


def _table(table_id: str, columns, rows: list[list[str]], row_class: str = "") -> str:
    head = "".join(
        f'<th class="{kind}" data-key="{key}" data-type="{kind}" scope="col"><button type="button">{escape(label)}</button></th>'
        for key, label, kind in columns
    )
    cls = f' class="{row_class}"' if row_class else ""
    body = "".join(f"<tr{cls}>" + "".join(cells) + "</tr>" for cells in rows)
    return (
        f'<div class="scroll"><table class="sortable" id="{escape(table_id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _measured_table(table_id: str, table: pd.DataFrame, row_class: str = "") -> str:
    neurobench = has_neurobench(table)
    rows = [
        [
            _cell(integer(r.rank), r.rank, "number"),
            _cell(model_label(r.model, r.kind, r.checkpoint), r.model, "text", title=r.checkpoint),
            _cell(r.data_kind, r.data_kind, "text"),
            _cell(integer(r.time_steps), r.time_steps, "number"),
            _cell(fixed(r.params_m, 2), r.params_m, "number"),
            _cell(top1_cell(r.top1_mean, r.top1_std, r.top1_n), r.top1_mean, "number"),
            _cell(fixed(r.top1_final, 2), r.top1_final, "number"),
            _cell(fixed(r.top5, 2), r.top5, "number"),
            _cell(adaptive(r.sops_g), r.sops_g, "number"),
            _cell(adaptive(r.energy_mj), r.energy_mj, "number"),
            _cell(fixed(r.firing_rate, 3), r.firing_rate, "number"),
            _cell(fixed(r.samples_per_s, 1), r.samples_per_s, "number"),
            _cell(integer(r.epochs), r.epochs, "number"),
            _cell(short_ids(r.run_ids), r.run_ids, "text", title=r.run_ids),
        ]
        + (
            [_cell(text, getattr(r, key), "number") for text, key in zip(neurobench_cells(r), NEUROBENCH_COLUMNS)]
            if neurobench else []
        )
        for r in table.itertuples(index=False)
    ]
    return _table(table_id, MEASURED_COLUMNS + (NEUROBENCH_HTML_COLUMNS if neurobench else ()), rows, row_class)


def _reference_table(table_id: str, references: pd.DataFrame) -> str:
    rows = [
        [
            _cell(r.model, r.model, "text"),
            _cell(integer(r.time_steps), r.time_steps, "number"),
            _cell(fixed(r.params_m, 2), r.params_m, "number"),
            _cell(fixed(r.top1, 2), r.top1, "number"),
            _cell(adaptive(r.energy_mj), r.energy_mj, "number"),
            _cell(citation(r), citation(r), "text"),
        ]
        for r in references.itertuples(index=False)
    ]
    return _table(table_id, REFERENCE_COLUMNS, rows)


def _points(table: pd.DataFrame, x_column: str, y_column: str, what: str) -> tuple[Point, ...]:
    points = []
    for row in table.to_dict("records"):
        x, y = row.get(x_column), row.get(y_column)
        if is_missing(x) or is_missing(y):
            continue
        t = "" if is_missing(row.get("time_steps")) else f" T={int(row['time_steps'])}"
        energy = "" if is_missing(row.get("energy_mj")) else f", {adaptive(row['energy_mj'])} mJ"
        points.append(Point(float(x), float(y), f"{what} {row['model']}{t}: top-1 {float(y):.2f}%{energy}"))
    return tuple(points)


def _reference_series(board: Board, x: str) -> list[Series]:
    """The published numbers and the synthetic runs, drawn beside the measured ones on every plot."""
    return [
        Series("published", _points(board.references, x, "top1", "published"), kind="published"),
        Series("synthetic (not comparable)", _points(board.synthetic, x, "top1_mean", "synthetic"), kind="synthetic"),
    ]


def _plots(board: Board) -> str:
    energy = render_plot(
        [Series("measured, real data", _points(board.real, "energy_mj", "top1_mean", "measured"))]
        + _reference_series(board, "energy_mj"),
        title=f"{board.title}: top-1 vs energy",
        x_label="energy per sample (mJ)",
        y_label="top-1 (%)",
        plot_id=f"plot-{board.slug}-energy",
        front_over=("real", "published"),
    )
    by_model = [
        Series(model, _points(group, "time_steps", "top1_mean", "measured"), connect=True)
        for model, group in board.real.groupby("model", sort=True)
    ] if not board.real.empty else []
    steps = render_plot(
        by_model + _reference_series(board, "time_steps"),
        title=f"{board.title}: top-1 vs time steps T",
        x_label="time steps T",
        y_label="top-1 (%)",
        plot_id=f"plot-{board.slug}-steps",
        integer_x=True,
    )
    parts = [
        energy or '<p class="note">No row has both an energy and a top-1 figure yet: nothing to plot against energy.</p>',
        steps or '<p class="note">No row has both T and a top-1 figure yet: nothing to plot against T.</p>',
    ]
    return '<div class="plots">' + "".join(parts) + "</div>"


def _board_section(board: Board) -> str:
    parts = [f'<section class="board" id="board-{escape(board.slug)}"><h2>{escape(board.title)}</h2>', _plots(board)]
    parts.append("<h3>Real data</h3>")
    parts.append(_measured_table(f"{board.slug}-real", board.real) if not board.real.empty else '<p class="note">No finished real-data runs yet.</p>')
    parts.append("<h3>Published results</h3>")
    parts.append(_reference_table(f"{board.slug}-published", board.references) if not board.references.empty else '<p class="note">None on file.</p>')
    if not board.synthetic.empty:
        parts.append('<h3>Synthetic data <span class="badge">not comparable</span></h3>')
        parts.append('<p class="note">Runs on generated data check the pipeline; their accuracy is never ranked with real data.</p>')
        parts.append(_measured_table(f"{board.slug}-synthetic", board.synthetic, row_class="synthetic"))
    notes = board.notes()
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def render_html(boards: list[Board], *, source: str, generated_at: str) -> str:
    nav = " · ".join(f'<a href="#board-{escape(b.slug)}">{escape(b.title)}</a>' for b in boards)
    runs = sum(b.run_count for b in boards)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Spikformer Suite leaderboards</title><style>{STYLE}</style></head><body>"
        "<header><h1>Spikformer Suite leaderboards</h1>"
        f'<p class="note">Generated {escape(generated_at)} from {escape(source)}: {len(boards)} board(s), '
        f"{runs} finished run(s). Click a column header to sort.</p>"
        f'<p class="note">{escape(RANKING_NOTE.replace("`", ""))}</p>'
        f"<nav>{nav}</nav></header>"
        + "".join(_board_section(b) for b in boards)
        + f"<script>{SCRIPT}</script></body></html>\n"
    )

