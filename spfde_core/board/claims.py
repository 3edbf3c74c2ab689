"""The papers' claims as tests: ``reproductions/<name>/claims.yaml`` evaluated on the leaderboard's cells.

A claim (e.g. SpFDE Sec. 5.1: "20%+20% at 90% uses 27% fewer training FLOPs than MEST with similar
accuracy") is one or more *conditions*, each on the difference between two cells (or a per-seed
statistic of one cell) under one protocol:

- ``top1``: A - B in points of final top-1 (%); 95% Welch interval over seeds (n >= 2 on each side);
- ``train_flops``: 100 * (A / B - 1), % more (+) or fewer (-) training FLOPs than B. FLOPs are counted,
  not sampled, so the interval is the range over every pair of seeds (defined for n = 1);
- ``ss_convergence_gap``: one cell (SpFDE Sec. 3, Fig. 1a): per seed, the mean convergence epoch of
  the last third of the sparse layers minus that of the first third, from ``structural_similarity.csv``;
  a layer converges at the first epoch from which its similarity stays >= ``threshold``; 95%
  t-interval over seeds (n >= 2).

Verdict of a condition, with claimed set S (``greater m``: A-B > m, ``less m``: A-B < m, ``within m``:
|A-B| <= m) and interval I: *holds* if I lies inside S, *does not hold* if I and S do not meet,
otherwise *inconclusive*. A claim: missing > not comparable (a ``requires`` condition does not
hold) > does not hold > inconclusive at n = k > holds. The rule: reproductions/README.md, "claims.yaml".
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from scipy import stats

from spfde_core.board.aggregate import Cell, t_interval
from spfde_core.board.spec import PROFILES, Spec, read_mapping, row_id
from spfde_core.config import ConfigError

CLAIMS_FILE = "claims.yaml"
METRICS = {"top1": "pp", "train_flops": "%", "ss_convergence_gap": "epochs"}
DIRECTIONS = ("greater", "less", "within")
ROLES = ("claim", "requires")
CLAIM_KEYS = {"id", "statement", "source", "note", "profiles", "conditions"}
CONDITION_KEYS = {"a", "b", "metric", "direction", "margin", "role", "threshold"}
CSV_COLUMNS = (
    "reproduction",
    "claim",
    "claim_verdict",
    "profile",
    "protocol",
    "condition",
    "role",
    "metric",
    "unit",
    "cell_a",
    "cell_b",
    "a_n",
    "a_mean",
    "a_ci95_low",
    "a_ci95_high",
    "b_n",
    "b_mean",
    "b_ci95_low",
    "b_ci95_high",
    "difference",
    "interval",
    "diff_low",
    "diff_high",
    "direction",
    "margin",
    "condition_verdict",
    "statement",
    "source",
)


class ClaimError(ConfigError):
    """A malformed claims.yaml; the message names the file and the field."""


@dataclass(frozen=True)
class CellRef:
    table: str
    entry: str
    setting: str

    def __str__(self) -> str:
        return f"{self.table}/{self.entry}/{self.setting}"


@dataclass(frozen=True)
class Condition:
    a: CellRef
    b: CellRef | None
    metric: str
    direction: str
    margin: float
    role: str = "claim"
    threshold: float | None = None

    def expected(self) -> str:
        """The claimed set of the difference, e.g. ``A - B < -25 %``."""
        what = "A" if self.b is None else "A - B"
        unit = METRICS[self.metric]
        if self.direction == "within":
            return f"|{what}| <= {self.margin:g} {unit}"
        return f"{what} {'>' if self.direction == 'greater' else '<'} {self.margin:g} {unit}"


@dataclass(frozen=True)
class Claim:
    reproduction: str
    id: str
    statement: str
    source: str
    note: str
    profiles: tuple[str, ...]
    conditions: tuple[Condition, ...]


# ---- loading and validation -------------------------------------------------------------------
def _fail(path: Path, where: str, message: str) -> ClaimError:
    return ClaimError(f"{path}: {where}: {message}")


def _mapping(raw: Any, keys: set[str], path: Path, where: str) -> dict[str, Any]:
    """``raw``, checked to be a mapping of only ``keys``."""
    if not isinstance(raw, dict):
        raise _fail(path, where, f"expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise _fail(path, where, f"unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(keys))})")
    return raw


def _text(node: dict[str, Any], key: str, path: Path, where: str, required: bool = True) -> str:
    value = node.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(path, f"{where}.{key}", f"expected a non-empty string, got {value!r}")
    return value.strip()


def _number(value: Any, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, where, f"expected a number, got {value!r}")
    return float(value)


def _cell(value: Any, spec: Spec, profiles: tuple[str, ...], path: Path, where: str) -> CellRef:
    parts = value.split("/") if isinstance(value, str) else []
    if len(parts) != 3:
        raise _fail(path, where, f"expected a cell as <table>/<entry>/<setting> of rows.yaml, got {value!r}")
    ref = CellRef(*parts)
    rows = spec.rows()
    for profile in profiles:
        if row_id(profile, ref.table, ref.entry, ref.setting) not in rows:
            raise _fail(path, where, f"{ref} is not a row of {spec.path} under profile {profile!r}")
    return ref


def _condition(raw: Any, spec: Spec, profiles: tuple[str, ...], path: Path, where: str) -> Condition:
    raw = _mapping(raw, CONDITION_KEYS, path, where)
    metric = raw.get("metric")
    if metric not in METRICS:
        raise _fail(path, f"{where}.metric", f"expected one of {', '.join(METRICS)}, got {metric!r}")
    direction = raw.get("direction")
    if direction not in DIRECTIONS:
        raise _fail(path, f"{where}.direction", f"expected one of {', '.join(DIRECTIONS)}, got {direction!r}")
    margin = _number(raw.get("margin"), path, f"{where}.margin")
    if direction == "within" and margin < 0:
        raise _fail(path, f"{where}.margin", f"'within' needs a margin >= 0, got {margin:g}")
    role = raw.get("role", "claim")
    if role not in ROLES:
        raise _fail(path, f"{where}.role", f"expected one of {', '.join(ROLES)}, got {role!r}")
    a = _cell(raw.get("a"), spec, profiles, path, f"{where}.a")
    threshold = None
    if metric == "ss_convergence_gap":
        if "b" in raw:
            raise _fail(path, f"{where}.b", "ss_convergence_gap is a statistic of one cell: no b")
        threshold = _number(raw.get("threshold"), path, f"{where}.threshold")
        if not 0 < threshold <= 1:
            raise _fail(path, f"{where}.threshold", f"expected a similarity in (0, 1], got {threshold:g}")
        b = None
    else:
        if "threshold" in raw:
            raise _fail(path, f"{where}.threshold", f"only ss_convergence_gap takes a threshold, not {metric}")
        b = _cell(raw.get("b"), spec, profiles, path, f"{where}.b")
    return Condition(a, b, metric, direction, margin, role, threshold)


def load_claims(path: Path, spec: Spec) -> list[Claim]:
    """Parse and check one ``claims.yaml`` against its reproduction's rows (a missing file: no claims)."""
    path = Path(path)
    if not path.exists():
        return []
    raw = read_mapping(path, ClaimError)
    if raw.get("reproduction") != spec.name:
        raise _fail(path, "reproduction", f"expected {spec.name!r} (its folder), got {raw.get('reproduction')!r}")
    default_profiles = raw.get("profiles", ["cpu", "paper"])
    claims_raw = raw.get("claims")
    if not isinstance(claims_raw, list) or not claims_raw:
        raise _fail(path, "claims", "expected a non-empty list of claims")
    claims: list[Claim] = []
    for ci, c in enumerate(claims_raw):
        where = f"claims[{ci}]"
        c = _mapping(c, CLAIM_KEYS, path, where)
        cid = c.get("id")
        if not isinstance(cid, str) or not cid or not cid.replace("_", "").isalnum():
            raise _fail(path, f"{where}.id", f"expected an id of letters, digits and _, got {cid!r}")
        if any(other.id == cid for other in claims):
            raise _fail(path, f"{where}.id", f"duplicate claim id {cid!r}")
        profiles = c.get("profiles", default_profiles)
        if not isinstance(profiles, list) or not profiles or any(p not in PROFILES for p in profiles):
            raise _fail(path, f"{where}.profiles", f"expected a list among {', '.join(PROFILES)}, got {profiles!r}")
        conditions = c.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise _fail(path, f"{where}.conditions", "expected a non-empty list of conditions")
        parsed = tuple(
            _condition(cond, spec, tuple(profiles), path, f"{where}.conditions[{k}]")
            for k, cond in enumerate(conditions)
        )
        if all(cond.role == "requires" for cond in parsed):
            raise _fail(path, f"{where}.conditions", "at least one condition must have role 'claim'")
        claims.append(
            Claim(
                spec.name,
                cid,
                _text(c, "statement", path, where),
                _text(c, "source", path, where),
                _text(c, "note", path, where, required=False),
                tuple(profiles),
                parsed,
            )
        )
    return claims


def load_all_claims(root: Path, specs: dict[str, Spec]) -> list[Claim]:
    """Every ``<root>/<name>/claims.yaml`` of a reproduction with a rows.yaml (sorted by name)."""
    root = Path(root)
    for path in sorted(root.glob(f"*/{CLAIMS_FILE}")):
        if path.parent.name not in specs:
            raise ClaimError(f"{path}: no rows.yaml next to it: claims name cells of a reproduction's rows")
    return [c for name in sorted(specs) for c in load_claims(root / name / CLAIMS_FILE, specs[name])]


# ---- per-seed values --------------------------------------------------------------------------
def convergence_gap(csv_path: Path, threshold: float) -> float:
    """Mean convergence epoch of the last third of the sparse layers minus the first third's (Fig. 1a).

    A layer converges at the first epoch (from 0) from which its similarity stays >= ``threshold``
    to the end; one that never does converges at the number of epochs. Columns are in model order.
    """
    with Path(csv_path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    layers = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    if not layers:
        raise ValueError(f"{csv_path}: no layer columns")

    def converged(layer: str) -> int:
        epoch = len(rows)
        for i in range(len(rows) - 1, -1, -1):
            if float(rows[i][layer]) < threshold:
                break
            epoch = i
        return epoch

    k = max(1, len(layers) // 3)
    return mean(converged(x) for x in layers[-k:]) - mean(converged(x) for x in layers[:k])


def _values(cell: Cell, cond: Condition) -> list[float]:
    out = []
    for r in cell.records:
        if cond.metric == "top1":
            out.append(100.0 * float(r.data["results"]["final_top1"]))
        elif cond.metric == "train_flops":
            value = r.data.get("cost", {}).get("training_flops", {}).get("ratio_to_dense")
            if value is not None:
                out.append(float(value))
        else:
            name = r.data.get("sparsity", {}).get("structural_similarity_file", "structural_similarity.csv")
            if (r.path.parent / name).is_file():
                out.append(convergence_gap(r.path.parent / name, cond.threshold or 1.0))
    return out


def welch_interval(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """95% Welch (unequal-variance) t-interval of mean(a) - mean(b); None unless n >= 2 on both sides."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = mean(a) - mean(b)
    va, vb = stdev(a) ** 2 / len(a), stdev(b) ** 2 / len(b)
    if va + vb == 0:
        return (diff, diff)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(va + vb)
    return (diff - half, diff + half)


# ---- evaluation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Side:
    ref: CellRef
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return mean(self.values) if self.values else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return t_interval(list(self.values))


@dataclass(frozen=True)
class ConditionResult:
    condition: Condition
    a: Side
    b: Side | None
    difference: float | None
    interval: tuple[float, float] | None
    interval_kind: str
    verdict: str
    """holds, does not hold, inconclusive or missing."""


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    profile: str
    protocol: str
    conditions: tuple[ConditionResult, ...]
    verdict: str


def condition_verdict(cond: Condition, interval: tuple[float, float] | None) -> str:
    """holds if the interval lies inside the claimed set, does not hold if they do not meet, else inconclusive."""
    if interval is None:
        return "inconclusive"
    low, high = interval
    m = cond.margin
    if cond.direction == "greater":
        inside, apart = low > m, high <= m
    elif cond.direction == "less":
        inside, apart = high < m, low >= m
    else:
        inside, apart = -m <= low and high <= m, low > m or high < -m
    return "holds" if inside else "does not hold" if apart else "inconclusive"


def evaluate_condition(cond: Condition, a_cell: Cell | None, b_cell: Cell | None) -> ConditionResult:
    a = Side(cond.a, tuple(_values(a_cell, cond)) if a_cell else ())
    b = None if cond.b is None else Side(cond.b, tuple(_values(b_cell, cond)) if b_cell else ())
    if a.n == 0 or (b is not None and b.n == 0):
        return ConditionResult(cond, a, b, None, None, "", "missing")
    if cond.metric == "train_flops":
        ratios = [100.0 * (x / y - 1.0) for x in a.values for y in b.values]
        diff, interval, kind = 100.0 * (a.mean / b.mean - 1.0), (min(ratios), max(ratios)), "seed range"
    elif b is None:
        diff, interval, kind = a.mean, a.ci, "t"
    else:
        diff, interval, kind = a.mean - b.mean, welch_interval(list(a.values), list(b.values)), "Welch"
    return ConditionResult(cond, a, b, diff, interval, kind, condition_verdict(cond, interval))


def claim_verdict(results: tuple[ConditionResult, ...]) -> str:
    missing = sorted({str(s.ref) for r in results for s in (r.a, r.b) if s is not None and s.n == 0})
    if missing:
        return "missing: " + ", ".join(missing)
    failed = [r for r in results if r.verdict == "does not hold"]
    if any(r.condition.role == "requires" for r in failed):
        return "not comparable"
    if failed:
        return "does not hold"
    open_ = [r for r in results if r.verdict == "inconclusive"]
    if open_:
        k = min(s.n for r in open_ for s in (r.a, r.b) if s is not None)
        return f"inconclusive at n = {k}"
    return "holds"


def evaluate(claims: list[Claim], cells: list[Cell]) -> list[ClaimResult]:
    """Each claim under each protocol (of its profiles) holding a record of one of its cells; a claim
    with no such protocol gets one row, profile ``-``, whose verdict names the missing cells."""
    out = []
    for claim in claims:
        refs = {str(r) for c in claim.conditions for r in (c.a, c.b) if r is not None}
        mine = [
            c
            for c in cells
            if c.reproduction == claim.reproduction
            and c.protocol.profile in claim.profiles
            and f"{c.table}/{c.entry}/{c.setting}" in refs
        ]
        protocols = sorted({c.protocol for c in mine}, key=lambda p: p.id)
        for protocol in protocols or [None]:
            by_ref = {f"{c.table}/{c.entry}/{c.setting}": c for c in mine if c.protocol == protocol}
            results = tuple(
                evaluate_condition(
                    cond, by_ref.get(str(cond.a)), by_ref.get(str(cond.b)) if cond.b is not None else None
                )
                for cond in claim.conditions
            )
            profile = protocol.profile if protocol else "-"
            out.append(ClaimResult(claim, profile, protocol.id if protocol else "-", results, claim_verdict(results)))
    return out


# ---- rendering (deterministic: fixed formats, input order) ------------------------------------
RULE = """\
Each claim of a paper (`reproductions/<name>/claims.yaml`, with its source) tested on our cells of
one protocol; never across protocols. A is the first cell of a condition, B the second.
**top1**: A - B in points, 95% Welch interval (n >= 2 a side). **train_flops**: 100 (A / B - 1), % more
(+) or fewer (-) training FLOPs; counted, not sampled, so the interval is the range over seed pairs.
**ss_convergence_gap** (Fig. 1a): per seed, mean convergence epoch of the last third of the sparse
layers minus the first third's; 95% t-interval over seeds. A condition *holds* if its interval lies
inside the claimed set, *does not hold* if the two do not meet, else is *inconclusive*; a claim is
*missing* a cell without records, *not comparable* if a `requires` condition does not hold, then
*does not hold*, *inconclusive at n = k* (k: fewest seeds of a cell involved) or *holds*.
Rule and margins: reproductions/README.md, "claims.yaml".
"""


def _f(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _side(side: Side | None, metric: str) -> str:
    if side is None:
        return ""
    if side.n == 0:
        return "no data"
    digits = 3 if metric == "train_flops" else 2
    ci = side.ci
    shown = _f(side.mean, digits) + ("" if ci is None else f" ± {(ci[1] - ci[0]) / 2:.{digits}f}")
    return f"{shown} (n={side.n})"


def _diff(r: ConditionResult) -> str:
    if r.difference is None:
        return ""
    interval = "" if r.interval is None else f" [{r.interval[0]:.2f}, {r.interval[1]:.2f}]"
    return f"{r.difference:+.2f}{interval}"


def render_claims_markdown(claims: list[Claim], results: list[ClaimResult]) -> str:
    """The ``## Claims`` section of LEADERBOARD.md: a summary per claim and protocol, then each condition."""
    lines = ["## Claims", "", RULE]
    if not claims:
        return "\n".join([*lines, "No claims.yaml yet.", ""])

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return out + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows] + [""]

    for name in sorted({c.reproduction for c in claims}):
        mine = [r for r in results if r.claim.reproduction == name]
        lines += [f"### {name}", ""]
        lines += table(
            ["claim", "statement", "source", "protocol", "verdict"],
            [
                [
                    r.claim.id,
                    r.claim.statement,
                    r.claim.source,
                    f"`{r.protocol}`" if r.protocol != "-" else f"no records ({', '.join(r.claim.profiles)})",
                    f"**{r.verdict}**",
                ]
                for r in mine
            ],
        )
        rows = []
        for r in mine:
            for cr in r.conditions:
                c = cr.condition
                rows.append(
                    [
                        r.claim.id + ("" if c.role == "claim" else " (requires)"),
                        f"`{r.protocol}`" if r.protocol != "-" else "-",
                        c.metric if c.threshold is None else f"{c.metric} (>= {c.threshold:g})",
                        f"{c.a}: {_side(cr.a, c.metric)}",
                        "" if cr.b is None else f"{c.b}: {_side(cr.b, c.metric)}",
                        _diff(cr) + (f" ({cr.interval_kind})" if cr.interval is not None else ""),
                        c.expected(),
                        cr.verdict,
                    ]
                )
        lines += table(["claim", "protocol", "metric", "A", "B", "difference [95%]", "claimed", "condition"], rows)
        notes = [f"- {c.id}: {c.note}" for c in claims if c.reproduction == name and c.note]
        if notes:
            lines += ["Notes:", "", *notes, ""]
    return "\n".join(lines)


def render_claims_csv(results: list[ClaimResult]) -> str:
    """results/claims.csv: one row per (claim, protocol, condition)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        for k, cr in enumerate(r.conditions):
            c = cr.condition
            a_ci, b_ci = cr.a.ci, cr.b.ci if cr.b else None
            writer.writerow(
                [
                    r.claim.reproduction,
                    r.claim.id,
                    r.verdict,
                    r.profile,
                    r.protocol,
                    k,
                    c.role,
                    c.metric,
                    METRICS[c.metric],
                    str(c.a),
                    "" if c.b is None else str(c.b),
                    cr.a.n,
                    _f(cr.a.mean, 6),
                    _f(a_ci[0] if a_ci else None, 6),
                    _f(a_ci[1] if a_ci else None, 6),
                    "" if cr.b is None else cr.b.n,
                    "" if cr.b is None else _f(cr.b.mean, 6),
                    _f(b_ci[0] if b_ci else None, 6),
                    _f(b_ci[1] if b_ci else None, 6),
                    _f(cr.difference, 6),
                    cr.interval_kind if cr.interval else "",
                    _f(cr.interval[0] if cr.interval else None, 6),
                    _f(cr.interval[1] if cr.interval else None, 6),
                    c.direction,
                    f"{c.margin:g}",
                    cr.verdict,
                    r.claim.statement,
                    r.claim.source,
                ]
            )
    return buffer.getvalue()
