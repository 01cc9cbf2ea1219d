//! pysam's region iterator driven from the core: htslib's `hts_itr_next` called on the
//! iterator's own file, index iterator and record, with no Python object per record.
//!
//! `AlignmentFile.fetch(contig, start, end)` returns a Cython `IteratorRowRegion` whose
//! `__next__` calls `hts_itr_next(hts_get_bgzfp(htsfile), iter, b, htsfile)` and then wraps a
//! copy of `b` in a new `AlignedSegment`. The core makes the same call on the same pointers and
//! copies `b` into its batch instead, so the records, their order and the iterator's state are
//! pysam's; only the per-record Python objects are gone. The pointers are read from pysam's
//! compiled object layout, which is not a public API: [`check_iterator`] trusts it only when
//! every anchor agrees (the type, its size, its vtable, the file and header objects it refers
//! to, the file's own htslib handle, and the current record equal to the segment pysam made of
//! it), and the htslib functions are the ones pysam's own `libchtslib` exports (looked up by the
//! caller with `ctypes`). Otherwise the reader keeps to pysam's segments.

use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use super::segments::{read_bam1, read_record, verified_type, RawBam1, SegmentRecord};

type HtsItrNext = unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void, *mut c_void) -> c_int;
type HtsGetBgzfp = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

/// Addresses of htslib's `hts_itr_next` and `hts_get_bgzfp` in pysam's `libchtslib` (0: unset).
static HTS_ITR_NEXT: AtomicUsize = AtomicUsize::new(0);
static HTS_GET_BGZFP: AtomicUsize = AtomicUsize::new(0);

/// The iterator type [`check_iterator`] accepted (0: none yet).
static VERIFIED_ITERATOR: AtomicUsize = AtomicUsize::new(0);

const WORD: usize = size_of::<*const ()>();
/// `IteratorRowRegion` (pysam 0.22–0.24): object header, `int retval`, `bam1_t *b`,
/// `AlignmentFile samfile`, `htsFile *htsfile`, `hts_idx_t *index`, `AlignmentHeader header`,
/// `int owns_samfile`, the Cython vtable pointer, `hts_itr_t *iter`.
const ITER_B: usize = 3 * WORD;
const ITER_SAMFILE: usize = 4 * WORD;
const ITER_HTSFILE: usize = 5 * WORD;
const ITER_HEADER: usize = 7 * WORD;
const ITER_VTABLE: usize = 9 * WORD;
const ITER_ITER: usize = 10 * WORD;
const ITER_BASICSIZE: usize = 11 * WORD;
/// `AlignmentFile` (an `HTSFile`): object header, the vtable pointer, `htsFile *htsfile`, ...
const FILE_VTABLE: usize = 2 * WORD;
const FILE_HTSFILE: usize = 3 * WORD;

/// Remember where pysam's htslib functions are (addresses from `ctypes`).
pub fn set_functions(hts_itr_next: usize, hts_get_bgzfp: usize) {
    HTS_ITR_NEXT.store(hts_itr_next, Ordering::Release);
    HTS_GET_BGZFP.store(hts_get_bgzfp, Ordering::Release);
}

/// The pointers of one verified region iterator, valid while it is alive and not advanced by
/// anyone else.
pub struct RegionIterator {
    /// The `AlignmentFile` the iterator reads (for its name in error messages).
    samfile: Py<PyAny>,
    htsfile: *mut c_void,
    iter: *mut c_void,
    b: *mut RawBam1,
    next: HtsItrNext,
    bgzf: *mut c_void,
}

/// What one step of the iterator gave.
pub enum Step {
    Record(SegmentRecord),
    End,
    /// htslib's negative return code (below -1).
    Failed(c_int),
}

impl RegionIterator {
    /// Advance the iterator (pysam's `cnext`) and borrow the record it read.
    ///
    /// # Safety
    /// The iterator object this came from must be alive, and nothing else may advance it or
    /// touch its record until the returned record has been copied.
    pub unsafe fn step(&mut self) -> Step {
        let code = (self.next)(self.bgzf, self.iter, self.b.cast(), self.htsfile);
        match code {
            0.. => read_bam1(self.b).map_or(Step::Failed(code), Step::Record),
            -1 => Step::End,
            _ => Step::Failed(code),
        }
    }

    /// The error pysam's `__next__` raises for htslib's return `code` (below -1).
    pub fn read_error(&self, py: Python<'_>, code: c_int) -> PyErr {
        if code == -2 {
            return PyOSError::new_err("truncated file");
        }
        let name = self
            .samfile
            .bind(py)
            .getattr("filename")
            .and_then(|name| name.str().map(|s| s.to_string()))
            .unwrap_or_default();
        PyOSError::new_err(format!("error while reading file {name}: {code}"))
    }
}

/// Word `offset` bytes into a Python object.
///
/// # Safety
/// The object must be at least `offset + WORD` bytes long.
unsafe fn word(object: &Bound<'_, PyAny>, offset: usize) -> usize {
    object
        .as_ptr()
        .cast::<u8>()
        .add(offset)
        .cast::<usize>()
        .read_unaligned()
}

/// The pointer in a Cython type's `__pyx_vtable__` capsule (`None` without one).
fn vtable_of(object: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    let ty = object.get_type();
    let Ok(capsule) = ty.getattr("__pyx_vtable__") else {
        return Ok(None);
    };
    let Ok(capsule) = capsule.cast_into::<PyCapsule>() else {
        return Ok(None);
    };
    Ok(Some(capsule.pointer_checked(None)?.as_ptr() as usize))
}

fn is_pysam_type(object: &Bound<'_, PyAny>, name: &str) -> PyResult<bool> {
    let ty = object.get_type();
    Ok(ty.qualname()? == name && ty.module()? == "pysam.libcalignmentfile")
}

/// The iterator's pointers if `iterator` is a pysam `IteratorRowRegion` with the layout
/// described in the module docs (every anchor but the record, see [`check_iterator`]).
fn pointers(iterator: &Bound<'_, PyAny>) -> PyResult<Option<RegionIterator>> {
    let next = HTS_ITR_NEXT.load(Ordering::Acquire);
    let get_bgzfp = HTS_GET_BGZFP.load(Ordering::Acquire);
    if next == 0 || get_bgzfp == 0 || !is_pysam_type(iterator, "IteratorRowRegion")? {
        return Ok(None);
    }
    let basicsize: usize = iterator.get_type().getattr("__basicsize__")?.extract()?;
    if basicsize != ITER_BASICSIZE {
        return Ok(None);
    }
    // SAFETY: the object is `ITER_BASICSIZE` bytes long.
    let at = |offset| unsafe { word(iterator, offset) };
    if vtable_of(iterator)? != Some(at(ITER_VTABLE)) {
        return Ok(None);
    }
    // SAFETY: the vtable sits where the layout says, so this word is the `samfile` reference
    // (a Cython attribute, not reachable from Python), which the iterator keeps alive.
    let samfile =
        unsafe { pyo3::Borrowed::from_ptr_or_opt(iterator.py(), at(ITER_SAMFILE) as *mut _) };
    match samfile {
        Some(samfile) => anchored(iterator, &samfile.to_owned(), next, get_bgzfp),
        None => Ok(None),
    }
}

fn anchored(
    iterator: &Bound<'_, PyAny>,
    samfile: &Bound<'_, PyAny>,
    next: usize,
    get_bgzfp: usize,
) -> PyResult<Option<RegionIterator>> {
    // SAFETY: the iterator's size was checked by the caller.
    let at = |offset| unsafe { word(iterator, offset) };
    if !is_pysam_type(samfile, "AlignmentFile")? {
        return Ok(None);
    }
    let file_size: usize = samfile.get_type().getattr("__basicsize__")?.extract()?;
    if file_size < FILE_HTSFILE + WORD {
        return Ok(None);
    }
    // SAFETY: the file object is at least `FILE_HTSFILE + WORD` bytes long.
    let file_at = |offset| unsafe { word(samfile, offset) };
    let header = samfile.getattr("header")?;
    let anchors = vtable_of(samfile)? == Some(file_at(FILE_VTABLE))
        && header.as_ptr() as usize == at(ITER_HEADER)
        && file_at(FILE_HTSFILE) == at(ITER_HTSFILE)
        && at(ITER_HTSFILE) != 0
        && at(ITER_ITER) != 0
        && at(ITER_B) != 0;
    if !anchors {
        return Ok(None);
    }
    let htsfile = at(ITER_HTSFILE) as *mut c_void;
    // SAFETY: the addresses are htslib's functions of these names (set from pysam's library);
    // `htsfile` is the open file pysam's iterator reads.
    let (next, bgzf) = unsafe {
        let next: HtsItrNext = std::mem::transmute::<usize, HtsItrNext>(next);
        let get_bgzfp: HtsGetBgzfp = std::mem::transmute::<usize, HtsGetBgzfp>(get_bgzfp);
        (next, get_bgzfp(htsfile))
    };
    Ok(Some(RegionIterator {
        samfile: samfile.clone().unbind(),
        htsfile,
        iter: at(ITER_ITER) as *mut c_void,
        b: at(ITER_B) as *mut RawBam1,
        next,
        bgzf,
    }))
}

/// Whether the core can drive `iterator` itself: a pysam region iterator with the expected
/// layout, whose current record equals `segment` (the segment pysam just made of it, so that
/// `b` is pinned too). Remembers the type for [`region_iterator`].
pub fn check_iterator(iterator: &Bound<'_, PyAny>, segment: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Some(verified_segment) = verified_type() else {
        return Ok(false);
    };
    if segment.get_type().as_ptr() as usize != verified_segment {
        return Ok(false);
    }
    let Some(region) = pointers(iterator)? else {
        return Ok(false);
    };
    // SAFETY: `b` is the iterator's current record (layout anchored above); the segment's type
    // is the verified AlignedSegment; both are alive and unchanged during this comparison.
    let same = unsafe {
        match (read_bam1(region.b), read_record(segment)) {
            (Some(current), Some(made)) => {
                let (a, a_data) = current.view();
                let (b, b_data) = made.view();
                a == b && a_data == b_data
            }
            _ => false,
        }
    };
    if same {
        VERIFIED_ITERATOR.store(iterator.get_type().as_ptr() as usize, Ordering::Release);
    }
    Ok(same)
}

/// The pointers of `iterator` if its type passed [`check_iterator`] and its anchors still hold.
pub fn region_iterator(iterator: &Bound<'_, PyAny>) -> PyResult<Option<RegionIterator>> {
    let verified = VERIFIED_ITERATOR.load(Ordering::Acquire);
    if verified == 0 || iterator.get_type().as_ptr() as usize != verified {
        return Ok(None);
    }
    pointers(iterator)
}
