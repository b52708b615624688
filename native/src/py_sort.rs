//! The Python face of [`crate::sort`]: a sorting input's events kept in Rust, sorted,
//! spilled to run files and merged back in order, dealt to the shards a batch at a time
//! (`search_sessions.connectors.sorting` drives them and owns the files).

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::py::{Dealer, EventBlock};
use crate::sort::{self, Held, Merge, RunReader, Source};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SortBuffer>()?;
    m.add_class::<MergeStream>()?;
    Ok(())
}

/// A lateness no event is older than its newest minus: merged events are in order.
const NEVER_LATE: i128 = 1 << 100;

fn io_error(path: &str, what: &str, e: std::io::Error) -> PyErr {
    PyOSError::new_err(format!("{path}: {what}: {e}"))
}

/// The events of one sorting input not yet spilled, in input order.
#[pyclass(module = "search_sessions_native")]
#[derive(Default)]
pub struct SortBuffer {
    held: Held,
}

#[pymethods]
impl SortBuffer {
    #[new]
    fn new() -> Self {
        SortBuffer::default()
    }

    fn __len__(&self) -> usize {
        self.held.len()
    }

    /// Takes a block's events (the block is left empty), after those added before.
    fn add(&mut self, block: &Bound<'_, EventBlock>) {
        self.held
            .push(std::mem::take(&mut block.borrow_mut().events));
    }

    /// Sorts the events held and writes them as a run file at `path`; holds none after.
    fn spill(&mut self, py: Python<'_>, path: &str) -> PyResult<()> {
        let held = std::mem::take(&mut self.held);
        py.allow_threads(|| sort::write_run(path, held.into_sorted()))
            .map_err(|e| io_error(path, "cannot write a sorted run", e))
    }

    /// Every event in order: the runs at `paths` (in input order, each sorted) merged
    /// with the events held here (sorted; the latest input). Holds none after.
    fn merge(&mut self, py: Python<'_>, paths: Vec<String>) -> PyResult<MergeStream> {
        let held = std::mem::take(&mut self.held);
        let sorted = (!held.is_empty()).then(|| py.allow_threads(|| held.into_sorted()));
        let mut sources = Vec::with_capacity(paths.len() + 1);
        for path in &paths {
            let run = RunReader::open(path).map_err(|e| io_error(path, "cannot read", e))?;
            sources.push(Source::Run(run));
        }
        sources.extend(sorted.map(Source::Memory));
        let label = paths.first().cloned().unwrap_or_default();
        let merge = Merge::new(sources).map_err(|e| io_error(&label, "cannot read", e))?;
        Ok(MergeStream { merge, label })
    }
}

/// Events in order from a merge, taken a batch at a time.
#[pyclass(module = "search_sessions_native")]
pub struct MergeStream {
    merge: Merge,
    label: String,
}

#[pymethods]
impl MergeStream {
    /// The next `n` events (fewer at the end) dealt to `n_shards` shards as the block
    /// decoder deals them: `(blocks, newest time, events)`.
    fn take(
        &mut self,
        py: Python<'_>,
        n: usize,
        n_shards: usize,
        newest: i64,
    ) -> PyResult<(Vec<EventBlock>, i64, usize)> {
        let mut dealer = Dealer::new(n_shards, newest, NEVER_LATE, n);
        let merge = &mut self.merge;
        py.allow_threads(|| {
            for _ in 0..n {
                match merge.next_event()? {
                    Some(ev) => dealer.deal(ev),
                    None => break,
                }
            }
            Ok(())
        })
        .map_err(|e| io_error(&self.label, "cannot read a sorted run", e))?;
        let (blocks, _, newest, events) = dealer.into_blocks(py);
        Ok((blocks, newest, events))
    }

    /// Passes over the next `n` events (those a resumed run had sent); the time of the
    /// last of them, or `newest` if none.
    fn skip(&mut self, py: Python<'_>, n: usize, newest: i64) -> PyResult<i64> {
        let merge = &mut self.merge;
        py.allow_threads(|| {
            let mut t = newest;
            for _ in 0..n {
                match merge.next_event()? {
                    Some(ev) => t = ev.t,
                    None => break,
                }
            }
            Ok(t)
        })
        .map_err(|e| io_error(&self.label, "cannot read a sorted run", e))
    }

    /// Writes every event left as one run at `path` (merging many runs a few at a time).
    fn write_run(&mut self, py: Python<'_>, path: &str) -> PyResult<()> {
        let merge = &mut self.merge;
        py.allow_threads(|| {
            let mut failed = None;
            let events = std::iter::from_fn(|| match merge.next_event() {
                Ok(ev) => ev,
                Err(e) => {
                    failed = Some(e);
                    None
                }
            });
            sort::write_run(path, events)?;
            failed.map_or(Ok(()), Err)
        })
        .map_err(|e| io_error(path, "cannot write a merged run", e))
    }
}
