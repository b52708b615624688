"""Compare search metrics between the values of a dimension: an A/B test's variants.

Reads per-search records (a run's searches output: JSON Lines, plain or gzipped,
Parquet, or the SQLite database of ``run --searches sqlite:///PATH.db``) and, for
each value of one dimension (``record["dimensions"][NAME]``, else a top-level
field ``NAME``), gives users, searches, CTR (clicked searches / searches),
conversion rate (converted searches / searches), MRR (mean ``reciprocal_rank``
over the searches where it is known) and zero-result rate, each with a 95%
interval, and each value's difference to the control with its interval and
two-sided p-value.

**Method.** The unit of randomisation is the user, and one user's searches are
not independent (some users click more than others), so every variance is
computed at the user level. Each metric is a ratio of per-user sums,
``R = sum(y_u) / sum(n_u)``; its variance by the delta method is
``sum((y_u - R * n_u) ** 2) / (N * (N - 1) * mean(n_u) ** 2)`` over the ``N``
users (the sample variance of the residuals ``y_u - R * n_u``). Intervals are
``R +- 1.96 * se`` (clipped to [0, 1]); differences to the control are normal
approximations with unpooled variances (the two groups independent):
``se = sqrt(se_a ** 2 + se_b ** 2)``. The sample-ratio-mismatch check is a
chi-square test of the users per value against an even split (or the expected
split given), with ``k - 1`` degrees of freedom. The minimum detectable CTR
difference is ``(z(0.975) + z(0.8)) * se`` of the difference: what this sample
detects with 80% power at a two-sided 0.05.

>>> rows = [("a", True, "A"), ("b", False, "A"), ("c", True, "B"), ("d", True, "B")]
>>> recs = [{"user": u, "clicked": c, "zero_results": False, "reciprocal_rank": 1.0 if c
...          else 0.0, "converted": False, "dimensions": {"variant": v}} for u, c, v in rows]
>>> result = compare(recs, "variant")
>>> result["control"], [(v["value"], v["ctr"]) for v in result["variants"]]
('A', [('A', 0.5), ('B', 1.0)])
"""

from __future__ import annotations

import gzip
import math
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import msgspec

from .connectors.specs import Scheme, scheme_of, sqlite_path
from .core.schema import SearchRecord, field_types
from .errors import ConfigError, InputError

Z_95: Final = 1.959964
"""The normal quantile of a two-sided 95% interval (and of a two-sided 0.05 test)."""
Z_POWER_80: Final = 0.841621
"""The normal quantile for 80% power."""

METRICS: Final = ("ctr", "conversion_rate", "mrr", "zero_result_rate")
"""The metrics compared, as they are named in the result."""

_LABELS: Final = {
    "ctr": "CTR",
    "conversion_rate": "conversion rate",
    "mrr": "MRR",
    "zero_result_rate": "zero-result rate",
}

# Per-user sums, a list for speed: searches, clicked, converted, searches whose
# conversion is known, reciprocal ranks, searches whose rank is known, zero results.
_N, _CLICKED, _CONV, _CONV_N, _RR, _RR_N, _ZERO = range(7)
# Each metric's numerator and denominator among them.
_PARTS: Final = {
    "ctr": (_CLICKED, _N),
    "conversion_rate": (_CONV, _CONV_N),
    "mrr": (_RR, _RR_N),
    "zero_result_rate": (_ZERO, _N),
}

# Columns of the searches table (and Parquet file) stored as 0/1 or as JSON text.
_BOOL_COLUMNS = frozenset(n for n, scalar, _ in field_types(SearchRecord) if scalar is bool)
_JSON_COLUMNS = frozenset(n for n, scalar, _ in field_types(SearchRecord) if scalar is object)


# Reading ---------------------------------------------------------------------------


def load_searches(paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The search records of each input in turn: a JSON Lines file (plain or gzipped),
    a Parquet file, a SQLite database written by ``run`` (its ``searches`` table; a
    path or ``sqlite:///PATH.db``), or ``-`` for JSON Lines on standard input.
    Booleans come back as ``bool`` and ``dimensions`` as a dict, whatever the input."""
    for path in paths:
        scheme = scheme_of(path)
        if scheme is Scheme.STDIO:
            yield from _jsonl(sys.stdin.buffer, "<stdin>")
        elif scheme is Scheme.SQL:
            yield from _sqlite(sqlite_path(path))
        elif scheme is Scheme.FILE:
            yield from _file(path)
        else:
            raise ConfigError(f"{path}: compare reads files and SQLite databases")


def _file(path: str) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    if head.startswith(b"SQLite format 3\x00"):
        yield from _sqlite(path)
    elif head.startswith(b"PAR1"):
        yield from _parquet(path)
    elif head.startswith(b"\x1f\x8b"):
        with gzip.open(path, "rb") as gz:
            yield from _jsonl(gz, path)
    elif head.lstrip()[:1] in (b"{", b""):
        with open(path, "rb") as f:
            yield from _jsonl(f, path)
    else:
        raise ConfigError(
            f"{path}: not a searches file (JSON Lines, optionally gzipped, Parquet or SQLite)"
        )


def _jsonl(lines: Iterable[bytes], label: str) -> Iterator[dict[str, Any]]:
    decode = msgspec.json.Decoder(dict[str, Any]).decode
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield decode(line)
        except msgspec.DecodeError as exc:
            raise InputError(f"{label}:{n}: not a JSON object: {exc}") from None


def _sqlite(path: str) -> Iterator[dict[str, Any]]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        try:
            cursor = conn.execute('SELECT * FROM "searches"')
        except sqlite3.Error as exc:
            raise ConfigError(f"{path}: no searches table ({exc})") from None
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield _typed(dict(zip(names, row, strict=True)))
    finally:
        conn.close()


def _parquet(path: str) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    for batch in pq.ParquetFile(path).iter_batches():
        for rec in batch.to_pylist():
            yield _typed(rec)


def _typed(rec: dict[str, Any]) -> dict[str, Any]:
    """A table row as a JSON Lines record: 0/1 as booleans, JSON text decoded."""
    for name in _BOOL_COLUMNS:
        value = rec.get(name)
        if isinstance(value, int):
            rec[name] = bool(value)
    for name in _JSON_COLUMNS:
        value = rec.get(name)
        if isinstance(value, str | bytes):
            rec[name] = msgspec.json.decode(value)
    return rec


# Statistics ------------------------------------------------------------------------


def ratio_estimate(units: Sequence[tuple[float, float]]) -> tuple[float | None, float | None]:
    """``sum(y) / sum(n)`` over units ``(y, n)`` and its standard error by the delta
    method (``None`` without a denominator; the error also with fewer than 2 units).

    >>> ratio_estimate([(1, 2), (0, 1), (3, 4)])[0]
    0.5714285714285714
    """
    total_n = math.fsum(n for _, n in units)
    if total_n <= 0:
        return None, None
    ratio = math.fsum(y for y, _ in units) / total_n
    count = len(units)
    if count < 2:
        return ratio, None
    mean_n = total_n / count
    residuals = math.fsum((y - ratio * n) ** 2 for y, n in units)
    return ratio, math.sqrt(residuals / (count * (count - 1) * mean_n**2))


def two_sided_p(z: float) -> float:
    """The two-sided p-value of a standard normal statistic ``z``.

    >>> round(two_sided_p(1.959964), 6)
    0.05
    """
    return math.erfc(abs(z) / math.sqrt(2))


def gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function ``Q(a, x)`` (``a > 0``): a
    series for ``x < a + 1``, else a continued fraction (Lentz's method)."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(log_front) * h


def chi2_sf(x: float, df: int) -> float:
    """The chi-square distribution's survival function ``P(X > x)`` with ``df`` degrees
    of freedom.

    >>> round(chi2_sf(3.841459, 1), 6), round(chi2_sf(5.991465, 2), 6)
    (0.05, 0.05)
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return gamma_q(df / 2, x / 2)


def srm_p_value(users: dict[str, int], expected: dict[str, float] | None = None) -> float | None:
    """The p-value of a chi-square test of the users per value against ``expected``
    shares (normalised to sum to 1; default an even split); ``None`` for one value.

    >>> f"{srm_p_value({'A': 600, 'B': 400}):.3g}"
    '2.54e-10'
    """
    shares = expected if expected is not None else dict.fromkeys(users, 1.0)
    unknown = sorted(set(users) - set(shares))
    if unknown:
        raise ConfigError(f"value {unknown[0]!r} is not in --expected-split")
    if len(shares) < 2:
        return None
    total_share = math.fsum(shares.values())
    total = sum(users.values())
    stat = 0.0
    for value, share in shares.items():
        want = total * share / total_share
        stat += (users.get(value, 0) - want) ** 2 / want
    return chi2_sf(stat, len(shares) - 1)


def parse_split(text: str) -> dict[str, float]:
    """``A=0.5,B=0.5`` as ``{"A": 0.5, "B": 0.5}`` (positive weights, any scale).

    >>> parse_split("A=1, B=3")
    {'A': 1.0, 'B': 3.0}
    """
    out: dict[str, float] = {}
    for part in text.split(","):
        value, eq, weight = part.strip().rpartition("=")
        try:
            share = float(weight)
        except ValueError:
            share = -1.0
        if not eq or not value or not share > 0 or not math.isfinite(share) or value in out:
            raise ConfigError(
                f"--expected-split: {part.strip()!r} is not VALUE=SHARE with a positive "
                f"share and a value not given before"
            )
        out[value] = share
    return out


# Comparing -------------------------------------------------------------------------


def dimension_value(record: dict[str, Any], by: str) -> str | None:
    """The record's value of ``by``: ``dimensions[by]``, else the field ``by``; text
    as it is, other values as JSON (``true``, ``3``); ``None`` when missing or null."""
    dims = record.get("dimensions")
    value = dims[by] if isinstance(dims, dict) and by in dims else record.get(by)
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def compare(
    records: Iterable[dict[str, Any]],
    by: str,
    control: str | None = None,
    expected_split: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Each value of ``by``: users, searches and the metrics with 95% intervals, and
    (but the control) their differences to the control's with intervals and p-values,
    and the minimum detectable CTR difference; plus the sample-ratio-mismatch p-value.
    The control (default: the first value in sorted order) comes first, then the
    others in sorted order. Records without a value are left out."""
    groups = _user_sums(records, by)
    if not groups:
        raise ConfigError(f"no search record has a value for {by!r} (is it a --dimension?)")
    values = sorted(groups)
    if control is None:
        control = values[0]
    elif control not in groups:
        raise ConfigError(f"control {control!r} is not a value of {by!r}: {', '.join(values)}")
    users = {v: len(groups[v]) for v in values}
    order = [control, *(v for v in values if v != control)]
    estimates = {v: _estimates(groups[v]) for v in order}
    return {
        "by": by,
        "control": control,
        "srm_p_value": srm_p_value(users, expected_split),
        "variants": [
            _variant_row(v, groups[v], estimates[v], estimates[control], v == control)
            for v in order
        ],
    }


def compare_files(
    paths: Iterable[str],
    by: str,
    control: str | None = None,
    expected_split: dict[str, float] | None = None,
) -> tuple[dict[str, Any], int]:
    """:func:`compare` over the records of :func:`load_searches`, and how many records
    were read (those without a value of ``by`` included)."""
    read = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal read
        for rec in load_searches(paths):
            read += 1
            yield rec

    result = compare(counted(), by, control, expected_split)
    return result, read


def _user_sums(records: Iterable[dict[str, Any]], by: str) -> dict[str, dict[str, list[float]]]:
    """Per value, per user, the sums the metrics are ratios of."""
    groups: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        value = dimension_value(rec, by)
        if value is None:
            continue
        try:
            user, clicked, zero = str(rec["user"]), rec["clicked"], rec["zero_results"]
        except KeyError as exc:
            raise InputError(f"a record without {exc} (not a searches output?)") from None
        sums = groups.setdefault(value, {}).get(user)
        if sums is None:
            sums = groups[value][user] = [0.0] * 7
        sums[_N] += 1
        sums[_CLICKED] += bool(clicked)
        sums[_ZERO] += bool(zero)
        converted = rec.get("converted")
        if converted is not None:
            sums[_CONV] += bool(converted)
            sums[_CONV_N] += 1
        rr = rec.get("reciprocal_rank")
        if rr is not None:
            sums[_RR] += rr
            sums[_RR_N] += 1
    return groups


def _estimates(users: dict[str, list[float]]) -> dict[str, tuple[float | None, float | None]]:
    """Each metric's estimate and standard error."""
    return {
        metric: ratio_estimate([(s[num], s[den]) for s in users.values()])
        for metric, (num, den) in _PARTS.items()
    }


def _variant_row(
    value: str,
    users: dict[str, list[float]],
    mine: dict[str, tuple[float | None, float | None]],
    control: dict[str, tuple[float | None, float | None]],
    is_control: bool,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "value": value,
        "users": len(users),
        "searches": int(sum(s[_N] for s in users.values())),
    }
    mde = None
    for metric in METRICS:
        est, se = mine[metric]
        row[metric] = est
        low = high = None
        if est is not None and se is not None:
            low, high = max(0.0, est - Z_95 * se), min(1.0, est + Z_95 * se)
        row[f"{metric}_low"], row[f"{metric}_high"] = low, high
        diff = None if is_control else _difference(mine[metric], control[metric])
        d, d_low, d_high, p, se_diff = diff or (None, None, None, None, None)
        row[f"{metric}_diff"], row[f"{metric}_diff_low"] = d, d_low
        row[f"{metric}_diff_high"], row[f"{metric}_p_value"] = d_high, p
        if metric == "ctr" and se_diff is not None:
            mde = (Z_95 + Z_POWER_80) * se_diff
    row["mde_ctr"] = mde
    return row


def _difference(
    mine: tuple[float | None, float | None], control: tuple[float | None, float | None]
) -> tuple[float | None, float | None, float | None, float | None, float | None]:
    """Difference, its interval, p-value and standard error (``None`` where unknown)."""
    (est, se), (est_c, se_c) = mine, control
    if est is None or est_c is None:
        return None, None, None, None, None
    diff = est - est_c
    if se is None or se_c is None:
        return diff, None, None, None, None
    se_diff = math.sqrt(se**2 + se_c**2)
    # Both groups without variance: the difference is certain.
    p = (1.0 if diff == 0 else 0.0) if se_diff == 0 else two_sided_p(diff / se_diff)
    return diff, diff - Z_95 * se_diff, diff + Z_95 * se_diff, p, se_diff


# Showing ---------------------------------------------------------------------------


def render_table(result: dict[str, Any]) -> str:
    """The result of :func:`compare` as a plain-text table for the terminal."""
    variants = result["variants"]
    control = result["control"]
    lines = [f"by {result['by']}, control {control}: {_srm_text(result)}", ""]
    rows = [["value", "users", "searches", "min. detectable CTR diff"]]
    for v in variants:
        rows.append([v["value"], f"{v['users']:,}", f"{v['searches']:,}", _num(v["mde_ctr"])])
    lines += _columns(rows)
    for metric in METRICS:
        lines += ["", _LABELS[metric]]
        rows = [["  value", "estimate", "95% interval", f"diff to {control}", "95% interval", "p"]]
        for v in variants:
            rows.append(
                [
                    f"  {v['value']}",
                    _num(v[metric]),
                    _interval(v[f"{metric}_low"], v[f"{metric}_high"]),
                    _num(v[f"{metric}_diff"], signed=True),
                    _interval(v[f"{metric}_diff_low"], v[f"{metric}_diff_high"], signed=True),
                    _p(v[f"{metric}_p_value"]),
                ]
            )
        lines += _columns(rows)
    lines += [
        "",
        "Users are the units: intervals and p-values by the delta method on per-user sums;",
        "the minimum detectable CTR difference is at 80% power, two-sided alpha 0.05.",
    ]
    return "\n".join(lines)


def _srm_text(result: dict[str, Any]) -> str:
    p = result["srm_p_value"]
    counts = " / ".join(f"{v['users']:,}" for v in result["variants"])
    if p is None:
        return f"users {counts}"
    shown = "p < 0.0001" if p < 0.0001 else f"p = {p:.4f}"
    text = f"users {counts}, sample ratio mismatch {shown}"
    if p < 0.001:
        text += " (MISMATCH: the users are not split as expected; do not trust the differences)"
    return text


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def _interval(low: float | None, high: float | None, signed: bool = False) -> str:
    if low is None or high is None:
        return "-"
    return f"[{_num(low, signed)}, {_num(high, signed)}]"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.0001" if p < 0.0001 else f"{p:.4f}"
