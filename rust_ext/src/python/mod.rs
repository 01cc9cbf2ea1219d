//! The Python module `cd22scan._core`: thin PyO3 glue over the Rust API (types in `_core.pyi`).
//!
//! Every call body runs under `catch_unwind`, so even a bug reaches Python as `CoreBug`, never
//! as `PanicException`; input the core refuses raises `CoreError`. The two are unrelated
//! classes, so a caller that turns `CoreError` into "bad input" never mislabels a bug. Counting a
//! batch runs with the GIL released.

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::PyArray1;
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::{CoreError as RustError, CountResult, CounterConfig, BASE_COUNT_KEYS, FILTER_KEYS};

mod sink;
use sink::PyBamSink;

create_exception!(
    cd22scan._core,
    CoreError,
    PyValueError,
    "Raised for input the core refuses (malformed SAM record, unsorted records, bad window)."
);

create_exception!(
    cd22scan._core,
    CoreBug,
    PyRuntimeError,
    "Raised for a bug in the core (a caught panic, a broken internal invariant), never for input."
);

/// The one conversion of core errors into Python exceptions: `Internal` is a bug (`CoreBug`),
/// everything else is input the core refuses (`CoreError`).
pub(crate) fn to_py_err(error: RustError) -> PyErr {
    match error {
        RustError::Internal(_) => CoreBug::new_err(error.to_string()),
        _ => CoreError::new_err(error.to_string()),
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Run `body`, turning a panic into `CoreBug` as a last line of defence.
fn guarded<T>(body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        Err(to_py_err(RustError::Internal(panic_message(
            payload.as_ref(),
        ))))
    })
}

/// Run one counting call; a panic becomes `RustError::Internal` and leaves the counter refusing
/// further input (the batch was only partly counted), as after an error.
pub(crate) fn count_or_refuse<T>(
    counter: &mut crate::GeneCounter,
    body: impl FnOnce(&mut crate::GeneCounter) -> Result<T, RustError>,
) -> Result<T, RustError> {
    match catch_unwind(AssertUnwindSafe(|| body(&mut *counter))) {
        Ok(counted) => counted,
        Err(payload) => {
            counter.mark_unusable();
            Err(RustError::Internal(panic_message(payload.as_ref())))
        }
    }
}

/// A non-negative integer argument that fits `T`.
fn bounded_arg<T: TryFrom<i64>>(
    value: i64,
    name: &'static str,
    expected: &'static str,
) -> PyResult<T> {
    T::try_from(value).map_err(|_| {
        to_py_err(RustError::InvalidParameter {
            name,
            value,
            expected,
        })
    })
}

#[pyclass(name = "GeneCounter", module = "cd22scan._core")]
pub struct PyGeneCounter {
    /// The counter is with a `BamSink` (so `inner` is empty until it is closed).
    lent: bool,
    // Boxed: Python allocates objects with 16-byte alignment only, so a field that needs more
    // (a SIMD type; an inline memchr searcher once crashed here) must live in a Rust allocation.
    inner: Option<Box<crate::GeneCounter>>,
}

impl PyGeneCounter {
    /// Why `inner` is empty.
    fn missing(lent: bool) -> RustError {
        if lent {
            RustError::Lent
        } else {
            RustError::Finished
        }
    }

    /// Hand the counter to a sink.
    fn lend(&mut self) -> PyResult<Box<crate::GeneCounter>> {
        let counter = self
            .inner
            .take()
            .ok_or_else(|| to_py_err(Self::missing(self.lent)))?;
        self.lent = true;
        Ok(counter)
    }

    /// Take the counter back from a sink.
    fn give_back(&mut self, counter: Box<crate::GeneCounter>) {
        self.inner = Some(counter);
        self.lent = false;
    }
}

#[pymethods]
impl PyGeneCounter {
    #[new]
    #[pyo3(signature = (
        contig,
        window_start,
        window_end,
        exons,
        *,
        min_mapq = 20,
        min_baseq = 13,
        min_anchor = 8,
        exclude_flags = 0x704,
        dedup_overlaps = true,
        mate_suffix = "",
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        contig: String,
        window_start: i64,
        window_end: i64,
        exons: Vec<(i64, i64)>,
        min_mapq: i64,
        min_baseq: i64,
        min_anchor: i64,
        exclude_flags: i64,
        dedup_overlaps: bool,
        mate_suffix: &str,
    ) -> PyResult<Self> {
        guarded(|| {
            let config = CounterConfig {
                contig,
                window_start,
                window_end,
                exons,
                min_mapq: bounded_arg(min_mapq, "min_mapq", "0 <= min_mapq < 2**32")?,
                min_baseq: bounded_arg(min_baseq, "min_baseq", "0 <= min_baseq < 2**32")?,
                min_anchor: bounded_arg(min_anchor, "min_anchor", "0 <= min_anchor < 2**32")?,
                exclude_flags: bounded_arg(
                    exclude_flags,
                    "exclude_flags",
                    "a SAM FLAG mask, 0 <= exclude_flags <= 0xFFFF",
                )?,
                dedup_overlaps,
                mate_suffix: crate::names::MateSuffix::from_label(mate_suffix).ok_or_else(
                    || {
                        PyValueError::new_err(format!(
                            "mate_suffix must be '', '/1,/2' or '.1,.2', not {mate_suffix:?}"
                        ))
                    },
                )?,
            };
            let inner = crate::GeneCounter::new(config).map_err(to_py_err)?;
            Ok(Self {
                lent: false,
                inner: Some(Box::new(inner)),
            })
        })
    }

    /// Count a batch of SAM records: complete lines, newline-separated, no header lines.
    fn add_sam(&mut self, py: Python<'_>, records: &[u8]) -> PyResult<()> {
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| to_py_err(Self::missing(self.lent)))?;
        py.detach(|| count_or_refuse(inner, |counter| counter.add_sam(records)))
            .map_err(to_py_err)
    }

    /// A sink for an uncompressed BAM stream that pysam writes into a pipe (`fileno()`); it
    /// counts the records on worker threads in batches of `batch_records`, and this counter is
    /// lent to it until `BamSink.close()`. `tid` is the counted contig's reference id in the
    /// stream's header; with `only_window`, records that cannot overlap the window are passed
    /// over (for whole-file streams) but still counted as read.
    #[pyo3(signature = (tid, *, only_window = false, batch_records = 512))]
    fn bam_sink(
        slf: Bound<'_, Self>,
        tid: i32,
        only_window: bool,
        batch_records: usize,
    ) -> PyResult<PyBamSink> {
        PyBamSink::start(slf, tid, only_window, batch_records)
    }

    /// Flush reads still waiting for a mate and return the counts. Call once.
    fn finish(&mut self, py: Python<'_>) -> PyResult<PyCountResult> {
        let inner = self
            .inner
            .take()
            .ok_or_else(|| to_py_err(Self::missing(self.lent)))?;
        let result = py.detach(|| guarded(|| inner.finish().map_err(to_py_err)))?;
        guarded(|| PyCountResult::build(py, result))
    }
}

#[pyclass(name = "CountResult", module = "cd22scan._core", frozen)]
struct PyCountResult {
    #[pyo3(get)]
    filters: Py<PyDict>,
    #[pyo3(get)]
    base_counts: Py<PyDict>,
    #[pyo3(get)]
    insertions: Py<PyList>,
    #[pyo3(get)]
    deletions: Py<PyList>,
    #[pyo3(get)]
    exon_fragments: Py<PyList>,
    #[pyo3(get)]
    junctions: Py<PyList>,
    #[pyo3(get)]
    intron_counts: Py<PyList>,
    #[pyo3(get)]
    strand_evidence: (u64, u64),
    #[pyo3(get)]
    gene_fragments: u64,
    #[pyo3(get)]
    fragments: u64,
    records: u64,
    used: u64,
}

impl PyCountResult {
    fn build(py: Python<'_>, result: CountResult) -> PyResult<Self> {
        let filters = PyDict::new(py);
        for (key, value) in FILTER_KEYS.iter().zip(result.filters) {
            filters.set_item(key, value)?;
        }
        let base_counts = PyDict::new(py);
        for (key, column) in BASE_COUNT_KEYS.iter().zip(result.base_counts) {
            base_counts.set_item(key, PyArray1::from_vec(py, column))?;
        }
        let intron_counts: Vec<(u64, u64, u64)> = result
            .intron_counts
            .iter()
            .map(|c| (c.left_boundary, c.right_boundary, c.inside))
            .collect();
        let junctions: Vec<(i64, i64, u8, u8, u64, u64)> = result
            .junctions
            .iter()
            .map(|j| {
                (
                    j.start,
                    j.end,
                    j.orientation,
                    j.xs,
                    j.fragments,
                    j.max_anchor,
                )
            })
            .collect();
        let insertions: Vec<(i64, String, u64, u64)> = result
            .insertions
            .into_iter()
            .map(|i| (i.anchor, i.bases, i.forward, i.reverse))
            .collect();
        let deletions: Vec<(i64, u32, u64, u64)> = result
            .deletions
            .iter()
            .map(|d| (d.anchor, d.length, d.forward, d.reverse))
            .collect();
        Ok(Self {
            filters: filters.unbind(),
            base_counts: base_counts.unbind(),
            insertions: PyList::new(py, insertions)?.unbind(),
            deletions: PyList::new(py, deletions)?.unbind(),
            exon_fragments: PyList::new(py, result.exon_fragments)?.unbind(),
            junctions: PyList::new(py, junctions)?.unbind(),
            intron_counts: PyList::new(py, intron_counts)?.unbind(),
            strand_evidence: (result.strand_evidence[0], result.strand_evidence[1]),
            gene_fragments: result.gene_fragments,
            fragments: result.fragments,
            records: result.filters[0],
            used: result.filters[8],
        })
    }
}

#[pymethods]
impl PyCountResult {
    fn __repr__(&self) -> String {
        format!(
            "CountResult(records={}, used={}, fragments={}, gene_fragments={})",
            self.records, self.used, self.fragments, self.gene_fragments
        )
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CoreError", py.get_type::<CoreError>())?;
    m.add("CoreBug", py.get_type::<CoreBug>())?;
    m.add("BASE_COUNT_KEYS", PyTuple::new(py, BASE_COUNT_KEYS)?)?;
    m.add("FILTER_KEYS", PyTuple::new(py, FILTER_KEYS)?)?;
    m.add_class::<PyGeneCounter>()?;
    m.add_class::<PyCountResult>()?;
    m.add_class::<PyBamSink>()?;
    // PyO3's `add` fills `__all__`; `_core.pyi` declares none (and stubtest checks it), and this
    // private module is not meant for `import *`.
    m.delattr("__all__")?;
    Ok(())
}
