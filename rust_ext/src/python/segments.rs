//! pysam `AlignedSegment`s → BAM records, read straight from the htslib `bam1_t` each wraps.
//!
//! pysam (Cython) declares `cdef class AlignedSegment: cdef bam1_t *_delegate; ...` with a
//! virtual table, so the pointer sits after the object header and the vtable pointer. This is
//! pysam's compiled layout, not a public API, so it is trusted only after [`check_layout`] has
//! compared every field read this way with pysam's own accessors on a real segment; batches are
//! then accepted only from that exact type. The reader falls back to SAM text otherwise.

use std::ffi::c_int;
use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::bam::{BamCore, BamDecoder};
use crate::batch::CigarField;
use crate::cigar::{decode_bam_cigar, CigarOp, Interval, OpKind};

/// htslib's `bam1_core_t` (htslib >= 1.10: 64-bit positions).
#[repr(C)]
#[derive(Clone, Copy)]
struct RawCore {
    pos: i64,
    tid: i32,
    bin: u16,
    qual: u8,
    l_extranul: u8,
    flag: u16,
    l_qname: u16,
    n_cigar: u32,
    l_qseq: i32,
    mtid: i32,
    mpos: i64,
    isize: i64,
}

/// htslib's `bam1_t`.
#[repr(C)]
pub(super) struct RawBam1 {
    core: RawCore,
    id: u64,
    data: *mut u8,
    l_data: c_int,
    m_data: u32,
    mempolicy: u32,
}

/// Offset of `_delegate` in an `AlignedSegment`: object header, then the Cython vtable pointer.
const DELEGATE_OFFSET: usize = size_of::<pyo3::ffi::PyObject>() + size_of::<*const ()>();

/// `AlignedSegment`'s size in pysam 0.22–0.24: `_delegate`, `header`, `cache`, 3 spare slots.
const EXPECTED_BASICSIZE: usize = DELEGATE_OFFSET + 6 * size_of::<*const ()>();

/// The type object [`check_layout`] accepted (0: none yet).
static VERIFIED_TYPE: AtomicUsize = AtomicUsize::new(0);

/// One segment's record: fixed fields copied, data block borrowed from the segment.
pub struct SegmentRecord {
    core: BamCore,
    data: *const u8,
    len: usize,
}

// SAFETY: the pointer is only read, while the owning `SegmentBatch` keeps the segment alive.
unsafe impl Send for SegmentRecord {}
// SAFETY: as above; shared reads only.
unsafe impl Sync for SegmentRecord {}

/// The type [`check_layout`] accepted, if any.
pub(super) fn verified_type() -> Option<usize> {
    match VERIFIED_TYPE.load(Ordering::Acquire) {
        0 => None,
        t => Some(t),
    }
}

impl SegmentRecord {
    /// The record's fixed fields and data block.
    ///
    /// # Safety
    /// The `SegmentBatch` this came from must still be alive and its segments unchanged.
    pub unsafe fn view(&self) -> (BamCore, &[u8]) {
        let data = if self.len == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(self.data, self.len)
        };
        (self.core, data)
    }
}

/// A batch of segments, kept alive, with their records.
pub struct SegmentBatch<'py> {
    /// Keeps every segment of the batch alive.
    _owned: Bound<'py, PyList>,
    records: Vec<SegmentRecord>,
    mapped: u64,
}

impl<'py> SegmentBatch<'py> {
    /// Read every segment of `list`; all must be of the verified type. With `only_window`,
    /// keep only records on reference `tid` that may overlap `window` (what an indexed fetch of
    /// the window returns), for whole-file streams; the others are still counted as mapped.
    pub fn collect(
        list: &Bound<'py, PyList>,
        only_window: Option<(i32, Interval)>,
    ) -> PyResult<Self> {
        let verified = VERIFIED_TYPE.load(Ordering::Acquire);
        if verified == 0 {
            return Err(PyTypeError::new_err(
                "segment layout not verified: call segment_layout_matches() on a segment first",
            ));
        }
        // A private copy of the list owns a reference to every segment (one C-level slice), so
        // items are read through borrowed pointers: no per-item reference counting calls.
        let owned = list.get_slice(0, list.len());
        let mut records = Vec::with_capacity(owned.len());
        let mut mapped = 0;
        let mut ops = Vec::new();
        for index in 0..owned.len() {
            // SAFETY: `index` is in bounds of `owned`, which nothing else can reach or change;
            // the returned reference is borrowed from it and `owned` outlives this loop.
            let item = unsafe {
                let pointer = pyo3::ffi::PyList_GetItem(owned.as_ptr(), index as isize);
                pyo3::Borrowed::from_ptr_or_err(list.py(), pointer)?
            };
            if item.get_type().as_ptr() as usize != verified {
                return Err(PyTypeError::new_err(format!(
                    "item {index} of the batch is a {}, not a pysam AlignedSegment",
                    item.get_type()
                )));
            }
            // SAFETY: the type is the one whose layout check_layout verified.
            let record = unsafe { read_record(item.as_any()) }.ok_or_else(|| {
                PyTypeError::new_err(format!("item {index} of the batch has no htslib record"))
            })?;
            if record.core.flag & 0x4 == 0 {
                mapped += 1;
            }
            if let Some((tid, window)) = only_window {
                // SAFETY: `owned` keeps the segment alive.
                if !unsafe { may_overlap(&record, tid, window, &mut ops) } {
                    continue;
                }
            }
            records.push(record);
        }
        Ok(Self {
            _owned: owned,
            records,
            mapped,
        })
    }

    pub fn records(&self) -> &[SegmentRecord] {
        &self.records
    }

    /// Segments of the list without FLAG 0x4 (mapped, as `samtools idxstats` counts them).
    pub fn mapped(&self) -> u64 {
        self.mapped
    }
}

/// Whether a record on `tid` may overlap `window`: it starts before the window ends and, if it
/// is mapped with a CIGAR, ends after the window starts (as pysam's `reference_end`).
///
/// # Safety
/// As [`SegmentRecord::view`].
pub(super) unsafe fn may_overlap(
    record: &SegmentRecord,
    tid: i32,
    window: Interval,
    ops: &mut Vec<CigarOp>,
) -> bool {
    let core = &record.core;
    if core.tid != tid || core.pos >= window.end {
        return false;
    }
    if core.flag & 0x4 != 0 || core.n_cigar == 0 {
        return true;
    }
    let (_, data) = record.view();
    let start = usize::from(core.l_qname);
    let Some(raw) = data.get(start..start + core.n_cigar as usize * 4) else {
        return true; // malformed: let the decoder report it
    };
    match decode_bam_cigar(raw, ops) {
        Ok(lengths) => core.pos + lengths.reference as i64 > window.start,
        Err(_) => true,
    }
}

/// The `bam1_t` behind a segment of a verified type (`None` if it has none).
///
/// # Safety
/// `segment` must be an `AlignedSegment` with pysam's layout (see the module docs).
pub(super) unsafe fn read_record(segment: &Bound<'_, PyAny>) -> Option<SegmentRecord> {
    let object = segment.as_ptr().cast::<u8>();
    let delegate = object
        .add(DELEGATE_OFFSET)
        .cast::<*const RawBam1>()
        .read_unaligned();
    read_bam1(delegate)
}

/// The record of an htslib `bam1_t` (`None` if the pointer is null or the record has no data).
///
/// # Safety
/// `delegate` must be null or point to a live `bam1_t`; the record borrows its data block.
pub(super) unsafe fn read_bam1(delegate: *const RawBam1) -> Option<SegmentRecord> {
    if delegate.is_null() {
        return None;
    }
    let raw = &*delegate;
    let core = raw.core;
    let len = usize::try_from(raw.l_data).ok()?;
    if len > 0 && raw.data.is_null() {
        return None;
    }
    Some(SegmentRecord {
        core: BamCore {
            pos: core.pos,
            tid: core.tid,
            mapq: core.qual,
            l_extranul: core.l_extranul,
            flag: core.flag,
            l_qname: core.l_qname,
            n_cigar: core.n_cigar,
            l_qseq: core.l_qseq,
            mtid: core.mtid,
            mpos: core.mpos,
            isize: core.isize,
        },
        data: raw.data,
        len,
    })
}

/// Whether `segment`'s type has the expected layout and the record read through it equals what
/// pysam's accessors say. On success the type is remembered for [`SegmentBatch::collect`].
pub fn check_layout(segment: &Bound<'_, PyAny>) -> PyResult<bool> {
    let ty = segment.get_type();
    let basicsize: usize = ty.getattr("__basicsize__")?.extract()?;
    let is_pysam = ty.qualname()? == "AlignedSegment"
        && ty.module()? == "pysam.libcalignedsegment"
        && basicsize == EXPECTED_BASICSIZE
        && ty.getattr("__dict__")?.contains("__pyx_vtable__")?;
    if !is_pysam {
        return Ok(false);
    }
    // SAFETY: the type is pysam's AlignedSegment with the expected size and a vtable.
    let Some(record) = (unsafe { read_record(segment) }) else {
        return Ok(false);
    };
    // SAFETY: `segment` is alive for this function and not changed by it.
    let (core, data) = unsafe { record.view() };
    if !fields_agree(segment, &core, data)? {
        return Ok(false);
    }
    VERIFIED_TYPE.store(ty.as_ptr() as usize, Ordering::Release);
    Ok(true)
}

/// Compare the record with pysam's accessors: every fixed field, name, CIGAR, SEQ and QUAL.
fn fields_agree(segment: &Bound<'_, PyAny>, core: &BamCore, data: &[u8]) -> PyResult<bool> {
    let int = |name: &str| -> PyResult<i64> { segment.getattr(name)?.extract() };
    let fixed = int("reference_id")? == i64::from(core.tid)
        && int("reference_start")? == core.pos
        && int("flag")? == i64::from(core.flag)
        && int("mapping_quality")? == i64::from(core.mapq)
        && int("next_reference_id")? == i64::from(core.mtid)
        && int("next_reference_start")? == core.mpos
        && int("template_length")? == core.isize;
    if !fixed {
        return Ok(false);
    }
    // Decode as the counter would, with the record's own reference as the target.
    let mut decoder = BamDecoder::new(b"target", core.tid);
    let Ok(record) = decoder.decode(core, data) else {
        return Ok(false);
    };
    let name: Option<String> = segment.getattr("query_name")?.extract()?;
    if name.as_deref().map(str::as_bytes) != Some(record.qname) {
        return Ok(false);
    }
    let cigar: Option<String> = segment.getattr("cigarstring")?.extract()?;
    let ours = match record.cigar {
        CigarField::Binary([]) => None,
        CigarField::Binary(raw) => Some(cigar_text(raw)),
        CigarField::Text(text) => Some(String::from_utf8_lossy(text).into_owned()),
    };
    if cigar.filter(|c| !c.is_empty()) != ours {
        return Ok(false);
    }
    if core.tid >= 0 && core.l_qseq > 0 {
        let seq: Option<String> = segment.getattr("query_sequence")?.extract()?;
        if seq.as_deref().map(str::as_bytes) != Some(record.seq) {
            return Ok(false);
        }
        let qualities = segment.getattr("query_qualities")?;
        let theirs: Option<Vec<u8>> = if qualities.is_none() {
            None
        } else {
            let bytes = qualities.call_method0("tobytes")?;
            Some(bytes.cast::<PyBytes>()?.as_bytes().to_vec())
        };
        let ours: Option<Vec<u8>> = record.qual.map(|q| q.iter().map(|&c| c - 33).collect());
        // Qualities above 93 are capped for SAM letters; compare only within SAM's range.
        let capped = theirs.map(|t| t.into_iter().map(|q| q.min(93)).collect::<Vec<u8>>());
        if capped != ours {
            return Ok(false);
        }
    }
    Ok(true)
}

/// SAM text of binary CIGAR ops (for comparison with pysam's `cigarstring`).
fn cigar_text(raw: &[u8]) -> String {
    let mut ops = Vec::new();
    if decode_bam_cigar(raw, &mut ops).is_err() {
        return String::new();
    }
    let mut text = String::new();
    for op in ops {
        let letter = match op.kind {
            OpKind::Match => 'M',
            OpKind::Insertion => 'I',
            OpKind::Deletion => 'D',
            OpKind::ReferenceSkip => 'N',
            OpKind::SoftClip => 'S',
            OpKind::HardClip => 'H',
            OpKind::Padding => 'P',
            OpKind::SequenceMatch => '=',
            OpKind::SequenceMismatch => 'X',
        };
        text.push_str(&op.len.to_string());
        text.push(letter);
    }
    text
}
