//! One shard's sessionizing (`core/sessions.py`'s `Sessionizer`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Why a session ended, as the records name it.
pub const REASONS: [&str; 5] = [
    "gap",
    "app_close",
    "app_open",
    "max_session",
    "end_of_input",
];

/// The `'static` name of an end reason given as text.
pub fn reason_name(reason: &str) -> PyResult<&'static str> {
    REASONS
        .iter()
        .find(|r| **r == reason)
        .copied()
        .ok_or_else(|| PyValueError::new_err(format!("not an end reason: {reason:?}")))
}

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
