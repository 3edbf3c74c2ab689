"""results/leaderboard.html: the leaderboard as one static page (no server, no network when viewed).

Built from the leaderboard CSV that `spfde board` renders in the same run (so the two never disagree): one
sortable table per protocol (click a column header; a second click reverses), the plots of results/plots/
linked relatively, and links to every run record. CSS and JavaScript are inline; the output is deterministic
(no timestamps), like the rest of the leaderboard.
"""

from __future__ import annotations

import csv
import html
import io

COLUMNS = (  # (CSV field, header, numeric)
    ("pareto_rank", "Pareto rank", True),
    ("reproduction", "reproduction", False),
    ("table", "table", False),
    ("label", "entry", False),
    ("setting", "setting", False),
    ("method", "method (sparsity + freezing + sieving)", False),
    ("n", "n", True),
    ("top1_mean", "top-1 (%)", True),
    ("top1_ci95_low", "95% CI low", True),
    ("top1_ci95_high", "95% CI high", True),
    ("train_flops_ratio", "train FLOPs (x dense)", True),
    ("memory_model_avg_mib", "model memory (MiB)", True),
    ("wall_clock_min", "wall-clock (min)", True),
    ("paper_top1", "paper top-1", True),
    ("delta_top1", "delta", True),
    ("records", "records", False),
)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:110em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f2f2f2;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.front td{background:#f3fbf3}
figure{display:inline-block;vertical-align:top;max-width:48%;margin:.5em 1% .5em 0}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.8em;color:#555}
.note{color:#555;font-size:.9em}
"""

# Sorting: numeric cells carry data-v (empty = missing, always last), the others sort by text.
SCRIPT = """
document.querySelectorAll('table.board').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var numeric = th.dataset.type === 'num';
      rows.sort(function (a, b) {
        var x = a.cells[col], y = b.cells[col];
        if (numeric) {
          var u = x.dataset.v === '' ? null : parseFloat(x.dataset.v);
          var v = y.dataset.v === '' ? null : parseFloat(y.dataset.v);
          if (u === null || v === null) { return (u === null) - (v === null); }
          return asc ? u - v : v - u;
        }
        var c = x.textContent.localeCompare(y.textContent);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

CAPTIONS = {  # by file-name prefix (spfde_core/board/plots.py)
    "pareto": "Final top-1 against training FLOPs (x dense, log scale), every entry of the protocol: 95% CI over "
    "seeds, the Pareto front of the table (rank 1), and the Claims section's comparisons (arrow B to A, "
    "shading: where A's mean must lie).",
    "curves": "Test top-1 over cumulative training FLOPs, one panel per setting: mean over seeds, band from the "
    "lowest to the highest seed; dashed: the dense reference.",
}


def _cell(field: str, value: str, numeric: bool) -> str:
    if field == "records":
        links = [
            f'<a href="{html.escape(link)}">{html.escape(link.split("/")[-2])}</a>' for link in value.split() if link
        ]
        return "<td>" + " ".join(links) + "</td>"
    if numeric:
        shown = value
        try:
            number = float(value)
            shown = f"{number:.2f}" if field not in ("n", "pareto_rank", "train_flops_ratio") else value
            if field == "train_flops_ratio":
                shown = f"{number:.3f}"
        except ValueError:
            number = None
        data = "" if number is None else repr(number)
        return f'<td class="num" data-v="{data}">{html.escape(shown)}</td>'
    return f"<td>{html.escape(value)}</td>"


def render_html(board_csv: str, plot_names: list[str]) -> str:
    """The page for the leaderboard CSV text ``board_csv`` and the plot files ``plot_names`` (in plots/)."""
    rows = list(csv.DictReader(io.StringIO(board_csv)))
    protocols = sorted({r["protocol"] for r in rows})
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>spfde-bench leaderboard</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>spfde-bench leaderboard</h1>",
        '<p class="note">Generated by <code>spfde board</code> from the run records (the same numbers as '
        '<a href="LEADERBOARD.md">LEADERBOARD.md</a> and <a href="leaderboard.csv">leaderboard.csv</a>). '
        "Top-1: mean over seeds with a 95% t-interval (n &ge; 2). Rows on the accuracy / training-FLOPs Pareto "
        "front (rank 1) are shaded. Click a column header to sort.</p>",
    ]
    if not rows:
        out.append("<p>No run records yet.</p>")
    for pid in protocols:
        group = [r for r in rows if r["protocol"] == pid]
        group.sort(key=lambda r: (int(r["pareto_rank"] or 10**6), -float(r["top1_mean"] or 0), r["label"]))
        out.append(f'<h2 id="{html.escape(pid)}">Protocol {html.escape(pid)}</h2>')
        first = group[0]
        out.append(
            f'<p class="note">profile {html.escape(first["profile"])}, dataset {html.escape(first["dataset"])}, '
            f"model {html.escape(first['model'])}, {html.escape(first['epochs'])} epochs</p>"
        )
        head = "".join(
            f'<th data-type="{"num" if numeric else "text"}" scope="col">{html.escape(title)}</th>'
            for _, title, numeric in COLUMNS
        )
        out.append(f'<table class="board" id="table-{html.escape(pid)}"><thead><tr>{head}</tr></thead><tbody>')
        for r in group:
            cls = ' class="front"' if r["pareto_rank"] == "1" else ""
            cells = "".join(_cell(field, r.get(field, ""), numeric) for field, _, numeric in COLUMNS)
            out.append(f"<tr{cls}>{cells}</tr>")
        out.append("</tbody></table>")
        for name in sorted(n for n in plot_names if pid in n):
            src = html.escape(f"plots/{name}")
            caption = CAPTIONS.get(name.split("-")[0], "")
            out.append(
                f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(name)}"></a>'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n"
