"""``compare``: user-level statistics against hand-computed values, the result's shape,
the command on JSON Lines, SQLite and Parquet inputs, and the intervals' calibration on
simulated A/B and A/A tests."""

from __future__ import annotations

import gzip
import json
import math
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from search_sessions.cli import main
from search_sessions.compare import (
    METRICS,
    Z_95,
    Z_POWER_80,
    chi2_sf,
    compare,
    gamma_q,
    load_searches,
    parse_split,
    ratio_estimate,
    render_table,
    srm_p_value,
)
from search_sessions.errors import ConfigError
from search_sessions.simulate import SimSpec, true_ctr, write

from .test_simulate import events_of, search_records


def search(
    user: str,
    variant: str | None,
    clicked: bool,
    rr: float | None,
    converted: bool = False,
    zero: bool = False,
) -> dict[str, Any]:
    return {
        "user": user,
        "clicked": clicked,
        "converted": converted,
        "reciprocal_rank": rr,
        "zero_results": zero,
        "dimensions": {"variant": variant},
    }


# Three users in each variant; every number below is worked out by hand in the comments.
RECORDS = [
    search("a", "A", True, 1.0, converted=True),
    search("a", "A", False, 0.0, zero=True),
    search("b", "A", False, 0.0),
    search("c", "A", True, 0.5),
    search("c", "A", True, 1.0, converted=True),
    search("c", "A", True, None),  # clicked, rank unknown: left out of MRR only
    search("c", "A", False, 0.0),
    search("d", "B", True, 1.0),
    search("e", "B", False, 0.0, zero=True),
    search("e", "B", False, 0.0),
    search("f", "B", True, 0.5),
    search("f", "B", True, 0.5, converted=True),
    search("g", None, True, 1.0),  # no variant: left out
]

# Per user (y, n) -> R = sum y / sum n; var = sum (y - R n)^2 / (N (N - 1) mean(n)^2).
# A, CTR: (1,2) (0,1) (3,4): R = 4/7; residuals -1/7, -4/7, 5/7: 42/49 / (6 * 49/9) = 9/343.
# A, conversions: (1,2) (0,1) (1,4): 2/7; residuals 3/7, -2/7, -1/7: 14/49 * 9/294 = 3/343.
# A, MRR: (1,2) (0,1) (1.5,3): 5/12; residuals 1/6, -5/12, 1/4: 19/72 / (6 * 4) = 19/1728.
# A, zero results: (1,2) (0,1) (0,4): 1/7; residuals 5/7, -1/7, -4/7: 42/49 * 9/294 = 9/343.
# B, CTR: (1,1) (0,2) (2,2): 3/5; residuals 2/5, -6/5, 4/5: 56/25 / (6 * 25/9) = 84/625.
# B, conversions: (0,1) (0,2) (1,2): 1/5; residuals -1/5, -2/5, 3/5: 14/25 * 9/150 = 21/625.
# B, MRR: (1,1) (0,2) (1,2): 2/5; residuals 3/5, -4/5, 1/5: 26/25 * 9/150 = 39/625.
# B, zero results: (0,1) (1,2) (0,2): 1/5; residuals -1/5, 3/5, -2/5: 14/25 * 9/150 = 21/625.
HAND = {
    "A": {
        "ctr": (Fraction(4, 7), Fraction(9, 343)),
        "conversion_rate": (Fraction(2, 7), Fraction(3, 343)),
        "mrr": (Fraction(5, 12), Fraction(19, 1728)),
        "zero_result_rate": (Fraction(1, 7), Fraction(9, 343)),
    },
    "B": {
        "ctr": (Fraction(3, 5), Fraction(84, 625)),
        "conversion_rate": (Fraction(1, 5), Fraction(21, 625)),
        "mrr": (Fraction(2, 5), Fraction(39, 625)),
        "zero_result_rate": (Fraction(1, 5), Fraction(21, 625)),
    },
}


def test_ratio_estimate_by_hand() -> None:
    ratio, se = ratio_estimate([(1, 2), (0, 1), (3, 4)])
    assert ratio == pytest.approx(4 / 7) and se == pytest.approx(math.sqrt(9 / 343))
    # One search per user: the variance of a mean, s^2 / N (here 0.25 / 4).
    ratio, se = ratio_estimate([(1, 1), (0, 1), (1, 1), (1, 1)])
    assert ratio == 0.75 and se == pytest.approx(0.25)
    assert ratio_estimate([(1, 2)]) == (0.5, None)
    assert ratio_estimate([(0, 0), (0, 0)]) == (None, None)


def test_compare_by_hand() -> None:
    result = compare(RECORDS, "variant")
    assert result["by"] == "variant" and result["control"] == "A"
    assert result["srm_p_value"] == pytest.approx(1.0)
    a, b = result["variants"]
    assert (a["value"], a["users"], a["searches"]) == ("A", 3, 7)
    assert (b["value"], b["users"], b["searches"]) == ("B", 3, 5)
    for row in (a, b):
        for metric in METRICS:
            est, var = HAND[row["value"]][metric]
            se = math.sqrt(var)
            assert row[metric] == pytest.approx(float(est)), metric
            assert row[f"{metric}_low"] == pytest.approx(max(0.0, float(est) - Z_95 * se))
            assert row[f"{metric}_high"] == pytest.approx(min(1.0, float(est) + Z_95 * se))
    for metric in METRICS:
        assert a[f"{metric}_diff"] is None and a[f"{metric}_p_value"] is None
        (est_a, var_a), (est_b, var_b) = HAND["A"][metric], HAND["B"][metric]
        diff, se = float(est_b - est_a), math.sqrt(var_a + var_b)
        assert b[f"{metric}_diff"] == pytest.approx(diff)
        assert b[f"{metric}_diff_low"] == pytest.approx(diff - Z_95 * se)
        assert b[f"{metric}_diff_high"] == pytest.approx(diff + Z_95 * se)
        assert b[f"{metric}_p_value"] == pytest.approx(math.erfc(abs(diff) / se / math.sqrt(2)))
    # CTR: 3/5 - 4/7 = 1/35, se = sqrt(84/625 + 9/343) = 0.40080, z = 0.07129, p = 0.9432
    assert b["ctr_p_value"] == pytest.approx(0.9432, abs=1e-4)
    assert a["mde_ctr"] is None
    assert b["mde_ctr"] == pytest.approx((Z_95 + Z_POWER_80) * math.sqrt(84 / 625 + 9 / 343))


def test_result_shape() -> None:
    result = compare(RECORDS, "variant", control="B")
    assert list(result) == ["by", "control", "srm_p_value", "variants"]
    keys = ["value", "users", "searches"]
    for metric in METRICS:
        keys += [metric, f"{metric}_low", f"{metric}_high", f"{metric}_diff"]
        keys += [f"{metric}_diff_low", f"{metric}_diff_high", f"{metric}_p_value"]
    keys.append("mde_ctr")
    assert [list(v) for v in result["variants"]] == [keys, keys]
    assert [v["value"] for v in result["variants"]] == ["B", "A"]  # the control first
    assert result["variants"][1]["ctr_diff"] == pytest.approx(-1 / 35)
    assert json.loads(json.dumps(result)) == result


def test_value_falls_back_to_a_field_and_nulls_are_left_out() -> None:
    records = [
        {"user": "u1", "clicked": True, "zero_results": False, "platform": "ios"},
        {"user": "u2", "clicked": False, "zero_results": False, "platform": "web"},
        {"user": "u3", "clicked": True, "zero_results": False, "platform": None},
        {
            "user": "u4",
            "clicked": True,
            "zero_results": False,
            "platform": "web",
            "dimensions": {"platform": "android"},
        },
    ]
    result = compare(records, "platform")
    assert [(v["value"], v["searches"]) for v in result["variants"]] == [
        ("android", 1),
        ("ios", 1),
        ("web", 1),
    ]
    # Without converted or known ranks the metrics are unknown, not zero.
    assert result["variants"][0]["conversion_rate"] is None
    assert result["variants"][0]["mrr"] is None


def test_errors() -> None:
    with pytest.raises(ConfigError, match="no search record has a value for 'nope'"):
        compare(RECORDS, "nope")
    with pytest.raises(ConfigError, match="control 'C' is not a value"):
        compare(RECORDS, "variant", control="C")
    with pytest.raises(ConfigError, match="not in --expected-split"):
        compare(RECORDS, "variant", expected_split={"A": 1.0})
    for bad in ("A=0.5,B", "A=0,B=1", "A=x", "A=1,A=2", "=1"):
        with pytest.raises(ConfigError):
            parse_split(bad)


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [
        # chi-square table: the 0.95 and 0.99 quantiles
        (3.841459, 1, 0.05),
        (5.991465, 2, 0.05),
        (7.814728, 3, 0.05),
        (9.487729, 4, 0.05),
        (11.070498, 5, 0.05),
        (18.307038, 10, 0.05),
        (31.410433, 20, 0.05),
        (6.634897, 1, 0.01),
        (23.209251, 10, 0.01),
        (0.0, 3, 1.0),
    ],
)
def test_chi2_sf_against_the_table(x: float, df: int, p: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(p, abs=1e-6)


@pytest.mark.parametrize("x", [1e-6, 0.3, 1.0, 2.5, 7.0, 30.0, 120.0])
def test_chi2_sf_closed_forms(x: float) -> None:
    assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-9)
    assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-9)
    # Q(1, x) = exp(-x); Q(a + 1, x) = Q(a, x) + x^a e^-x / Gamma(a + 1)
    assert gamma_q(1, x) == pytest.approx(math.exp(-x), rel=1e-9)
    step = math.exp(2.5 * math.log(x) - x - math.lgamma(3.5))
    assert gamma_q(3.5, x) == pytest.approx(gamma_q(2.5, x) + step, rel=1e-9)


def test_sample_ratio_mismatch() -> None:
    # 60/40 of 1000 users: chi-square (100^2 / 500) * 2 = 40, p = erfc(sqrt(20)).
    assert srm_p_value({"A": 600, "B": 400}) == pytest.approx(math.erfc(math.sqrt(20)))
    assert srm_p_value({"A": 600, "B": 400}) < 0.001
    assert srm_p_value({"A": 600, "B": 400}, {"A": 0.6, "B": 0.4}) == pytest.approx(1.0)
    assert srm_p_value({"A": 500, "B": 500}) == pytest.approx(1.0)
    # 52/48 of 1000: chi-square 1.6, p = erfc(sqrt(0.8)) = 0.2059
    assert srm_p_value({"A": 520, "B": 480}) == pytest.approx(0.20590, abs=1e-4)
    # An expected value nobody got is a mismatch too.
    assert srm_p_value({"A": 500, "B": 500}, {"A": 1, "B": 1, "C": 1}) < 1e-6
    assert srm_p_value({"A": 10}) is None
    records = [
        {"user": f"u{i}", "clicked": i % 2 == 0, "zero_results": False, "arm": "AB"[i < 600]}
        for i in range(1000)
    ]
    assert compare(records, "arm")["srm_p_value"] < 0.001
    assert compare(records, "arm", expected_split={"B": 3, "A": 2})["srm_p_value"] == (
        pytest.approx(1.0)
    )


def test_render_table() -> None:
    text = render_table(compare(RECORDS, "variant"))
    assert "by variant, control A" in text
    for label in ("CTR", "conversion rate", "MRR", "zero-result rate"):
        assert f"\n{label}\n" in text
    assert "0.5714" in text and "0.6000" in text and "+0.0286" in text  # 4/7, 3/5, 1/35
    assert "MISMATCH" not in text
    crowd = [search(f"x{i}", "A", i % 2 == 0, 0.0) for i in range(40)]
    assert "MISMATCH" in render_table(compare(RECORDS + crowd, "variant"))


# The command -----------------------------------------------------------------------


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_cli_on_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "searches.jsonl", RECORDS)
    runner = CliRunner()
    r = runner.invoke(main, ["compare", str(path), "--by", "variant", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == compare(RECORDS, "variant")
    assert "left out 1 of 13 searches without a variant" in r.stderr
    r = runner.invoke(main, ["compare", "-", "--by", "variant", "--json"], input=path.read_bytes())
    assert r.exit_code == 0 and json.loads(r.stdout) == compare(RECORDS, "variant"), r.output
    gz = tmp_path / "searches.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    r = runner.invoke(main, ["compare", str(gz), "--by", "variant", "--control", "B"])
    assert r.exit_code == 0, r.output
    assert r.stdout == render_table(compare(RECORDS, "variant", control="B")) + "\n"


@pytest.fixture(scope="module")
def run_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small simulated A/B test through the real ``run``: searches as JSON Lines,
    in a SQLite database and as Parquet."""
    tmp = tmp_path_factory.mktemp("compare")
    events = tmp / "events.jsonl"
    write(SimSpec(events=6_000, users=120, seed=21, variants=("A", "B"), effect=0.05), str(events))
    outputs = {
        "jsonl": tmp / "searches.jsonl",
        "sqlite": tmp / "searches.db",
        "parquet": tmp / "searches.parquet",
    }
    for kind, out in outputs.items():
        spec = f"sqlite:///{out}" if kind == "sqlite" else str(out)
        r = CliRunner().invoke(
            main, ["run", str(events), "--dimension", "variant", "--searches", spec, "--quiet"]
        )
        assert r.exit_code == 0, r.output
    return outputs


def test_cli_on_sqlite_and_parquet(run_outputs: dict[str, Path]) -> None:
    runner = CliRunner()
    got = {}
    for kind, path in run_outputs.items():
        r = runner.invoke(main, ["compare", str(path), "--by", "variant", "--json"])
        assert r.exit_code == 0, (kind, r.output)
        got[kind] = json.loads(r.stdout)
    db = run_outputs["sqlite"]
    r = runner.invoke(main, ["compare", f"sqlite:///{db}", "--by", "variant", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == got["sqlite"]
    want = compare(load_searches([str(run_outputs["jsonl"])]), "variant")
    for kind in run_outputs:
        assert got[kind]["control"] == want["control"]
        for row, want_row in zip(got[kind]["variants"], want["variants"], strict=True):
            assert list(row) == list(want_row)
            for key, value in want_row.items():
                assert row[key] == (value if value is None else pytest.approx(value)), key
    assert [v["value"] for v in want["variants"]] == ["A", "B"]
    assert sum(v["users"] for v in want["variants"]) > 100
    rec = next(iter(load_searches([str(db)])))
    assert type(rec["clicked"]) is bool and type(rec["zero_results"]) is bool
    assert isinstance(rec["dimensions"], dict) and rec["dimensions"]["variant"] in ("A", "B")


def test_cli_errors_exit_2(tmp_path: Path) -> None:
    searches = write_jsonl(tmp_path / "s.jsonl", RECORDS)
    csv = tmp_path / "s.csv"
    csv.write_text("user,clicked\nu1,1\n")
    runner = CliRunner()
    cases = [
        ([str(csv), "--by", "variant"], "not a searches file"),
        ([str(tmp_path / "missing.jsonl"), "--by", "variant"], "missing.jsonl"),
        ([str(searches), "--by", "nope"], "no search record has a value for 'nope'"),
        ([str(searches), "--by", "variant", "--control", "C"], "control 'C'"),
        ([str(searches), "--by", "variant", "--expected-split", "A=1"], "--expected-split"),
        ([str(searches), "--by", "variant", "--expected-split", "A=1,B"], "--expected-split"),
    ]
    for args, message in cases:
        r = runner.invoke(main, ["compare", *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"user": "u1", "clicked"\n')
    r = runner.invoke(main, ["compare", str(broken), "--by", "variant"])
    assert r.exit_code == 1 and "broken.jsonl:1" in r.stderr


# Calibration -----------------------------------------------------------------------

SEEDS = range(200)


@cache
def simulated_tests(effect: float) -> list[tuple[dict[str, Any], float]]:
    """For each seed, compare's result on a simulated A/B test (200 users, 4,000
    events) and the true CTR difference of B over A."""
    out = []
    for seed in SEEDS:
        spec = SimSpec(events=4_000, users=200, seed=seed, variants=("A", "B"), effect=effect)
        result = compare(search_records(events_of(spec)), "variant")
        out.append((result, true_ctr(spec, "B") - true_ctr(spec, "A")))
    return out


def test_ctr_difference_interval_covers_the_true_difference() -> None:
    runs = simulated_tests(0.02)
    b_rows = [(result["variants"][1], truth) for result, truth in runs]
    assert all(truth == pytest.approx(0.02) for _, truth in b_rows)
    coverage = sum(b["ctr_diff_low"] <= truth <= b["ctr_diff_high"] for b, truth in b_rows)
    assert 0.90 <= coverage / len(runs) <= 0.99, coverage  # measured: 0.945
    # The estimates centre on the true difference (their mean within 3 of its errors).
    diffs = [b["ctr_diff"] for b, _ in b_rows]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    assert abs(mean - 0.02) < 3 * sd / math.sqrt(len(diffs)), (mean, sd)


def test_aa_tests_are_significant_about_5_percent_of_the_time() -> None:
    runs = simulated_tests(0.0)
    b_rows = [result["variants"][1] for result, _ in runs]
    false_positives = sum(b["ctr_p_value"] < 0.05 for b in b_rows)
    assert 0.01 <= false_positives / len(runs) <= 0.10, false_positives  # measured: 0.045
    srm_alarms = sum(result["srm_p_value"] < 0.05 for result, _ in runs)
    assert srm_alarms / len(runs) <= 0.10, srm_alarms  # measured: 0.065
