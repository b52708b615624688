//! The Python face of the native core: event tuples in and out (for the rare event
//! that crosses: a line only the Python core can judge, a late event, a test), the
//! block decoder, records, and the shard.

use pyo3::exceptions::{PyOSError, PyValueError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::decode::{Layout, LineDecoder};
use crate::event::{
    self, Conversion, Dim, Event, Payload, Text, CLICK, CONVERSION, RESULTS, SEARCH,
};
use crate::records::{self, Emitted, Rules};
use crate::scan::{self, Chunk, FileScan};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CORE", "native")?;
    m.add_function(wrap_pyfunction!(pack_events, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_events, m)?)?;
    m.add_function(wrap_pyfunction!(render, m)?)?;
    m.add_class::<Decoder>()?;
    m.add_class::<EventBlock>()?;
    m.add_class::<ScanJob>()?;
    m.add_function(wrap_pyfunction!(block_from_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_late, m)?)?;
    m.add_function(wrap_pyfunction!(count_newlines, m)?)?;
    crate::shard::register(m)?;
    crate::py_json::register(m)?;
    crate::py_rollup::register(m)?;
    crate::py_sort::register(m)?;
    Ok(())
}

/// The newlines in bytes `[start, stop)` of the file at `path` (see
/// [`scan::count_newlines`]), without the GIL; an error names the file.
#[pyfunction]
fn count_newlines(py: Python<'_>, path: &str, start: u64, stop: u64) -> PyResult<u64> {
    py.allow_threads(|| scan::count_newlines(path, start, stop))
        .map_err(|e| io_error(path, e))
}

// Event tuples -------------------------------------------------------------------

/// An event tuple of the Python core as an [`Event`].
pub fn event_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Event> {
    let tup = obj.downcast::<PyTuple>()?;
    let n = tup.len();
    if n != 8 && n != 9 {
        return Err(PyValueError::new_err(format!(
            "an event tuple has 8 or 9 items, not {n}"
        )));
    }
    let kind: u8 = tup.get_item(3)?.extract()?;
    let payload_obj = tup.get_item(5)?;
    let payload = if payload_obj.is_none() {
        Payload::None
    } else {
        match kind {
            SEARCH | CLICK => Payload::Text(Text::from(payload_obj.extract::<String>()?)),
            RESULTS => Payload::Items(
                payload_obj
                    .extract::<Vec<String>>()?
                    .into_iter()
                    .map(Text::from)
                    .collect(),
            ),
            CONVERSION => {
                let (item, value, kind): (Option<String>, Option<f64>, Option<String>) =
                    payload_obj.extract()?;
                Payload::Conversion(Box::new(Conversion { item, value, kind }))
            }
            _ => Payload::None,
        }
    };
    let dims = if n == 9 {
        let d = tup.get_item(8)?;
        let mut out = Vec::new();
        for v in d.try_iter()? {
            out.push(dim_from_py(&v?)?);
        }
        Some(out.into_boxed_slice())
    } else {
        None
    };
    Ok(Event {
        t: tup.get_item(0)?.extract()?,
        part: tup.get_item(1)?.extract()?,
        seq: tup.get_item(2)?.extract()?,
        kind,
        user: Text::from(tup.get_item(4)?.extract::<String>()?),
        payload,
        rank: tup.get_item(6)?.extract()?,
        search_id: tup
            .get_item(7)?
            .extract::<Option<String>>()?
            .map(String::into_boxed_str),
        dims,
    })
}

fn dim_from_py(v: &Bound<'_, PyAny>) -> PyResult<Dim> {
    if v.is_none() {
        Ok(Dim::Null)
    } else if let Ok(b) = v.downcast::<pyo3::types::PyBool>() {
        Ok(Dim::Bool(b.is_true()))
    } else if let Ok(s) = v.downcast::<PyString>() {
        Ok(Dim::Str(s.to_str()?.to_owned()))
    } else if let Ok(i) = v.extract::<i128>() {
        Ok(Dim::Int(i))
    } else if v.is_instance_of::<pyo3::types::PyInt>() {
        Ok(Dim::Big(v.str()?.to_str()?.into()))
    } else {
        Ok(Dim::Float(v.extract()?))
    }
}

/// An [`Event`] as the Python core's tuple.
pub fn event_to_py<'py>(py: Python<'py>, ev: &Event) -> PyResult<Bound<'py, PyTuple>> {
    let payload: Bound<'py, PyAny> = match &ev.payload {
        Payload::None => py.None().into_bound(py),
        Payload::Text(s) => PyString::new(py, s).into_any(),
        Payload::Items(items) => PyTuple::new(py, items.iter().map(Text::as_str))?.into_any(),
        Payload::Conversion(c) => (c.item.as_deref(), c.value, c.kind.as_deref())
            .into_pyobject(py)?
            .into_any(),
    };
    let mut slots: Vec<Bound<'py, PyAny>> = vec![
        ev.t.into_pyobject(py)?.into_any(),
        ev.part.into_pyobject(py)?.into_any(),
        ev.seq.into_pyobject(py)?.into_any(),
        ev.kind.into_pyobject(py)?.into_any(),
        PyString::new(py, &ev.user).into_any(),
        payload,
        ev.rank.into_pyobject(py)?.into_any(),
        ev.search_id.as_deref().into_pyobject(py)?.into_any(),
    ];
    if let Some(dims) = &ev.dims {
        let mut values = Vec::with_capacity(dims.len());
        for d in dims {
            values.push(match d {
                Dim::Null => py.None().into_bound(py),
                Dim::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
                Dim::Int(i) => i.into_pyobject(py)?.into_any(),
                Dim::Float(f) => f.into_pyobject(py)?.into_any(),
                Dim::Str(s) => PyString::new(py, s).into_any(),
                Dim::Big(s) => py.get_type::<pyo3::types::PyInt>().call1((&**s,))?,
            });
        }
        slots.push(PyTuple::new(py, values)?.into_any());
    }
    PyTuple::new(py, slots)
}

/// One shard's events from one block of input, kept in Rust: a shard in the same
/// process takes them as they are; pickled (for a shard in another process, or a
/// test), they travel packed.
#[pyclass(module = "search_sessions_native")]
pub struct EventBlock {
    pub(crate) events: Vec<Event>,
}

#[pymethods]
impl EventBlock {
    fn __len__(&self) -> usize {
        self.events.len()
    }

    /// The events as packed bytes.
    fn pack<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &event::pack(&self.events))
    }

    /// Each event's time, and each event's position (line), for an order watch.
    fn times_and_seqs(&self) -> (Vec<i64>, Vec<i64>) {
        self.events.iter().map(|e| (e.t, e.seq)).unzip()
    }

    /// The earliest and the latest event time, `None` for no event (a file read in
    /// lanes, streamed on the guess that it is in order, checks its blocks with them).
    fn time_range(&self) -> Option<(i64, i64)> {
        let mut times = self.events.iter().map(|e| e.t);
        let first = times.next()?;
        Some(times.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t))))
    }

    /// The events as the Python core's tuples (for tests; the block keeps them).
    fn tuples<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        tuple_list(py, &self.events)
    }

    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let rebuild = py
            .import("search_sessions_native")?
            .getattr("block_from_bytes")?;
        Ok((rebuild, (self.pack(py),)))
    }
}

/// The `(event tuple, newest)` pairs of a packed block of maybe-late events.
#[pyfunction]
fn unpack_late<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let pairs: Vec<(Event, i64)> = event::unpack(data).map_err(PyValueError::new_err)?;
    pair_list(py, &pairs)
}

/// The [`EventBlock`] of packed bytes (unpickling one).
#[pyfunction]
fn block_from_bytes(data: &[u8]) -> PyResult<EventBlock> {
    let events = event::unpack(data).map_err(PyValueError::new_err)?;
    Ok(EventBlock { events })
}

/// Events as a list of the Python core's tuples.
pub fn tuple_list<'py>(py: Python<'py>, events: &[Event]) -> PyResult<Bound<'py, PyList>> {
    let tuples = events
        .iter()
        .map(|e| event_to_py(py, e))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, tuples)
}

/// `(event, time)` pairs (maybe-late events with their partition's newest time, or
/// late events with the watermark they missed) as a list of `(tuple, time)`.
pub fn pair_list<'py>(py: Python<'py>, pairs: &[(Event, i64)]) -> PyResult<Bound<'py, PyList>> {
    let items = pairs
        .iter()
        .map(|(e, t)| Ok((event_to_py(py, e)?, *t)))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// Event tuples from a list of them, from a block packed here, or an [`EventBlock`]
/// (emptied: a block is ingested once).
pub fn events_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Event>> {
    if let Ok(block) = obj.downcast::<EventBlock>() {
        return Ok(std::mem::take(&mut block.borrow_mut().events));
    }
    if let Ok(b) = obj.downcast::<PyBytes>() {
        if b.as_bytes().is_empty() {
            return Ok(Vec::new());
        }
        return event::unpack(b.as_bytes()).map_err(PyValueError::new_err);
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(event_from_py(&item?)?);
    }
    Ok(out)
}

/// `(event, newest_before)` pairs (maybe-late events) from a list of them or a packed block.
pub fn late_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(Event, i64)>> {
    if let Ok(b) = obj.downcast::<PyBytes>() {
        if b.as_bytes().is_empty() {
            return Ok(Vec::new());
        }
        return event::unpack(b.as_bytes()).map_err(PyValueError::new_err);
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        let item = item?;
        let (ev, newest): (Bound<'_, PyAny>, i64) = item.extract()?;
        out.push((event_from_py(&ev)?, newest));
    }
    Ok(out)
}

/// Event tuples packed into one block of bytes (for a shard, or a test).
#[pyfunction]
fn pack_events<'py>(py: Python<'py>, events: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let evs = events_from_py(events)?;
    Ok(PyBytes::new(py, &event::pack(&evs)))
}

/// The event tuples of a packed block.
#[pyfunction]
fn unpack_events<'py>(py: Python<'py>, data: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyList>> {
    let evs: Vec<Event> = event::unpack(data.as_bytes()).map_err(PyValueError::new_err)?;
    tuple_list(py, &evs)
}

// Records --------------------------------------------------------------------------

/// Rules from `(long_click_us, short_click_us, typeahead_us or None, dimensions)`.
pub fn rules_from_py(
    long_click_us: i64,
    short_click_us: i64,
    typeahead_us: Option<i64>,
    dimensions: Vec<String>,
) -> Rules {
    Rules {
        long_click_us,
        short_click_us,
        typeahead_us,
        dimensions,
    }
}

/// `core.searches.render` with the records encoded: `emitted` is a list of `(user,
/// events, end_reason)`; returns `(search lines, session lines, counts, times)`.
#[pyfunction]
#[pyo3(signature = (emitted, long_click_us, short_click_us, typeahead_us, dimensions, counts))]
#[allow(clippy::type_complexity)]
fn render<'py>(
    py: Python<'py>,
    emitted: &Bound<'py, PyList>,
    long_click_us: i64,
    short_click_us: i64,
    typeahead_us: Option<i64>,
    dimensions: Vec<String>,
    counts: [i64; 4],
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, [i64; 4], Vec<i64>)> {
    let rules = rules_from_py(long_click_us, short_click_us, typeahead_us, dimensions);
    let mut sessions: Vec<(Text, Vec<Event>, &'static str)> = Vec::new();
    for item in emitted.iter() {
        let (user, evs, reason): (String, Bound<'py, PyAny>, String) = item.extract()?;
        sessions.push((
            Text::from(user),
            events_from_py(&evs)?,
            crate::shard::reason_name(&reason)?,
        ));
    }
    let list = Emitted::of(&sessions);
    let mut counts = counts;
    let (mut s, mut ss, mut times) = (Vec::new(), Vec::new(), Vec::new());
    records::render(
        &list,
        &rules,
        &mut counts,
        &mut s,
        &mut ss,
        Some(&mut times),
    );
    Ok((PyBytes::new(py, &s), PyBytes::new(py, &ss), counts, times))
}

// Decoding -------------------------------------------------------------------------

/// Decodes one input partition's JSON lines in blocks (`core.events.decode_block`).
///
/// `fallback` is the Python core's `EventDecoder.decode`: it judges each line the
/// native decoder is not sure of (an invalid line, for its reason).
#[pyclass(module = "search_sessions_native")]
pub struct Decoder {
    part: u32,
    inner: Arc<LineDecoder>,
    fallback: PyObject,
    /// [`Decoder::decode_file`]'s block, kept for the next one.
    block: Mutex<Vec<u8>>,
}

#[pymethods]
impl Decoder {
    #[new]
    /// `columns`: a CSV or TSV input's `(delimiter, header line, column names)`, as its
    /// `CsvDecoder` has them (its rows are decoded, not JSON objects).
    #[pyo3(signature = (part, fields, types, time_unit, dimensions, currency, fallback, columns=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        part: u32,
        fields: Vec<(String, String)>,
        types: Vec<(String, String)>,
        time_unit: String,
        dimensions: Vec<String>,
        currency: Option<String>,
        fallback: PyObject,
        columns: Option<(String, Vec<u8>, Vec<String>)>,
    ) -> PyResult<Decoder> {
        let layout = Layout {
            fields,
            types,
            unit: time_unit,
            dimensions,
            currency: currency.map(|c| c.to_uppercase()),
        };
        let inner = match columns {
            Some((delimiter, header, names)) => match delimiter.as_bytes() {
                [d] => LineDecoder::delimited(layout, *d, header, &names),
                _ => Err(format!("a delimiter of one byte, not {delimiter:?}")),
            },
            None => LineDecoder::new(layout),
        };
        let inner = Arc::new(inner.map_err(PyValueError::new_err)?);
        Ok(Decoder {
            part,
            inner,
            fallback,
            block: Mutex::new(Vec::new()),
        })
    }

    /// The event on one line as the Python core's tuple, or `None` where the native
    /// decoder defers to the Python core (for tests).
    fn decode_native<'py>(
        &self,
        py: Python<'py>,
        line: &[u8],
        seq: i64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        match self.inner.decode(line, self.part, seq) {
            Some(ev) => Ok(Some(event_to_py(py, &ev)?)),
            None => Ok(None),
        }
    }

    /// `EventDecoder.times`: each line's event time or `None`, the lines this decoder
    /// is not sure of read by the Python core's `times`.
    fn times<'py>(
        &self,
        py: Python<'py>,
        lines: &Bound<'py, PyList>,
    ) -> PyResult<Vec<Option<i64>>> {
        let fallback = self
            .fallback
            .bind(py)
            .getattr("__self__")?
            .getattr("times")?;
        let mut out = Vec::with_capacity(lines.len());
        for item in lines.iter() {
            let line = item.downcast::<PyBytes>()?;
            match self.inner.time(line.as_bytes()) {
                Some(t) => out.push(t),
                None => {
                    let one = PyList::new(py, [line])?;
                    let got: Vec<Option<i64>> = fallback.call1((one,))?.extract()?;
                    out.push(got.first().copied().flatten());
                }
            }
        }
        Ok(out)
    }

    /// The pre-scan of `--order auto` over the plain file at `path`: where it first goes
    /// out of order, `(line, how much older)`, or `None`. Chunks of it are read and
    /// timed on `threads` threads without the GIL; the lines this decoder is not sure of
    /// are timed by the Python core's `times`, in order; `stop()` is asked between
    /// chunks (a stopped run scans no further: `None`). (`chunk`: bytes read at a time,
    /// at least one line's worth: a longer line is read on.)
    #[pyo3(signature = (path, lateness_us, threads, stop, chunk=scan::CHUNK))]
    fn scan_order(
        &self,
        py: Python<'_>,
        path: &str,
        lateness_us: i64,
        threads: usize,
        stop: &Bound<'_, PyAny>,
        chunk: usize,
    ) -> PyResult<Option<(i64, i64)>> {
        let file = FileScan::open(path, lateness_us, chunk).map_err(|e| io_error(path, e))?;
        let times = self
            .fallback
            .bind(py)
            .getattr("__self__")?
            .getattr("times")?;
        scan_on(py, file, None, &self.inner, threads, path, &times, stop)
    }

    /// `scan_order` begun at once on a thread of its own, which scans while this decoder
    /// is sure of every line (without the GIL, so while the run starts): see
    /// [`ScanJob`].
    #[pyo3(signature = (path, lateness_us, threads, chunk=scan::CHUNK))]
    fn start_scan(
        &self,
        py: Python<'_>,
        path: &str,
        lateness_us: i64,
        threads: usize,
        chunk: usize,
    ) -> PyResult<ScanJob> {
        let mut file = FileScan::open(path, lateness_us, chunk).map_err(|e| io_error(path, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (inner, flag) = (Arc::clone(&self.inner), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("search-sessions-scan".into())
            .spawn(move || {
                let got = file.run(&inner, threads, &flag);
                let _ = tx.send(got.map(|pending| (file, pending)));
            })
            .map_err(|e| io_error(path, e))?;
        Ok(ScanJob {
            path: path.to_owned(),
            inner: Arc::clone(&self.inner),
            threads,
            times: self
                .fallback
                .bind(py)
                .getattr("__self__")?
                .getattr("times")?
                .unbind(),
            stop,
            done: Mutex::new(Some(rx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// `decode_block` of the Python core: returns `(per_shard, maybe_late, bad, newest,
    /// size, events, lines)`, each shard's events as an [`EventBlock`], its maybe-late events
    /// as one packed block, bad lines as `(position, line, reason)`. `lines`: a list of
    /// lines, or one `bytes` of whole lines (cut here, as `readlines` would: a file
    /// read a block at a time makes no object per line).
    /// With `threads` over 1 the lines are decoded on that many threads at once (for a
    /// block no other thread decodes meanwhile: an input being sorted).
    #[pyo3(signature = (lines, seq, newest, lateness_us, n_shards, seqs=None, threads=1))]
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn decode_block<'py>(
        &self,
        py: Python<'py>,
        lines: &Bound<'py, PyAny>,
        seq: i64,
        newest: i64,
        lateness_us: i128,
        n_shards: usize,
        seqs: Option<Vec<i64>>,
        threads: usize,
    ) -> PyResult<Decoded<'py>> {
        let mut items: Vec<Bound<'py, PyBytes>> = Vec::new();
        let raws: Vec<&[u8]> = match lines.downcast::<PyBytes>() {
            Ok(block) => scan::line_list(block.as_bytes()),
            Err(_) => {
                for item in lines.downcast::<PyList>()?.iter() {
                    items.push(item.downcast_into::<PyBytes>()?);
                }
                items.iter().map(|b| b.as_bytes()).collect()
            }
        };
        self.decode_raws(
            py,
            &raws,
            &items,
            seq,
            newest,
            lateness_us,
            n_shards,
            seqs,
            threads,
        )
    }

    /// The lines of a plain file from byte `offset`: `block_bytes` of them and the rest
    /// of the line they end in (`readlines(block_bytes)`'s lines), read without the GIL
    /// into a buffer this decoder keeps, then decoded as [`Decoder::decode_block`]
    /// decodes them; also how many bytes were read (0: the file has ended). No Python
    /// object holds the block, and its bytes are copied once, not three times.
    #[pyo3(signature = (path, offset, block_bytes, seq, newest, lateness_us, n_shards))]
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn decode_file<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        offset: u64,
        block_bytes: usize,
        seq: i64,
        newest: i64,
        lateness_us: i128,
        n_shards: usize,
    ) -> PyResult<(Decoded<'py>, usize)> {
        let mut guard = self.block.lock().unwrap_or_else(|e| e.into_inner());
        let block: &mut Vec<u8> = &mut guard;
        py.allow_threads(|| scan::read_block(path, offset, block_bytes, block))
            .map_err(|e| io_error(path, e))?;
        let raws = scan::line_list(block);
        let decoded =
            self.decode_raws(py, &raws, &[], seq, newest, lateness_us, n_shards, None, 1)?;
        let read = block.len();
        if block.capacity() > KEPT_BLOCK {
            *block = Vec::new(); // (a line of many megabytes: not kept)
        }
        Ok((decoded, read))
    }
}

/// The most buffer [`Decoder::decode_file`] keeps between blocks.
const KEPT_BLOCK: usize = 4 << 20;

/// [`Decoder::decode_block`]'s answer: each shard's events, each shard's maybe-late
/// events packed, the invalid lines `(position, line, reason)`, the newest time, the
/// lines' bytes, the events and the lines.
type Decoded<'py> = (
    Vec<EventBlock>,
    Vec<Bound<'py, PyBytes>>,
    Vec<(i64, Bound<'py, PyAny>, String)>,
    i64,
    usize,
    usize,
    usize,
);

impl Decoder {
    /// The lines' events, decoded and dealt out in order without the GIL (a reader
    /// thread decodes while the worker runs the shards), up to the first line only the
    /// Python core reads. A block with such a line has the rest decoded at once without
    /// the GIL, then dealt out in order with it, those lines read by the Python core
    /// (one GIL release a block, not one a line). `items`: the lines as Python objects,
    /// where they came as a list.
    #[allow(clippy::too_many_arguments)]
    fn decode_raws<'py>(
        &self,
        py: Python<'py>,
        raws: &[&[u8]],
        items: &[Bound<'py, PyBytes>],
        seq: i64,
        newest: i64,
        lateness_us: i128,
        n_shards: usize,
        seqs: Option<Vec<i64>>,
        threads: usize,
    ) -> PyResult<Decoded<'py>> {
        let mut bad = Vec::new();
        let fallback = self.fallback.bind(py);
        let positions = line_positions(seqs.as_deref(), seq, raws.len())?;
        let size = raws.iter().map(|r| r.len()).sum();
        let mut dealer = Dealer::new(n_shards, newest, lateness_us, raws.len());
        let (inner, part) = (&self.inner, self.part);
        let (first, rest) = py.allow_threads(|| {
            crate::grave::clear(); // the sessions the worker is done with
            decode_and_deal(inner, raws, &positions, part, threads, &mut dealer)
        });
        let tail = (first < raws.len()).then_some(None).into_iter().chain(rest);
        for (i, ev) in (first..).zip(tail) {
            match ev {
                Some(ev) => dealer.deal(ev),
                None => {
                    let item = match items.get(i) {
                        Some(item) => item.clone(),
                        None => PyBytes::new(py, raws[i]),
                    };
                    read_in_python(fallback, item, positions[i], &mut dealer, &mut bad)?;
                }
            }
        }
        let (blocks, late_blocks, newest, events) = dealer.into_blocks(py);
        Ok((blocks, late_blocks, bad, newest, size, events, raws.len()))
    }
}

/// Decodes the lines and deals their events out in order, up to the first line only the
/// Python core reads: `(its index, the events of the lines after it)` (`None`: another
/// such line), or `(the number of lines, nothing)`.
fn decode_and_deal(
    decoder: &LineDecoder,
    raws: &[&[u8]],
    positions: &[i64],
    part: u32,
    threads: usize,
    dealer: &mut Dealer,
) -> (usize, Vec<Option<Event>>) {
    if threads > 1 && raws.len() >= PARALLEL_LINES {
        let mut all = decode_parallel(decoder, raws, positions, part, threads).into_iter();
        let mut i = 0;
        while let Some(ev) = all.next() {
            match ev {
                Some(ev) => dealer.deal(ev),
                None => return (i, all.collect()),
            }
            i += 1;
        }
        return (raws.len(), Vec::new());
    }
    let mut lines = raws.iter().zip(positions).enumerate();
    for (i, (raw, &pos)) in lines.by_ref() {
        if let Some(ev) = decoder.decode(raw, part, pos) {
            dealer.deal(ev);
            continue;
        }
        let rest = lines
            .map(|(_, (raw, &pos))| decoder.decode(raw, part, pos))
            .collect();
        return (i, rest);
    }
    (raws.len(), Vec::new())
}

/// The fewest lines decoded on several threads (fewer are not worth a thread).
const PARALLEL_LINES: usize = 512;

/// Each line's event (`None`: one only the Python core reads), decoded on `threads`
/// threads, each a stretch of the lines.
fn decode_parallel(
    decoder: &LineDecoder,
    raws: &[&[u8]],
    positions: &[i64],
    part: u32,
    threads: usize,
) -> Vec<Option<Event>> {
    let per = raws.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = raws
            .chunks(per)
            .zip(positions.chunks(per))
            .map(|(raws, positions)| {
                s.spawn(move || {
                    raws.iter()
                        .zip(positions)
                        .map(|(raw, &pos)| decoder.decode(raw, part, pos))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(raws.len());
        for h in handles {
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

fn io_error(path: &str, e: std::io::Error) -> PyErr {
    PyOSError::new_err(format!("{path}: {e}"))
}

/// Scans `file` to the end of its pre-scan (see `Decoder.scan_order`), from `pending`
/// (a chunk read, its unsure lines not yet timed) if given.
#[allow(clippy::too_many_arguments)]
fn scan_on(
    py: Python<'_>,
    mut file: FileScan,
    mut pending: Option<Chunk>,
    inner: &LineDecoder,
    threads: usize,
    path: &str,
    times: &Bound<'_, PyAny>,
    stop: &Bound<'_, PyAny>,
) -> PyResult<Option<(i64, i64)>> {
    loop {
        let mut chunk = match pending.take() {
            Some(chunk) => chunk,
            None => py
                .allow_threads(|| file.next(inner, threads))
                .map_err(|e| io_error(path, e))?,
        };
        for u in std::mem::take(&mut chunk.unsure) {
            let line = PyBytes::new(py, file.line(&u));
            let got: Vec<Option<i64>> = times.call1((PyList::new(py, [line])?,))?.extract()?;
            chunk.times[u.0] = got.first().copied().flatten();
        }
        if file.add(chunk) || stop.call0()?.is_truthy()? {
            return Ok(file.scan.late);
        }
    }
}

/// What a [`ScanJob`]'s thread hands back: the scan, and the chunk it stopped at.
type Scanned = std::io::Result<(FileScan, Option<Chunk>)>;

/// A pre-scan begun by `Decoder.start_scan`: its thread scans a file while the run
/// starts; [`ScanJob::result`] waits for it and scans on where it stopped (at a line
/// only the Python core can time). Dropped unasked, it stops.
#[pyclass(module = "search_sessions_native")]
pub struct ScanJob {
    path: String,
    inner: Arc<LineDecoder>,
    threads: usize,
    times: PyObject,
    stop: Arc<AtomicBool>,
    done: Mutex<Option<mpsc::Receiver<Scanned>>>,
    /// Joined once its answer came: a local cluster's launcher forks its processes only
    /// while it runs no other thread.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[pymethods]
impl ScanJob {
    /// Where the file first goes out of order, or `None` (as `Decoder.scan_order`);
    /// `stop()` is asked while waiting and between chunks. Asked once.
    fn result(&self, py: Python<'_>, stop: &Bound<'_, PyAny>) -> PyResult<Option<(i64, i64)>> {
        let rx = self
            .done
            .lock()
            .ok()
            .and_then(|mut done| done.take())
            .ok_or_else(|| PyValueError::new_err("this scan's result was taken"))?;
        let mut rx = rx;
        let got = loop {
            let (back, got) = py.allow_threads(move || {
                let got = rx.recv_timeout(Duration::from_millis(20));
                (rx, got)
            });
            rx = back;
            match got {
                Ok(got) => break got,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    py.check_signals()?;
                    if stop.call0()?.is_truthy()? {
                        self.stop.store(true, Ordering::Relaxed);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let msg = format!("{}: the pre-scan's thread failed", self.path);
                    return Err(PyOSError::new_err(msg));
                }
            }
        };
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = py.allow_threads(|| thread.join()); // (it has sent its answer: it ends)
        }
        let (file, pending) = got.map_err(|e| io_error(&self.path, e))?;
        if pending.is_none() {
            return Ok(file.scan.late); // decided (or stopped)
        }
        let times = self.times.bind(py);
        scan_on(
            py,
            file,
            pending,
            &self.inner,
            self.threads,
            &self.path,
            times,
            stop,
        )
    }

    /// Stops the scan's thread (its result is then partial).
    fn cancel(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for ScanJob {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Each line's position: `seqs`, or the line numbers after line `seq`.
fn line_positions(seqs: Option<&[i64]>, seq: i64, n: usize) -> PyResult<Vec<i64>> {
    match seqs {
        Some(s) if s.len() < n => Err(PyValueError::new_err("seqs too short")),
        Some(s) => Ok(s[..n].to_vec()),
        None => Ok((0..n).map(|i| seq + 1 + i as i64).collect()),
    }
}

/// Deals a block's events to their shards (`crc32(user) % n`), setting apart as maybe
/// late those older than the partition's newest time so far minus the lateness.
pub(crate) struct Dealer {
    per_shard: Vec<Vec<Event>>,
    maybe_late: Vec<Vec<(Event, i64)>>,
    newest: i64,
    lateness_us: i128,
}

impl Dealer {
    /// A dealer for about `events` events (each shard's vector sized for its share).
    pub(crate) fn new(n_shards: usize, newest: i64, lateness_us: i128, events: usize) -> Self {
        let n = n_shards.max(1);
        let share = if n == 1 {
            events
        } else {
            events / n + events / (4 * n) + 16
        };
        Dealer {
            per_shard: (0..n).map(|_| crate::pool::EVENTS.take(share)).collect(),
            maybe_late: (0..n).map(|_| Vec::new()).collect(),
            newest,
            lateness_us,
        }
    }

    pub(crate) fn deal(&mut self, ev: Event) {
        let n = self.per_shard.len();
        let shard = if n == 1 {
            0
        } else {
            crc32fast::hash(ev.user.as_bytes()) as usize % n
        };
        if i128::from(ev.t) < i128::from(self.newest) - self.lateness_us {
            self.maybe_late[shard].push((ev, self.newest));
            return;
        }
        if ev.t > self.newest {
            self.newest = ev.t;
        }
        self.per_shard[shard].push(ev);
    }

    /// The shards' blocks, their maybe-late events packed, the newest time, and how
    /// many events there were.
    pub(crate) fn into_blocks(
        self,
        py: Python<'_>,
    ) -> (Vec<EventBlock>, Vec<Bound<'_, PyBytes>>, i64, usize) {
        let events = self.per_shard.iter().map(Vec::len).sum::<usize>()
            + self.maybe_late.iter().map(Vec::len).sum::<usize>();
        let late_blocks = self
            .maybe_late
            .iter()
            .map(|b| {
                PyBytes::new(
                    py,
                    &if b.is_empty() {
                        Vec::new()
                    } else {
                        event::pack(b)
                    },
                )
            })
            .collect();
        let blocks = self
            .per_shard
            .into_iter()
            .map(|events| EventBlock { events })
            .collect();
        (blocks, late_blocks, self.newest, events)
    }
}

/// A line only the Python core reads (`fallback`): its events dealt out, or, for a bad
/// line (not a blank one), its position and why kept.
fn read_in_python<'py>(
    fallback: &Bound<'py, PyAny>,
    item: Bound<'py, PyBytes>,
    pos: i64,
    dealer: &mut Dealer,
    bad: &mut Vec<(i64, Bound<'py, PyAny>, String)>,
) -> PyResult<()> {
    let got = fallback.call1((&item, pos))?;
    if let Ok(tup) = got.downcast::<PyTuple>() {
        dealer.deal(event_from_py(tup.as_any())?);
    } else if let Ok(list) = got.downcast::<PyList>() {
        for one in list.iter() {
            dealer.deal(event_from_py(&one)?);
        }
    } else if !is_blank(item.as_bytes()) {
        bad.push((pos, item.into_any(), got.extract::<String>()?));
    }
    Ok(())
}

/// `bytes.isspace()`: non-empty and all ASCII whitespace.
fn is_blank(raw: &[u8]) -> bool {
    !raw.is_empty()
        && raw
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}
