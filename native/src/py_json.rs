//! Test hooks: the JSON writers and text rules of [`crate::json`] and
//! [`crate::records`], one value at a time, for the differential tests against
//! msgspec and CPython (`tests/test_native_records.py`).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{json, records};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(json_float, m)?)?;
    m.add_function(wrap_pyfunction!(json_str, m)?)?;
    m.add_function(wrap_pyfunction!(json_time, m)?)?;
    m.add_function(wrap_pyfunction!(fsum, m)?)?;
    m.add_function(wrap_pyfunction!(typing_key, m)?)?;
    m.add_function(wrap_pyfunction!(continues_typing, m)?)?;
    m.add_function(wrap_pyfunction!(session_id_for, m)?)?;
    m.add_function(wrap_pyfunction!(_panic, m)?)?;
    Ok(())
}

/// A float as the records write it (`msgspec.json.encode(x)`).
#[pyfunction]
fn json_float(py: Python<'_>, x: f64) -> Bound<'_, PyBytes> {
    let mut out = Vec::new();
    json::write_f64(&mut out, x);
    PyBytes::new(py, &out)
}

/// A string as the records write it (`msgspec.json.encode(s)`).
#[pyfunction]
fn json_str<'py>(py: Python<'py>, s: &str) -> Bound<'py, PyBytes> {
    let mut out = Vec::new();
    json::write_str(&mut out, s);
    PyBytes::new(py, &out)
}

/// A time as the records write it (`msgspec.json.encode(format_time(us))`).
#[pyfunction]
fn json_time(py: Python<'_>, us: i64) -> Bound<'_, PyBytes> {
    let mut out = Vec::new();
    json::write_time(&mut out, us);
    PyBytes::new(py, &out)
}

/// `math.fsum` (a non-finite sum where CPython raises).
#[pyfunction]
fn fsum(values: Vec<f64>) -> f64 {
    json::fsum(&values)
}

/// `q.strip().lower()` as typeahead collapse reads a query.
#[pyfunction]
fn typing_key(q: &str) -> String {
    records::typing_key(q)
}

/// `core.searches.continues_typing`.
#[pyfunction]
fn continues_typing(q: &str, prev: &str) -> bool {
    records::continues_typing(q, prev)
}

/// `core.searches.session_id_for`.
#[pyfunction]
fn session_id_for(user: &str, start_us: i64, ordinal: u64) -> String {
    records::session_id_for(user, start_us, ordinal)
}

/// Panics (for the test that a panic reaches Python as an exception naming the input,
/// never an abort).
#[pyfunction]
fn _panic(message: &str) {
    panic!("{message}");
}
