//! The external sort of one input's events by time, the native half of
//! `search_sessions.connectors.sorting` (which names the run files, budgets memory and
//! removes what it made). Events are added in input order and sorted stably by time,
//! so events of one time keep their input order: the order `(time, input, line)` of
//! the Python core's sort. A run is a file of frames, each a little-endian `u32` length
//! and [`FRAME`] events packed as [`event::pack`] packs a block. A merge takes the runs
//! in input order and, of the events at one time, gives an earlier run's first: the
//! order of one stable sort of the whole input.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

use crate::event::{self, Event};

/// Events per frame of a run file: what a merge holds per run.
pub const FRAME: usize = 1024;

/// Events held in input order, in the blocks they came in (never copied into one
/// vector grown by doubling), and put in order by sorting their keys, 16 bytes each,
/// not the events.
#[derive(Default)]
pub struct Held {
    blocks: Vec<Vec<Option<Event>>>,
    len: usize,
}

/// An event's place in a [`Held`]: `(time, block, index)`, unique, in input order.
type Key = (i64, u32, u32);

impl Held {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a block of events, after those added before.
    pub fn push(&mut self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.len += events.len();
        self.blocks.push(events.into_iter().map(Some).collect());
    }

    /// The events in order, taken out one at a time (each block freed once emptied).
    pub fn into_sorted(self) -> Sorted {
        let mut keys: Vec<Key> = Vec::with_capacity(self.len);
        for (b, block) in self.blocks.iter().enumerate() {
            for (i, ev) in block.iter().enumerate() {
                if let Some(ev) = ev {
                    keys.push((ev.t, b as u32, i as u32));
                }
            }
        }
        keys.sort_unstable();
        let left = self.blocks.iter().map(Vec::len).collect();
        Sorted {
            blocks: self.blocks,
            left,
            keys: keys.into_iter(),
        }
    }
}

/// The events of a [`Held`] in order.
pub struct Sorted {
    blocks: Vec<Vec<Option<Event>>>,
    left: Vec<usize>,
    keys: std::vec::IntoIter<Key>,
}

impl Iterator for Sorted {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let (_, b, i) = self.keys.next()?;
        let (b, i) = (b as usize, i as usize);
        let ev = self.blocks[b][i].take();
        self.left[b] -= 1;
        if self.left[b] == 0 {
            self.blocks[b] = Vec::new();
        }
        ev
    }
}

/// Writes sorted `events` to a new run file at `path`.
pub fn write_run(path: &str, events: impl Iterator<Item = Event>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, File::create(path)?);
    let mut frame = Vec::with_capacity(FRAME);
    for ev in events {
        frame.push(ev);
        if frame.len() == FRAME {
            write_frame(&mut out, &mut frame)?;
        }
    }
    if !frame.is_empty() {
        write_frame(&mut out, &mut frame)?;
    }
    out.flush() // (no fsync: a run outlives no crash, a resumed run sorts again)
}

/// Writes one frame (and empties it).
fn write_frame(out: &mut impl Write, frame: &mut Vec<Event>) -> io::Result<()> {
    let data = event::pack(frame);
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&data)?;
    frame.clear();
    Ok(())
}

/// The events of one run file, a frame at a time.
pub struct RunReader {
    file: BufReader<File>,
    frame: std::vec::IntoIter<Event>,
    buf: Vec<u8>,
}

impl RunReader {
    pub fn open(path: &str) -> io::Result<RunReader> {
        Ok(RunReader {
            file: BufReader::with_capacity(1 << 16, File::open(path)?),
            frame: Vec::new().into_iter(),
            buf: Vec::new(),
        })
    }

    /// The next event, or `None` at the run's end.
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            if let Some(ev) = self.frame.next() {
                return Ok(Some(ev));
            }
            let mut len = [0u8; 4];
            let mut got = 0;
            while got < len.len() {
                match self.file.read(&mut len[got..]) {
                    Ok(0) if got == 0 => return Ok(None), // (the run's end, between frames)
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.resize(u32::from_le_bytes(len) as usize, 0);
            self.file.read_exact(&mut self.buf)?;
            let events: Vec<Event> = event::unpack(&self.buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.frame = events.into_iter();
        }
    }
}

/// Where a merge takes events from: a run file, or the events held in memory (sorted).
pub enum Source {
    Run(RunReader),
    Memory(Sorted),
}

impl Source {
    fn next_event(&mut self) -> io::Result<Option<Event>> {
        match self {
            Source::Run(run) => run.next_event(),
            Source::Memory(events) => Ok(events.next()),
        }
    }
}

/// A merge of sorted sources given in input order (see the module's doc).
pub struct Merge {
    sources: Vec<Source>,
    heads: Vec<Option<Event>>,
    /// `(time, source)` of every source's next event: the smallest goes first.
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl Merge {
    pub fn new(mut sources: Vec<Source>) -> io::Result<Merge> {
        let mut heads = Vec::with_capacity(sources.len());
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (i, source) in sources.iter_mut().enumerate() {
            let head = source.next_event()?;
            if let Some(ev) = &head {
                heap.push(Reverse((ev.t, i)));
            }
            heads.push(head);
        }
        Ok(Merge {
            sources,
            heads,
            heap,
        })
    }

    /// The next event in order, or `None` once every source is done.
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let next = self.sources[i].next_event()?;
        if let Some(ev) = &next {
            self.heap.push(Reverse((ev.t, i)));
        }
        Ok(std::mem::replace(&mut self.heads[i], next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SEARCH;

    fn ev(t: i64, seq: i64) -> Event {
        Event::plain(t, seq, SEARCH, "u")
    }

    /// The order a merge must give: one stable sort of the input by time.
    fn sort_stably(events: &mut [Event]) {
        events.sort_by_key(|e| e.t);
    }

    fn keys(events: &[Event]) -> Vec<(i64, i64)> {
        events.iter().map(|e| (e.t, e.seq)).collect()
    }

    #[test]
    fn runs_merge_into_one_stable_sort_of_the_input() {
        let dir = std::env::temp_dir().join(format!("sort-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Times repeat within and across runs; a run is longer than a frame.
        let input: Vec<Event> = (0..5000).map(|i| ev((i * 7919) % 97, i)).collect();
        let mut sources = Vec::new();
        for (n, chunk) in input.chunks(1500).enumerate() {
            let mut run = chunk.to_vec();
            sort_stably(&mut run);
            if n == 3 {
                let mut held = Held::default();
                for block in chunk.chunks(100) {
                    held.push(block.to_vec());
                }
                sources.push(Source::Memory(held.into_sorted()));
            } else {
                let path = dir.join(format!("run-{n}")).to_string_lossy().into_owned();
                write_run(&path, run.into_iter()).unwrap();
                sources.push(Source::Run(RunReader::open(&path).unwrap()));
            }
        }
        let mut merge = Merge::new(sources).unwrap();
        let mut got = Vec::new();
        while let Some(e) = merge.next_event().unwrap() {
            got.push(e);
        }
        let mut want = input;
        sort_stably(&mut want);
        assert_eq!(keys(&got), keys(&want));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cut_run_is_an_error_not_a_panic() {
        let path = std::env::temp_dir()
            .join(format!("sort-cut-{}", std::process::id()))
            .to_string_lossy()
            .into_owned();
        write_run(&path, (0..10).map(|i| ev(i, i))).unwrap();
        let data = std::fs::read(&path).unwrap();
        for cut in [3, 4, 10, data.len() - 1] {
            std::fs::write(&path, &data[..cut]).unwrap();
            let mut run = RunReader::open(&path).unwrap();
            let mut result = Ok(None);
            for _ in 0..20 {
                result = run.next_event();
                if !matches!(result, Ok(Some(_))) {
                    break;
                }
            }
            assert!(result.is_err(), "cut at {cut}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
