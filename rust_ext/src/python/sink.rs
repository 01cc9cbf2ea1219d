//! `BamSink`: an uncompressed BAM stream written by pysam into a pipe, counted on two threads.
//!
//! The reader opens `pysam.AlignmentFile(sink.fileno(), "wbu", header=...)` and calls its
//! documented `write(segment)` for every record; htslib writes the records, in BAM binary form,
//! into the write end of a pipe the sink made. A reading thread takes the stream apart
//! ([`crate::bam::stream`]), keeps what may overlap the window (for whole-file streams),
//! expands SEQ and QUAL and fills batches; a counting thread owns the counter until `close` and
//! counts each batch. Neither thread touches a Python object, so neither needs the GIL: the
//! only shared state is the pipe and the two channels. The reading thread reads the pipe to its
//! end even after an error, so pysam's writes never block on a reader that stopped.

use std::io::{self, BufReader, PipeWriter};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use pyo3::prelude::*;

use super::{count_or_refuse, panic_message, to_py_err, PyGeneCounter};
use crate::bam::stream::{BamStream, StreamError};
use crate::bam::{BamCore, BamDecoder, Expansion};
use crate::cigar::{decode_bam_cigar, CigarOp};
use crate::{CoreError as RustError, GeneCounter, Interval};

/// Records of one batch: fixed fields, the range of each data block in `data`, and where its
/// SEQ and QUAL were expanded ahead in `seq` and `qual` (by the reading thread, so that the
/// counting thread, which has more to do per record, does not).
#[derive(Default)]
struct Batch {
    records: Vec<(BamCore, usize, usize, Option<Expansion>)>,
    data: Vec<u8>,
    seq: Vec<u8>,
    qual: Vec<u8>,
}

impl Batch {
    fn clear(&mut self) {
        self.records.clear();
        self.data.clear();
        self.seq.clear();
        self.qual.clear();
    }
}

/// Batches queued for the counting thread beyond the one it counts.
const QUEUED_BATCHES: usize = 2;

type CountOutcome = (Box<GeneCounter>, Result<(), RustError>);

/// What the reading thread saw.
#[derive(Default)]
struct ReadOutcome {
    records: u64,
    mapped: u64,
    sent: u64,
    last_name: Option<Vec<u8>>,
    error: Option<String>,
}

/// Count every batch received and send it back emptied (its memory is reused for a later
/// batch); after an error keep receiving (and dropping) until the sender closes, so that the
/// reading thread never blocks on a counter that stopped.
fn count_batches(
    mut counter: Box<GeneCounter>,
    mut decoder: BamDecoder,
    batches: Receiver<Batch>,
    emptied: Sender<Batch>,
) -> CountOutcome {
    let mut outcome = Ok(());
    for mut batch in batches {
        if outcome.is_ok() {
            let records = batch.records.iter().map(|&(core, start, end, expansion)| {
                let data = batch.data.get(start..end).unwrap_or_default();
                let ahead = expansion.and_then(|e| e.view(core.l_qseq, &batch.seq, &batch.qual));
                (core, data, ahead)
            });
            outcome = count_or_refuse(&mut counter, |counter| {
                counter.add_bam_expanded(&mut decoder, records)
            });
        }
        batch.clear();
        // The reading thread may be gone already; then the batch is simply freed.
        let _ = emptied.send(batch);
    }
    (counter, outcome)
}

/// The reading thread's settings.
struct Reading {
    only_window: Option<(i32, Interval)>,
    batch_records: usize,
    expander: BamDecoder,
    sender: SyncSender<Batch>,
    emptied: Receiver<Batch>,
}

impl Reading {
    /// Read the stream to its end, batching records for the counting thread.
    fn run(self, mut pipe: impl io::BufRead) -> ReadOutcome {
        let mut outcome = ReadOutcome::default();
        let read = match pipe.fill_buf() {
            // Nothing was written: the writer was closed before its header (pysam failed to
            // open it, and that error is the one reported).
            Ok([]) => Ok(()),
            Ok(_) => BamStream::open(&mut pipe)
                .and_then(|mut stream| self.fill(&mut stream, &mut outcome)),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = read {
            outcome.error = Some(e.to_string());
            let _ = io::copy(&mut pipe, &mut io::sink());
        }
        outcome
    }

    fn fill(
        &self,
        stream: &mut BamStream<impl io::Read>,
        outcome: &mut ReadOutcome,
    ) -> Result<(), StreamError> {
        let mut batch = Batch::default();
        let mut ops = Vec::new();
        let mut counting = true;
        let last_name = outcome.last_name.get_or_insert_with(Vec::new);
        loop {
            let start = batch.data.len();
            let Some(core) = stream.next_into(&mut batch.data)? else {
                break;
            };
            let data = &batch.data[start..];
            last_name.clear();
            last_name.extend_from_slice(BamDecoder::qname(&core, data));
            outcome.records += 1;
            if core.flag & 0x4 == 0 {
                outcome.mapped += 1;
            }
            let keep = match self.only_window {
                Some((tid, window)) => may_overlap(&core, data, tid, window, &mut ops),
                None => true,
            };
            if !keep || !counting {
                batch.data.truncate(start);
                continue;
            }
            let expansion = self
                .expander
                .expand_into(&core, data, &mut batch.seq, &mut batch.qual);
            let end = batch.data.len();
            batch.records.push((core, start, end, expansion));
            outcome.sent += 1;
            if batch.records.len() >= self.batch_records {
                let next = self.emptied.try_recv().unwrap_or_default();
                let full = std::mem::replace(&mut batch, next);
                // Fails only when the counting thread is gone (it panicked outside
                // catch_unwind); `close` reports that, and the stream is still read to its end.
                counting = self.sender.send(full).is_ok();
            }
        }
        if counting && !batch.records.is_empty() {
            let _ = self.sender.send(batch);
        }
        Ok(())
    }
}

/// Whether a record on `tid` may overlap `window`: it starts before the window ends and, if it
/// is mapped with a CIGAR, ends after the window starts (as pysam's `reference_end`), i.e. what
/// an indexed fetch of the window returns.
fn may_overlap(
    core: &BamCore,
    data: &[u8],
    tid: i32,
    window: Interval,
    ops: &mut Vec<CigarOp>,
) -> bool {
    if core.tid != tid || core.pos >= window.end {
        return false;
    }
    if core.flag & 0x4 != 0 || core.n_cigar == 0 {
        return true;
    }
    let start = usize::from(core.l_qname);
    let Some(raw) = data.get(start..start + core.n_cigar as usize * 4) else {
        return true; // malformed: let the decoder report it
    };
    match decode_bam_cigar(raw, ops) {
        Ok(lengths) => core.pos + lengths.reference as i64 > window.start,
        Err(_) => true,
    }
}

#[pyclass(name = "BamSink", module = "cd22scan._core")]
pub struct PyBamSink {
    owner: Py<PyGeneCounter>,
    /// The pipe's write end; dropped (closed) by `close`.
    writer: Option<PipeWriter>,
    reading: Option<JoinHandle<ReadOutcome>>,
    counting: Option<JoinHandle<CountOutcome>>,
    outcome: ReadOutcome,
}

impl PyBamSink {
    /// Take `owner`'s counter, make the pipe and start both threads.
    pub fn start(
        owner: Bound<'_, PyGeneCounter>,
        tid: i32,
        only_window: bool,
        batch_records: usize,
    ) -> PyResult<Self> {
        let (pipe, writer) = io::pipe()
            .map_err(|e| to_py_err(RustError::Internal(format!("cannot make a pipe: {e}"))))?;
        let counter = owner.borrow_mut().lend()?;
        let window = counter.window();
        let decoder = BamDecoder::new(counter.contig(), tid);
        let (sender, receiver) = sync_channel(QUEUED_BATCHES);
        let (give_back, emptied) = channel();
        let reading = Reading {
            only_window: only_window.then_some((tid, window)),
            batch_records: batch_records.max(1),
            expander: decoder.clone(),
            sender,
            emptied,
        };
        let spawn = |name: &str| std::thread::Builder::new().name(name.into());
        let thread_error =
            |e: io::Error| to_py_err(RustError::Internal(format!("cannot start a thread: {e}")));
        // If a thread cannot start, the counter stays lent: the scan fails anyway.
        let counting = spawn("cd22scan-count")
            .spawn(move || count_batches(counter, decoder, receiver, give_back))
            .map_err(thread_error)?;
        let reading = spawn("cd22scan-read")
            .spawn(move || reading.run(BufReader::with_capacity(1 << 16, pipe)))
            .map_err(thread_error)?;
        Ok(Self {
            owner: owner.unbind(),
            writer: Some(writer),
            reading: Some(reading),
            counting: Some(counting),
            outcome: ReadOutcome::default(),
        })
    }
}

#[pymethods]
impl PyBamSink {
    /// The file descriptor of the pipe's write end, for `pysam.AlignmentFile(fd, "wbu", ...)`
    /// (which duplicates it). The sink owns it and closes it in `close`.
    fn fileno(&self) -> PyResult<i32> {
        self.writer
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .ok_or_else(|| to_py_err(RustError::Finished))
    }

    /// Records read from the stream (valid after `close`).
    #[getter]
    fn records(&self) -> u64 {
        self.outcome.records
    }

    /// QNAME of the last record read from the stream (valid after `close`; `None` if none).
    #[getter]
    fn last_name(&self) -> Option<String> {
        self.outcome
            .last_name
            .as_deref()
            .map(|name| String::from_utf8_lossy(name).into_owned())
    }

    /// Close the write end, count what is left, stop both threads and give the counter back.
    /// Every other writer of the pipe (pysam's duplicate) must be closed first: the stream ends
    /// when the last one is. Returns (records, of which without FLAG 0x4, records counted).
    /// Raises `CoreBug` for a stream that is not uncompressed BAM (pysam writes it, so that is a
    /// bug, not bad input) and `CoreError` for the first error of counting.
    fn close(&mut self, py: Python<'_>) -> PyResult<(u64, u64, u64)> {
        self.writer = None;
        let (Some(reading), Some(counting)) = (self.reading.take(), self.counting.take()) else {
            return Err(to_py_err(RustError::Finished));
        };
        let joined = py.detach(|| (reading.join(), counting.join()));
        let internal = |payload: Box<dyn std::any::Any + Send>| {
            to_py_err(RustError::Internal(panic_message(payload.as_ref())))
        };
        let (read, counted) = joined;
        let (counter, counted) = counted.map_err(internal)?;
        self.owner.borrow_mut(py).give_back(counter);
        self.outcome = read.map_err(internal)?;
        if let Some(error) = &self.outcome.error {
            return Err(to_py_err(RustError::Internal(error.clone())));
        }
        counted.map_err(to_py_err)?;
        let o = &self.outcome;
        Ok((o.records, o.mapped, o.sent))
    }
}

impl Drop for PyBamSink {
    fn drop(&mut self) {
        // Dropped without close(): the counter stays lent (its finish() refuses), and the
        // threads are left to end on their own when pysam's duplicate of the write end closes;
        // joining here could wait for a writer that Python still holds.
        self.writer = None;
    }
}
