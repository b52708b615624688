//! PyO3 glue of [`crate::rollup`]: a block's rollup partial sums as tuples the Python
//! core makes its `WindowAgg`s of (`core/cores.py` `native_partials`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::rollup::{self, DimAgg, WindowAgg};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(rollup_partials, m)?)?;
    Ok(())
}

/// The partial sums of the search lines (one a line, at `times`) for each rollup
/// length in seconds: `(length's index, window start, sums)`, the sums as the fields of
/// `WindowAgg` in its order (queries and dimension values as `(key, fields)` pairs,
/// ranks counted as `(rank, count)` pairs). Read without the GIL.
#[pyfunction]
fn rollup_partials<'py>(
    py: Python<'py>,
    lines: &[u8],
    times: Vec<i64>,
    lengths: Vec<i64>,
) -> PyResult<Vec<(usize, i64, Bound<'py, PyTuple>)>> {
    let windows = py
        .allow_threads(|| rollup::aggregate(lines, &times, &lengths))
        .map_err(|e| {
            PyValueError::new_err(format!("a search line the rollups cannot read: {e}"))
        })?;
    windows
        .into_iter()
        .map(|((i, start), w)| Ok((i, start, window_tuple(py, w)?)))
        .collect()
}

type QueryFields = (i64, i64, i64, i128, i64);
type DimFields = (
    i64,
    i64,
    i64,
    Vec<f64>,
    i64,
    i64,
    i128,
    i64,
    Vec<(u64, i64)>,
    i64,
);

fn dim_fields(d: DimAgg) -> DimFields {
    (
        d.searches,
        d.clicked,
        d.converted,
        d.values,
        d.zero,
        d.abandoned,
        d.rank_sum,
        d.ranks,
        d.rr_ranks.into_iter().collect(),
        d.rr_n,
    )
}

fn window_tuple(py: Python<'_>, w: WindowAgg) -> PyResult<Bound<'_, PyTuple>> {
    let queries: Vec<(Option<String>, QueryFields)> = w
        .queries
        .into_iter()
        .map(|(q, a)| (q, (a.searches, a.clicked, a.zero, a.rank_sum, a.ranks)))
        .collect();
    let dims: Vec<((String, String), DimFields)> = w
        .dims
        .into_iter()
        .map(|(k, d)| (k, dim_fields(d)))
        .collect();
    let rr_ranks: Vec<(u64, i64)> = w.rr_ranks.into_iter().collect();
    let items: Vec<Bound<'_, PyAny>> = vec![
        w.searches.into_pyobject(py)?.into_any(),
        w.clicked.into_pyobject(py)?.into_any(),
        w.clicks.into_pyobject(py)?.into_any(),
        w.rank_sum.into_pyobject(py)?.into_any(),
        w.ranks.into_pyobject(py)?.into_any(),
        w.zero.into_pyobject(py)?.into_any(),
        w.abandoned.into_pyobject(py)?.into_any(),
        w.reformulated.into_pyobject(py)?.into_any(),
        w.long_click.into_pyobject(py)?.into_any(),
        rr_ranks.into_pyobject(py)?.into_any(),
        w.rr_n.into_pyobject(py)?.into_any(),
        w.ttfc.into_pyobject(py)?.into_any(),
        queries.into_pyobject(py)?.into_any(),
        w.conversions.into_pyobject(py)?.into_any(),
        w.converted.into_pyobject(py)?.into_any(),
        w.values.into_pyobject(py)?.into_any(),
        w.short_click.into_pyobject(py)?.into_any(),
        dims.into_pyobject(py)?.into_any(),
    ];
    PyTuple::new(py, items)
}
