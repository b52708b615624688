//! The pre-scan of `--order auto` over a plain file: every line's event time, read in
//! chunks and timed on several threads, and where the file first goes out of order.
//!
//! The Python core's reference is `EventDecoder.times` with `OrderScan` (in
//! `core/events.py`); lines this decoder is not sure of are timed by the caller (the
//! Python core), in order, between chunks.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use crate::decode::LineDecoder;
use crate::shard::NEVER;

/// How much of a file is timed at a time.
pub const CHUNK: usize = 2 << 20;

/// `OrderScan`: the first event older than an earlier one by more than the lateness,
/// as `(line, how much older)`, given the times of an input's lines in order.
#[derive(Debug)]
pub struct OrderScan {
    lateness: i128,
    newest: i64,
    lines: i64,
    /// `(line, how much older)` of the first such event, once found.
    pub late: Option<(i64, i64)>,
}

impl OrderScan {
    pub fn new(lateness_us: i64) -> Self {
        OrderScan {
            lateness: i128::from(lateness_us),
            newest: NEVER,
            lines: 0,
            late: None,
        }
    }

    /// The times of the next lines (`None`: no event); whether the input is now known
    /// to be out of order.
    pub fn add(&mut self, times: &[Option<i64>]) -> bool {
        if self.late.is_some() {
            return true;
        }
        for (i, t) in times.iter().enumerate() {
            let Some(t) = *t else { continue };
            if t > self.newest {
                self.newest = t;
            } else if i128::from(t) < i128::from(self.newest) - self.lateness {
                let line = self.lines + 1 + i as i64;
                self.late = Some((line, self.newest.saturating_sub(t)));
                break;
            }
        }
        self.lines += times.len() as i64;
        self.late.is_some()
    }
}

/// Where the whole lines of `buf` end (after its last `\n`); at the end of the input,
/// all of it (a last line without one is a line too).
pub fn whole_lines(buf: &[u8], at_end: bool) -> usize {
    if at_end {
        return buf.len();
    }
    memchr::memrchr(b'\n', buf).map_or(0, |n| n + 1)
}

/// The lines of `text` (each with its `\n`, the last maybe without).
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |n| start + n + 1);
        let line = &text[start..end];
        start = end;
        Some(line)
    })
}

/// [`lines`] as a vector (sized for them first: one count of the newlines).
pub fn line_list(text: &[u8]) -> Vec<&[u8]> {
    let mut list = Vec::with_capacity(memchr::memchr_iter(b'\n', text).count() + 1);
    list.extend(lines(text));
    list
}

/// A line this decoder is not sure of: its number in the chunk, where it starts and
/// its length (the caller's reference times it).
pub type Unsure = (usize, usize, usize);

/// Each line's time in `text` (whole lines) by `decoder`, in order (`None` for the lines
/// it is not sure of as well), and those lines: the text is cut at line ends into
/// `threads` parts, timed at once.
pub fn times(
    decoder: &LineDecoder,
    text: &[u8],
    threads: usize,
) -> (Vec<Option<i64>>, Vec<Unsure>) {
    let threads = threads.clamp(1, 16);
    let mut cuts = vec![0];
    for i in 1..threads {
        let at = (text.len() * i / threads).max(*cuts.last().unwrap_or(&0));
        let cut = memchr::memchr(b'\n', &text[at..]).map_or(text.len(), |n| at + n + 1);
        cuts.push(cut);
    }
    cuts.push(text.len());
    let part = |from: usize, to: usize| {
        let mut times = Vec::new();
        let mut unsure = Vec::new();
        let mut at = from;
        for line in lines(&text[from..to]) {
            match decoder.time(line) {
                Some(t) => times.push(t),
                None => {
                    times.push(None);
                    unsure.push((times.len() - 1, at, line.len()));
                }
            }
            at += line.len();
        }
        (times, unsure)
    };
    let parts: Vec<_> = if threads == 1 || text.len() < 1 << 16 {
        vec![part(0, text.len())]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = cuts
                .windows(2)
                .map(|w| {
                    let (from, to) = (w[0], w[1]);
                    s.spawn(move || part(from, to))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    let mut times = Vec::new();
    let mut unsure = Vec::new();
    for (t, u) in parts {
        let base = times.len();
        unsure.extend(u.into_iter().map(|(i, at, len)| (base + i, at, len)));
        times.extend(t);
    }
    (times, unsure)
}

/// Appends up to `want` bytes of `reader` to `buf` (after the line left over from the
/// last chunk, however long); whether the input ended. (`buf` grows as bytes come: a
/// small file takes little memory.)
pub fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let want = want.max(1) as u64;
    let got = reader.take(want).read_to_end(buf)?;
    Ok((got as u64) < want)
}

/// A file's pre-scan in progress: the chunk read but not yet scanned, and the scan.
pub struct FileScan {
    file: File,
    buf: Vec<u8>,
    chunk: usize,
    pub scan: OrderScan,
}

/// One chunk's times (`None` where the decoder is not sure, see `unsure`), how much of
/// the buffer they took, and whether the input ended there.
pub struct Chunk {
    pub times: Vec<Option<i64>>,
    pub unsure: Vec<Unsure>,
    used: usize,
    at_end: bool,
}

impl FileScan {
    pub fn open(path: &str, lateness_us: i64, chunk: usize) -> std::io::Result<FileScan> {
        Ok(FileScan {
            file: File::open(path)?,
            buf: Vec::new(),
            chunk: chunk.max(1),
            scan: OrderScan::new(lateness_us),
        })
    }

    /// Reads and times the next chunk of whole lines (on `threads` threads).
    pub fn next(&mut self, decoder: &LineDecoder, threads: usize) -> std::io::Result<Chunk> {
        let at_end = fill(&mut self.file, &mut self.buf, self.chunk)?;
        let used = whole_lines(&self.buf, at_end);
        let (times, unsure) = times(decoder, &self.buf[..used], threads);
        Ok(Chunk {
            times,
            unsure,
            used,
            at_end,
        })
    }

    /// The bytes of a line of the chunk last read (one it was not sure of).
    pub fn line(&self, &(_, at, len): &Unsure) -> &[u8] {
        &self.buf[at..at + len]
    }

    /// Adds a chunk's times (those it was not sure of filled in); whether the scan is
    /// decided (out of order, or the input ended).
    pub fn add(&mut self, chunk: Chunk) -> bool {
        let decided = self.scan.add(&chunk.times) || chunk.at_end;
        self.buf.drain(..chunk.used);
        decided
    }

    /// Scans on while the decoder is sure of every line and `stop` is not set: the chunk
    /// with lines it was not sure of, if it came to one (its caller times them).
    pub fn run(
        &mut self,
        decoder: &LineDecoder,
        threads: usize,
        stop: &std::sync::atomic::AtomicBool,
    ) -> std::io::Result<Option<Chunk>> {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let chunk = self.next(decoder, threads)?;
            if !chunk.unsure.is_empty() {
                return Ok(Some(chunk));
            }
            if self.add(chunk) {
                break;
            }
        }
        Ok(None)
    }
}

/// Reads into `block` the lines of the file at `path` from byte `offset` that Python's
/// `readlines(block_bytes)` returns there: `block_bytes` bytes and, when there were as
/// many, the bytes after them up to and including the next newline (or the file's end):
/// `read(block_bytes)`, then `readline()`. Empty at the file's end.
pub fn read_block(
    path: &str,
    offset: u64,
    block_bytes: usize,
    block: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut file = BufReader::with_capacity(1 << 12, File::open(path)?);
    file.seek(SeekFrom::Start(offset))?;
    block.clear();
    // (A read as large as the block goes past the reader's buffer, into `block`.)
    if !fill(&mut file, block, block_bytes)? {
        file.read_until(b'\n', block)?;
    }
    Ok(())
}

/// The newlines in bytes `[start, stop)` of a file: the lines a lane of a file passes
/// over between its blocks (`LanePartition._count_lines`), counted without a Python
/// loop over the bytes, into a buffer kept by the thread.
pub fn count_newlines(path: &str, start: u64, stop: u64) -> std::io::Result<u64> {
    use std::cell::RefCell;
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut range = file.take(stop.saturating_sub(start));
    BUF.with_borrow_mut(|buf| {
        let mut n = 0;
        loop {
            buf.clear();
            let ended = fill(&mut range, buf, CHUNK)?;
            n += memchr::memchr_iter(b'\n', buf).count() as u64;
            if ended {
                return Ok(n);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_scan_finds_the_first_late_line() {
        let mut scan = OrderScan::new(10);
        assert!(!scan.add(&[Some(100), None, Some(95), Some(120)]));
        assert!(scan.add(&[Some(109), Some(150)]));
        assert_eq!(scan.late, Some((5, 11)));
    }

    #[test]
    fn whole_lines_end_at_the_last_newline() {
        assert_eq!(whole_lines(b"a\nbb\nc", false), 5);
        assert_eq!(whole_lines(b"a\nbb\nc", true), 6);
        assert_eq!(whole_lines(b"abc", false), 0);
        let all: Vec<&[u8]> = lines(b"a\nbb\nc").collect();
        assert_eq!(all, vec![&b"a\n"[..], &b"bb\n"[..], &b"c"[..]]);
        assert_eq!(lines(b"").count(), 0);
    }

    #[test]
    fn read_block_reads_what_read_then_readline_read() {
        let path = std::env::temp_dir().join(format!("block-{}.txt", std::process::id()));
        let mut text = Vec::new();
        for i in 0..3000u32 {
            let len = if i % 97 == 0 { 5000 } else { (i % 40) as usize };
            text.extend(format!("{i}:{}\n", "y".repeat(len)).into_bytes());
        }
        text.extend(b"no newline at the end");
        std::fs::write(&path, &text).unwrap();
        let p = path.to_str().unwrap();
        // Python: data = f.read(n); if len(data) == n: data += f.readline()
        let reference = |offset: usize, n: usize| -> Vec<u8> {
            let end = (offset + n).min(text.len());
            let mut data = text[offset.min(end)..end].to_vec();
            if data.len() == n {
                let rest = &text[end..];
                let line = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                data.extend(&rest[..line]);
            }
            data
        };
        let mut block = Vec::new();
        for n in [1, 7, 100, 4096, 65_536, 1 << 20] {
            let mut offset = 0;
            loop {
                read_block(p, offset as u64, n, &mut block).unwrap();
                assert_eq!(block, reference(offset, n), "offset {offset}, block {n}");
                if block.is_empty() {
                    break;
                }
                offset += block.len();
            }
            assert_eq!(offset, text.len());
        }
        std::fs::remove_file(&path).unwrap();
        assert!(read_block(p, 0, 10, &mut block).is_err());
    }

    #[test]
    fn count_newlines_counts_a_range_of_a_file() {
        let path = std::env::temp_dir().join(format!("count-{}.txt", std::process::id()));
        let text: Vec<u8> = (0..10_000u32)
            .flat_map(|i| format!("line {i} {}\n", "x".repeat((i % 300) as usize)).into_bytes())
            .collect();
        std::fs::write(&path, &text).unwrap();
        let p = path.to_str().unwrap();
        for (start, stop) in [
            (0, text.len()),
            (5, 77_777),
            (1000, 1001),
            (0, 0),
            (9, 3 << 20),
        ] {
            let stop = stop.min(text.len());
            let want = text[start.min(stop)..stop]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            assert_eq!(
                count_newlines(p, start as u64, stop as u64).unwrap(),
                want as u64
            );
        }
        // Past the end: what there is.
        let all = text.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(count_newlines(p, 0, 1 << 40).unwrap(), all);
        std::fs::remove_file(&path).unwrap();
        assert!(count_newlines(p, 0, 10).is_err());
    }

    #[test]
    fn fill_reads_to_the_end() {
        let mut src: &[u8] = b"0123456789";
        let mut buf = b"xy".to_vec();
        assert!(!fill(&mut src, &mut buf, 4).unwrap());
        assert_eq!(buf, b"xy0123");
        assert!(fill(&mut src, &mut buf, 20).unwrap());
        assert_eq!(buf, b"xy0123456789");
    }
}
