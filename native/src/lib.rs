//! search-sessions' native core: the per-event work of the Python core
//! (`src/search_sessions/core`) in Rust, byte for byte the same answers.
//!
//! Python hands over blocks (a list of input lines, a packed block of events) and
//! gets blocks back (packed events per shard, encoded JSON lines); it never sees an
//! event of a valid line. The pure-Rust modules ([`event`], [`decode`] and [`delimited`]
//! (JSON Lines and CSV or TSV rows), [`shard`],
//! [`records`]) know nothing of Python; this file is the PyO3 glue.

pub mod decode;
pub mod delimited;
pub mod event;
pub mod grave;
pub mod json;
pub mod pool;
pub mod records;
pub mod rollup;
pub mod scalar;
pub mod scan;
pub mod shard;
pub mod sort;
pub mod time;

mod py;
mod py_json;
mod py_rollup;
mod py_sort;

use pyo3::prelude::*;

/// The extension module `search_sessions_native`.
#[pymodule]
fn search_sessions_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}

/// mimalloc: about a fifth less time than glibc's malloc for the core's many small
/// strings and vectors, most of them made on a reader thread and freed on the worker's
/// (see the README's Speed; `search_sessions.core.cores` sets how it commits memory).
/// Version 2 (the crate's `v2` feature): it gives freed memory back after a delay (10
/// ms, 0 as `search_sessions.core.cores` sets it), where version 3 keeps it a second
/// (5M events: 66 MB against 71, in the same time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
