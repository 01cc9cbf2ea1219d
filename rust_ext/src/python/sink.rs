//! `SegmentSink`: pysam segments pushed one at a time, copied at once, counted on a worker thread.
//!
//! `push` copies the htslib record out of the segment (fixed fields and data block, about 300
//! bytes) into the batch being filled, so pysam can free and reuse the segment's memory right
//! away; full batches go to a worker thread that owns the counter until `close`. Python never
//! waits for counting except when two batches are already queued (bounded memory).
//! `push_all(htslib=True)` takes the records from pysam's region iterator itself
//! ([`super::region`]), with no segment in between. Either way the sink also expands each
//! record's SEQ and QUAL as it copies it, work the worker would otherwise do.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::region::{region_iterator, RegionIterator, Step};
use super::segments::{may_overlap, read_record, verified_type, SegmentRecord};
use super::{count_or_refuse, panic_message, to_py_err, PyGeneCounter};
use crate::bam::{BamCore, BamDecoder, Expansion};
use crate::cigar::CigarOp;
use crate::{CoreError as RustError, GeneCounter, Interval};

/// Records of one batch: fixed fields, the range of each data block in `data`, and where its
/// SEQ and QUAL were expanded ahead in `seq` and `qual` (by the reading thread, so that the
/// worker, which has more to do per record, does not).
#[derive(Default)]
struct Batch {
    records: Vec<(BamCore, usize, usize, Option<Expansion>)>,
    data: Vec<u8>,
    seq: Vec<u8>,
    qual: Vec<u8>,
}

/// Batches queued for the worker beyond the one it counts.
const QUEUED_BATCHES: usize = 2;

/// How long `push_all` keeps the GIL before it lets another Python thread have it (twice
/// CPython's default switch interval, so a waiting thread has asked for it by then).
const GIL_HELD_AT_MOST: Duration = Duration::from_millis(10);

type WorkerResult = (Box<GeneCounter>, Result<(), RustError>);

impl Batch {
    fn clear(&mut self) {
        self.records.clear();
        self.data.clear();
        self.seq.clear();
        self.qual.clear();
    }
}

/// Count every batch received and send it back emptied (its memory is reused for a later
/// batch, instead of fresh pages for every batch); after an error keep receiving (and
/// dropping) until the sender closes, so that `push` never blocks on a worker that stopped.
fn count_batches(
    mut counter: Box<GeneCounter>,
    mut decoder: BamDecoder,
    batches: Receiver<Batch>,
    emptied: Sender<Batch>,
) -> WorkerResult {
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
        // The sink may be gone already (closing); then the batch is simply freed.
        let _ = emptied.send(batch);
    }
    (counter, outcome)
}

#[pyclass(name = "SegmentSink", module = "cd22scan._core")]
pub struct PySegmentSink {
    owner: Py<PyGeneCounter>,
    verified: usize,
    only_window: Option<(i32, Interval)>,
    batch_records: usize,
    batch: Batch,
    /// Expands SEQ and QUAL of each record as it is copied (the worker has its own decoder).
    expander: BamDecoder,
    sender: Option<SyncSender<Batch>>,
    /// Batches the worker has counted, empty, to be filled again.
    /// (In a mutex only because a pyclass must be `Sync`; only `push`, under the GIL, takes it.)
    emptied: Mutex<Receiver<Batch>>,
    worker: Option<JoinHandle<WorkerResult>>,
    on_batch: Option<Py<PyAny>>,
    /// Scratch for the CIGAR of records tested against the window.
    ops: Vec<CigarOp>,
    /// QNAME of the last record pushed (for naming where a read error happened).
    last_name: Option<Vec<u8>>,
    /// When the sink last let go of the GIL.
    gil_released: Instant,
    /// Segments pushed since `on_batch` was last called.
    unreported: u64,
    pushed: u64,
    mapped: u64,
    sent: u64,
}

impl PySegmentSink {
    /// Take `owner`'s counter and start the worker.
    pub fn start(
        owner: Bound<'_, PyGeneCounter>,
        tid: i32,
        only_window: bool,
        batch_records: usize,
        on_batch: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let verified = verified_type().ok_or_else(|| {
            PyTypeError::new_err(
                "segment layout not verified: call segment_layout_matches() on a segment first",
            )
        })?;
        let counter = owner.borrow_mut().lend()?;
        let window = counter.window();
        let decoder = BamDecoder::new(counter.contig(), tid);
        let expander = decoder.clone();
        let (sender, receiver) = sync_channel(QUEUED_BATCHES);
        let (give_back, emptied) = channel();
        let worker = std::thread::Builder::new()
            .name("cd22scan-core".into())
            .spawn(move || count_batches(counter, decoder, receiver, give_back))
            .map_err(|e| to_py_err(RustError::Internal(format!("cannot start a thread: {e}"))))?;
        Ok(Self {
            owner: owner.unbind(),
            verified,
            only_window: only_window.then_some((tid, window)),
            batch_records: batch_records.max(1),
            batch: Batch::default(),
            expander,
            sender: Some(sender),
            emptied: Mutex::new(emptied),
            worker: Some(worker),
            on_batch,
            last_name: None,
            gil_released: Instant::now(),
            ops: Vec::new(),
            unreported: 0,
            pushed: 0,
            mapped: 0,
            sent: 0,
        })
    }

    /// Hand the filled batch to the worker (waiting, without the GIL, if the queue is full),
    /// then tell `on_batch` how many segments were pushed since it last heard.
    fn send(&mut self, py: Python<'_>) -> PyResult<()> {
        // `push_all` runs no Python bytecode between records: let Ctrl-C through here.
        py.check_signals()?;
        if self.unreported > 0 {
            if let Some(callback) = &self.on_batch {
                callback.call1(py, (self.unreported,))?;
            }
            self.unreported = 0;
        }
        if self.batch.records.is_empty() {
            return Ok(());
        }
        let next = match self.emptied.get_mut() {
            Ok(emptied) => emptied.try_recv().unwrap_or_default(),
            Err(_) => Batch::default(),
        };
        let batch = std::mem::replace(&mut self.batch, next);
        let Some(sender) = &self.sender else {
            return Err(to_py_err(RustError::Finished));
        };
        // The worker only stops receiving when it panicked outside catch_unwind; `close`
        // then reports what happened. Only a full queue is waited for without the GIL.
        if let Err(TrySendError::Full(batch)) = sender.try_send(batch) {
            let _ = py.detach(|| sender.send(batch));
            self.gil_released = Instant::now();
        }
        // Other Python threads: CPython hands the GIL to a thread waiting for it when the holder
        // releases it after keeping it for a whole switch interval (5 ms); a holder that lets go
        // for an instant every batch starves it instead (it wakes to find the GIL taken again).
        if self.gil_released.elapsed() >= GIL_HELD_AT_MOST {
            py.detach(|| ());
            self.gil_released = Instant::now();
        }
        Ok(())
    }

    /// Stop the worker and give the counter back to its owner; the worker's error, if any.
    fn stop(&mut self, py: Python<'_>) -> PyResult<()> {
        self.sender = None;
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        let joined = py.detach(|| worker.join());
        let (counter, outcome) = joined
            .map_err(|payload| to_py_err(RustError::Internal(panic_message(payload.as_ref()))))?;
        self.owner.borrow_mut(py).give_back(counter);
        outcome.map_err(to_py_err)
    }
}

#[pymethods]
impl PySegmentSink {
    /// Copy one pysam `AlignedSegment`'s record into the current batch.
    fn push(&mut self, py: Python<'_>, segment: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.worker.is_none() {
            return Err(to_py_err(RustError::Finished));
        }
        if segment.get_type().as_ptr() as usize != self.verified {
            return Err(PyTypeError::new_err(format!(
                "expected a pysam AlignedSegment, got {}",
                segment.get_type()
            )));
        }
        // SAFETY: the type is the one whose layout was verified; `segment` is alive here.
        let record = unsafe { read_record(segment) }
            .ok_or_else(|| PyTypeError::new_err("the segment has no htslib record"))?;
        // SAFETY: as above; `push_record` copies what it keeps before returning.
        unsafe { self.push_record(py, &record) }
    }

    /// Push every record `segments` yields. With `htslib`, a pysam region iterator whose layout
    /// checked out (`iterator_layout_matches`) is advanced by the core itself, with no Python
    /// object per record; otherwise (or for any other iterable) it is iterated here (no Python
    /// loop) and each segment pushed. A read error comes out as pysam raises it (`OSError`),
    /// any other exception of the iterator unchanged; the records pushed before it stay in the
    /// sink (counted at `close`) and `last_name` names the last of them.
    #[pyo3(signature = (segments, *, htslib = false))]
    fn push_all(
        &mut self,
        py: Python<'_>,
        segments: &Bound<'_, PyAny>,
        htslib: bool,
    ) -> PyResult<()> {
        if htslib {
            if let Some(region) = region_iterator(segments)? {
                return self.push_region(py, region);
            }
        }
        for segment in segments.try_iter()? {
            self.push(py, &segment?)?;
        }
        Ok(())
    }

    /// QNAME of the last record pushed (`None` if none).
    #[getter]
    fn last_name(&self) -> Option<String> {
        self.last_name
            .as_deref()
            .map(|name| String::from_utf8_lossy(name).into_owned())
    }

    /// Segments pushed so far.
    #[getter]
    fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Count what is left, stop the worker and give the counter back. Returns (segments pushed,
    /// of which without FLAG 0x4, segments counted). Raises the first `CoreError` of counting.
    fn close(&mut self, py: Python<'_>) -> PyResult<(u64, u64, u64)> {
        let sent = self.send(py);
        let stopped = self.stop(py);
        sent?;
        stopped?;
        Ok((self.pushed, self.mapped, self.sent))
    }
}

impl PySegmentSink {
    /// Copy one record into the current batch (or only count it, when it is off the window).
    ///
    /// # Safety
    /// `record`'s data block must be valid for this call.
    unsafe fn push_record(&mut self, py: Python<'_>, record: &SegmentRecord) -> PyResult<()> {
        let (core, data) = record.view();
        let last_name = self.last_name.get_or_insert_with(Vec::new);
        last_name.clear();
        last_name.extend_from_slice(BamDecoder::qname(&core, data));
        self.pushed += 1;
        self.unreported += 1;
        if core.flag & 0x4 == 0 {
            self.mapped += 1;
        }
        if let Some((tid, window)) = self.only_window {
            if !may_overlap(record, tid, window, &mut self.ops) {
                if self.unreported >= 64 * self.batch_records as u64 {
                    self.send(py)?; // progress through long stretches off the window
                }
                return Ok(());
            }
        }
        let start = self.batch.data.len();
        self.batch.data.extend_from_slice(data);
        let expansion =
            self.expander
                .expand_into(&core, data, &mut self.batch.seq, &mut self.batch.qual);
        self.batch
            .records
            .push((core, start, self.batch.data.len(), expansion));
        self.sent += 1;
        if self.batch.records.len() >= self.batch_records {
            self.send(py)?;
        }
        Ok(())
    }

    /// Advance pysam's region iterator in the core until it ends, pushing every record.
    fn push_region(&mut self, py: Python<'_>, mut region: RegionIterator) -> PyResult<()> {
        if self.worker.is_none() {
            return Err(to_py_err(RustError::Finished));
        }
        loop {
            // SAFETY: `region` comes from the iterator `push_all` holds a reference to, so it
            // is alive; the GIL is held between steps and nothing here touches the iterator but
            // this loop (`send` runs only the progress callback), and each record is copied by
            // `push_record` before the next step overwrites it.
            match unsafe { region.step() } {
                Step::Record(record) => unsafe { self.push_record(py, &record)? },
                Step::End => return Ok(()),
                Step::Failed(code) => return Err(region.read_error(py, code)),
            }
        }
    }
}

impl Drop for PySegmentSink {
    fn drop(&mut self) {
        // Dropped without close(): records of the unsent batch are lost, so the counter goes
        // back marked unusable (its finish() then says the counts would be incomplete).
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            if let Ok((mut counter, _)) = worker.join() {
                counter.mark_unusable();
                Python::attach(|py| {
                    if let Ok(mut owner) = self.owner.bind(py).try_borrow_mut() {
                        owner.give_back(counter);
                    }
                });
            }
        }
    }
}
