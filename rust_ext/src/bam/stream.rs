//! An uncompressed BAM stream (what `pysam.AlignmentFile(fd, "wbu")` writes) → records.
//!
//! htslib writes "uncompressed" BAM as BGZF blocks whose deflate data are stored blocks (level
//! 0), so unframing is copying: [`StoredBgzf`] checks each block's framing (gzip magic, the `BC`
//! field, stored deflate blocks with LEN/NLEN, ISIZE) and hands the payload on; anything else
//! (a compressed block) is refused with a message, never guessed at. A stream that starts with
//! the BAM magic itself (no BGZF framing at all) is read as it is. [`BamStream`] reads the
//! BAM header (skipped: the reader parses it with pysam) and then one record at a time into a
//! caller's buffer. Layout: SAM specification §4.2 (BAM) and §4.1 (BGZF).

use std::fmt;
use std::io::{self, Read};

use super::BamCore;

/// What was wrong with the stream.
#[derive(Debug)]
pub enum StreamError {
    Io(io::Error),
    /// Not the framing htslib writes for uncompressed BAM.
    Framing(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "reading the BAM stream: {e}"),
            Self::Framing(what) => write!(f, "BAM stream: {what}"),
        }
    }
}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::InvalidData {
            if let Some(inner) = e.get_ref() {
                return Self::Framing(inner.to_string());
            }
        }
        Self::Io(e)
    }
}

fn framing(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The payload of BGZF blocks made of stored (level 0) deflate blocks, as one byte stream.
pub struct StoredBgzf<R> {
    inner: R,
    /// The input is not BGZF but the bytes themselves (it started with the BAM magic).
    raw: bool,
    /// Bytes read ahead from `inner` (to look for the BAM magic), to be read first.
    pending: Vec<u8>,
    block: Vec<u8>,
    payload: Vec<u8>,
    at: usize,
}

impl<R: Read> StoredBgzf<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            raw: false,
            pending: Vec::new(),
            block: Vec::with_capacity(1 << 16),
            payload: Vec::with_capacity(1 << 16),
            at: 0,
        }
    }

    /// The next block's payload into `payload`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        let mut header = [0u8; 12];
        let ahead = std::mem::take(&mut self.pending);
        header[..ahead.len()].copy_from_slice(&ahead);
        if !read_exact_or_eof(&mut self.inner, &mut header[ahead.len()..])? {
            if ahead.is_empty() {
                return Ok(false);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if header[..4] != [0x1f, 0x8b, 8, 4] {
            return Err(framing(
                "not a BGZF block (expected gzip magic with FEXTRA)",
            ));
        }
        let xlen = usize::from(u16::from_le_bytes([header[10], header[11]]));
        self.block.resize(xlen, 0);
        self.inner.read_exact(&mut self.block)?;
        let bsize = bgzf_block_size(&self.block)
            .ok_or_else(|| framing("BGZF block without its BC (block size) field"))?;
        let rest = (bsize + 1)
            .checked_sub(12 + xlen)
            .filter(|&n| n >= 8)
            .ok_or_else(|| framing("BGZF block size smaller than its header"))?;
        self.block.resize(rest, 0);
        self.inner.read_exact(&mut self.block)?;
        let (deflate, trailer) = self.block.split_at(rest - 8);
        let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]) as usize;
        self.payload.clear();
        self.at = 0;
        if isize == 0 {
            return Ok(true); // an empty block, e.g. the end-of-file marker
        }
        let mut data = deflate;
        loop {
            let [head, l0, l1, n0, n1, tail @ ..] = data else {
                return Err(framing("truncated stored deflate block"));
            };
            if (head >> 1) & 3 != 0 {
                return Err(framing(
                    "compressed BGZF block where uncompressed BAM (level 0) was expected",
                ));
            }
            let len = u16::from_le_bytes([*l0, *l1]);
            if len != !u16::from_le_bytes([*n0, *n1]) {
                return Err(framing("stored deflate block with LEN != ~NLEN"));
            }
            let len = usize::from(len);
            let bytes = tail
                .get(..len)
                .ok_or_else(|| framing("truncated stored deflate block"))?;
            self.payload.extend_from_slice(bytes);
            data = &tail[len..];
            if head & 1 == 1 {
                break;
            }
        }
        if self.payload.len() != isize {
            return Err(framing(format!(
                "BGZF block holds {} bytes, its ISIZE says {isize}",
                self.payload.len()
            )));
        }
        Ok(true)
    }
}

impl<R: Read> Read for StoredBgzf<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.raw {
            return self.inner.read(buf);
        }
        while self.at == self.payload.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.payload.len() - self.at);
        buf[..n].copy_from_slice(&self.payload[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// BSIZE (total block size - 1) from a gzip extra field, if it has the BGZF `BC` subfield.
fn bgzf_block_size(mut extra: &[u8]) -> Option<usize> {
    while let [s1, s2, l0, l1, rest @ ..] = extra {
        let len = usize::from(u16::from_le_bytes([*l0, *l1]));
        let field = rest.get(..len)?;
        if (*s1, *s2, len) == (b'B', b'C', 2) {
            return Some(usize::from(u16::from_le_bytes([field[0], field[1]])));
        }
        extra = &rest[len..];
    }
    None
}

/// Fill `buf`; false if the input ended before its first byte (an error if in the middle).
fn read_exact_or_eof(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Bytes of a BAM record's fixed part after `block_size`.
const FIXED: usize = 32;

/// BAM records from an uncompressed BAM stream.
pub struct BamStream<R> {
    input: StoredBgzf<R>,
}

impl<R: Read> BamStream<R> {
    /// Read and skip the BAM header (magic, text, reference list).
    pub fn open(inner: R) -> Result<Self, StreamError> {
        let mut input = StoredBgzf::new(inner);
        let mut magic = [0u8; 8];
        input.inner.read_exact(&mut magic[..4])?;
        if magic[..4] == *b"BAM\x01" {
            input.raw = true;
            input.inner.read_exact(&mut magic[4..])?;
        } else {
            // The first bytes of a BGZF block: read again by `next_block`.
            input.pending = magic[..4].to_vec();
            input.read_exact(&mut magic)?;
        }
        if magic[..4] != *b"BAM\x01" {
            return Err(StreamError::Framing("no BAM magic at its start".into()));
        }
        let l_text = u32::from_le_bytes([magic[4], magic[5], magic[6], magic[7]]);
        skip(&mut input, u64::from(l_text))?;
        let n_ref = read_u32(&mut input)?;
        for _ in 0..n_ref {
            let l_name = read_u32(&mut input)?;
            skip(&mut input, u64::from(l_name) + 4)?;
        }
        Ok(Self { input })
    }

    /// Append the next record's data block (QNAME onwards) to `data` and return its fixed
    /// fields; `None` at the end of the stream.
    pub fn next_into(&mut self, data: &mut Vec<u8>) -> Result<Option<BamCore>, StreamError> {
        let mut size = [0u8; 4];
        if !read_exact_or_eof(&mut self.input, &mut size)? {
            return Ok(None);
        }
        let block_size = u32::from_le_bytes(size) as usize;
        if block_size < FIXED {
            return Err(StreamError::Framing(format!(
                "record of {block_size} bytes, shorter than its {FIXED} fixed bytes"
            )));
        }
        let mut fixed = [0u8; FIXED];
        self.input.read_exact(&mut fixed)?;
        let start = data.len();
        data.resize(start + block_size - FIXED, 0);
        self.input.read_exact(&mut data[start..])?;
        let i32_at =
            |i: usize| i32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        let u16_at = |i: usize| u16::from_le_bytes([fixed[i], fixed[i + 1]]);
        Ok(Some(BamCore {
            tid: i32_at(0),
            pos: i64::from(i32_at(4)),
            l_qname: u16::from(fixed[8]),
            mapq: fixed[9],
            l_extranul: 0,
            n_cigar: u32::from(u16_at(12)),
            flag: u16_at(14),
            l_qseq: i32_at(16),
            mtid: i32_at(20),
            mpos: i64::from(i32_at(24)),
            isize: i64::from(i32_at(28)),
        }))
    }
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0u8; 4];
    input.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

fn skip(input: &mut impl Read, n: u64) -> io::Result<()> {
    let skipped = io::copy(&mut input.take(n), &mut io::sink())?;
    if skipped == n {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One BGZF block of stored deflate blocks of at most `piece` bytes each.
    fn bgzf(payload: &[u8], piece: usize) -> Vec<u8> {
        let mut deflate = Vec::new();
        let pieces: Vec<&[u8]> = if payload.is_empty() {
            vec![&[][..]]
        } else {
            payload.chunks(piece).collect()
        };
        for (i, chunk) in pieces.iter().enumerate() {
            deflate.push(u8::from(i + 1 == pieces.len()));
            let len = chunk.len() as u16;
            deflate.extend_from_slice(&len.to_le_bytes());
            deflate.extend_from_slice(&(!len).to_le_bytes());
            deflate.extend_from_slice(chunk);
        }
        let bsize = (18 + deflate.len() + 8 - 1) as u16;
        let mut block = vec![
            0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 6, 0, b'B', b'C', 2, 0,
        ];
        block.extend_from_slice(&bsize.to_le_bytes());
        block.extend_from_slice(&deflate);
        block.extend_from_slice(&[0; 4]); // CRC32, not checked
        block.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        block
    }

    const EOF_BLOCK: &[u8] = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00\x1b\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00";

    fn record(name: &[u8], tid: i32, pos: i32, flag: u16) -> Vec<u8> {
        let mut data = name.to_vec();
        data.push(0);
        let mut rec = Vec::new();
        let block_size = (32 + data.len()) as u32;
        rec.extend_from_slice(&block_size.to_le_bytes());
        rec.extend_from_slice(&tid.to_le_bytes());
        rec.extend_from_slice(&pos.to_le_bytes());
        rec.push(data.len() as u8);
        rec.push(60); // MAPQ
        rec.extend_from_slice(&[0, 0]); // bin
        rec.extend_from_slice(&0u16.to_le_bytes()); // n_cigar_op
        rec.extend_from_slice(&flag.to_le_bytes());
        rec.extend_from_slice(&0i32.to_le_bytes()); // l_seq
        rec.extend_from_slice(&(-1i32).to_le_bytes());
        rec.extend_from_slice(&(-1i32).to_le_bytes());
        rec.extend_from_slice(&0i32.to_le_bytes());
        rec.extend_from_slice(&data);
        rec
    }

    fn header() -> Vec<u8> {
        let text = b"@SQ\tSN:chr1\tLN:100\n";
        let mut h = b"BAM\x01".to_vec();
        h.extend_from_slice(&(text.len() as u32).to_le_bytes());
        h.extend_from_slice(text);
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&5u32.to_le_bytes());
        h.extend_from_slice(b"chr1\0");
        h.extend_from_slice(&100u32.to_le_bytes());
        h
    }

    #[test]
    fn reads_records_across_blocks_and_pieces() {
        let mut payload = header();
        payload.extend(record(b"r1", 0, 10, 0));
        payload.extend(record(b"r2", 0, 20, 4));
        // Split the payload so that a record straddles two BGZF blocks.
        let (a, b) = payload.split_at(payload.len() - 20);
        let mut stream = bgzf(a, 7);
        stream.extend(bgzf(b, 1000));
        stream.extend_from_slice(EOF_BLOCK);
        let mut bam = BamStream::open(&stream[..]).unwrap();
        let mut data = Vec::new();
        let first = bam.next_into(&mut data).unwrap().unwrap();
        assert_eq!(
            (first.tid, first.pos, first.flag, first.mapq),
            (0, 10, 0, 60)
        );
        assert_eq!(data, b"r1\0");
        let second = bam.next_into(&mut data).unwrap().unwrap();
        assert_eq!((second.pos, second.flag, second.l_qname), (20, 4, 3));
        assert_eq!(data, b"r1\0r2\0");
        assert!(bam.next_into(&mut data).unwrap().is_none());
    }

    #[test]
    fn reads_raw_bam_without_bgzf_framing() {
        let mut payload = header();
        payload.extend(record(b"r1", 0, 10, 0));
        let mut bam = BamStream::open(&payload[..]).unwrap();
        let mut data = Vec::new();
        assert_eq!(bam.next_into(&mut data).unwrap().unwrap().pos, 10);
        assert_eq!(data, b"r1\0");
        assert!(bam.next_into(&mut data).unwrap().is_none());
    }

    #[test]
    fn refuses_compressed_blocks_and_bad_lengths() {
        let mut compressed = bgzf(&header(), 100);
        compressed[18] = 0b011; // BFINAL, BTYPE 01 (fixed Huffman)
        let err = BamStream::open(&compressed[..]).err().unwrap();
        assert!(err.to_string().contains("compressed BGZF block"), "{err}");

        let mut bad_nlen = bgzf(&header(), 100);
        bad_nlen[21] ^= 1;
        let err = BamStream::open(&bad_nlen[..]).err().unwrap();
        assert!(err.to_string().contains("LEN != ~NLEN"), "{err}");

        let err = BamStream::open(&b"not bgzf at all"[..]).err().unwrap();
        assert!(err.to_string().contains("not a BGZF block"), "{err}");
    }

    #[test]
    fn a_record_cut_short_is_an_error() {
        let mut payload = header();
        payload.extend(record(b"r1", 0, 10, 0));
        payload.truncate(payload.len() - 2);
        let stream = bgzf(&payload, 1000);
        let mut bam = BamStream::open(&stream[..]).unwrap();
        assert!(bam.next_into(&mut Vec::new()).is_err());
    }
}
