//! The segment file format: a magic header, then length-prefixed, checksummed frames.
//!
//! ```text
//! segment  := MAGIC frame*
//! frame    := len:u32le crc:u32le payload[len]
//! crc      := CRC-32 (IEEE) of len's 4 bytes followed by the payload
//! ```
//! A segment is named by the offset of its first record (`00000000000000000000.seg`);
//! offsets are implicit, one per frame. Only the newest segment of a partition is
//! written to; a crash can leave a torn or corrupt tail there and nowhere else.

use std::io::{self, Read};

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"FFLOG\x00\x01\n";

/// Bytes before each payload.
pub const FRAME_HEADER: usize = 8;

/// The largest payload a frame may carry. Larger lengths can only come from corruption.
pub const MAX_FRAME: usize = 64 << 20;

/// The file name of the segment starting at `base`.
pub fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The base offset a segment file name encodes.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 20).then(|| stem.parse().ok())?
}

/// CRC of a frame.
pub fn checksum(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one frame for `payload` to `buf`.
pub fn encode_frame(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What [`parse_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole, valid frame: its payload spans `FRAME_HEADER..FRAME_HEADER + len`.
    Ok {
        /// Payload length.
        len: usize,
    },
    /// The buffer ends inside the frame.
    Incomplete,
    /// The frame's length or checksum is wrong.
    Corrupt(&'static str),
}

/// Parses the frame at the start of `buf`.
pub fn parse_frame(buf: &[u8]) -> Frame {
    if buf.len() < FRAME_HEADER {
        return Frame::Incomplete;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let n = len as usize;
    if n > MAX_FRAME {
        return Frame::Corrupt("frame length out of range");
    }
    if buf.len() < FRAME_HEADER + n {
        return Frame::Incomplete;
    }
    if checksum(len, &buf[FRAME_HEADER..FRAME_HEADER + n]) != crc {
        return Frame::Corrupt("checksum mismatch");
    }
    Frame::Ok { len: n }
}

/// The result of scanning a whole segment.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// Valid frames from the start.
    pub records: u64,
    /// Bytes they occupy, header included: where a writer continues.
    pub valid_len: u64,
    /// Bytes after the valid prefix (a torn or corrupt tail), and why.
    pub tail: Option<(u64, &'static str)>,
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
pub fn read_full(mut r: impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Scans a segment from its start, verifying every frame.
pub fn scan(mut file: impl Read) -> io::Result<Scan> {
    let mut magic = [0u8; MAGIC.len()];
    let got = read_full(&mut file, &mut magic)?;
    if got < MAGIC.len() || &magic != MAGIC {
        let mut rest = Vec::new();
        file.read_to_end(&mut rest)?;
        return Ok(Scan {
            records: 0,
            valid_len: 0,
            tail: Some(((got + rest.len()) as u64, "bad segment header")),
        });
    }
    let mut buf = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    let mut records = 0u64;
    let mut valid = MAGIC.len() as u64;
    let mut start = 0usize;
    loop {
        let n = file.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match parse_frame(&buf[start..]) {
                Frame::Ok { len } => {
                    start += FRAME_HEADER + len;
                    valid += (FRAME_HEADER + len) as u64;
                    records += 1;
                }
                Frame::Incomplete => break,
                Frame::Corrupt(why) => {
                    let mut rest = Vec::new();
                    file.read_to_end(&mut rest)?;
                    let tail = (buf.len() - start + rest.len()) as u64;
                    return Ok(Scan {
                        records,
                        valid_len: valid,
                        tail: Some((tail, why)),
                    });
                }
            }
        }
        buf.drain(..start);
        start = 0;
        if n == 0 {
            let tail = (!buf.is_empty()).then_some((buf.len() as u64, "torn frame"));
            return Ok(Scan {
                records,
                valid_len: valid,
                tail,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for p in payloads {
            encode_frame(&mut b, p);
        }
        b
    }

    #[test]
    fn clean_segment_scans_whole() {
        let seg = segment(&[b"a", b"bc", b""]);
        let s = scan(&seg[..]).unwrap();
        assert_eq!(
            (s.records, s.valid_len, s.tail),
            (3, seg.len() as u64, None)
        );
    }

    #[test]
    fn torn_tail_is_found() {
        let seg = segment(&[b"hello", b"world"]);
        for cut in 1..13 {
            let torn = &seg[..seg.len() - cut];
            let s = scan(torn).unwrap();
            assert_eq!(s.records, 1, "cut {cut}");
            assert_eq!(s.valid_len, (MAGIC.len() + FRAME_HEADER + 5) as u64);
            assert!(s.tail.is_some());
        }
    }

    #[test]
    fn flipped_bit_is_found() {
        let mut seg = segment(&[b"hello", b"world", b"again"]);
        let at = MAGIC.len() + FRAME_HEADER + 5 + FRAME_HEADER + 2;
        seg[at] ^= 0x10;
        let s = scan(&seg[..]).unwrap();
        assert_eq!(s.records, 1);
        assert_eq!(s.tail.map(|t| t.1), Some("checksum mismatch"));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name(".lock"), None);
    }
}
