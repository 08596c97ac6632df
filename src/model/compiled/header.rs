//! The fixed header and section table at the start of a compiled model file (all integers
//! little-endian; see `docs/compiled-format.md`).

use super::CompiledError;

/// First bytes of every compiled model. The high first byte keeps it from being taken for
/// text; an ONNX protobuf starts with a field tag (0x08) instead.
pub const MAGIC: [u8; 8] = *b"\x89SPECK\r\n";

/// The one layout version this build reads and writes. Bump it on any change to the header,
/// the section contents, or the serialized IR (see the module doc for the rule).
pub const FORMAT_VERSION: u32 = 5;

/// Sections are placed at multiples of this, so weights can be used from a memory map.
pub const ALIGN: usize = 64;

/// Bytes of the fixed header before the section table.
pub const FIXED_LEN: usize = 64;

/// Bytes of one section table entry.
pub const ENTRY_LEN: usize = 24;

/// Width of the NUL-padded target name field.
const TARGET_LEN: usize = 24;

/// Header flag: speck's graph passes were applied before the plan was written.
pub const FLAG_PASSES_APPLIED: u32 = 1;

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// The IR, serialized with postcard.
    Plan = 1,
    /// Raw little-endian tensors, each at a multiple of [`ALIGN`].
    Weights = 2,
}

/// One entry of the section table: a byte range of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// kind
    pub kind: SectionKind,
    /// offset from the start of the file
    pub offset: u64,
    /// length in bytes
    pub len: u64,
}

/// The decoded header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// total file length the writer produced
    pub file_len: u64,
    /// `FLAG_*` bits
    pub flags: u32,
    /// crc32 of every byte after the header (`header_len..file_len`)
    pub payload_crc: u32,
    /// canonical target name
    pub target: String,
    /// section table
    pub sections: Vec<Section>,
}

/// Round up to a multiple of [`ALIGN`].
pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Header length (fixed part plus table, aligned) for `sections` entries.
pub fn header_len(sections: usize) -> usize {
    align_up(FIXED_LEN + sections * ENTRY_LEN)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Header {
    /// Encode; the header checksum is filled in, `payload_crc` is written as given.
    pub fn encode(&self) -> Vec<u8> {
        let len = header_len(self.sections.len());
        let mut b = vec![0u8; len];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.file_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.flags.to_le_bytes());
        b[28..32].copy_from_slice(&self.payload_crc.to_le_bytes());
        let name = self.target.as_bytes();
        b[32..32 + name.len().min(TARGET_LEN)].copy_from_slice(&name[..name.len().min(TARGET_LEN)]);
        b[56..60].copy_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for (i, s) in self.sections.iter().enumerate() {
            let at = FIXED_LEN + i * ENTRY_LEN;
            b[at..at + 4].copy_from_slice(&(s.kind as u32).to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&s.offset.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&s.len.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and check the header of `file` (the whole file's bytes). Checks, in order:
    /// magic, version, header length, header checksum, file length, section bounds.
    pub fn decode(file: &[u8]) -> Result<(Header, usize), CompiledError> {
        if file.len() < MAGIC.len() || file[..MAGIC.len()] != MAGIC {
            return Err(CompiledError::WrongMagic);
        }
        if file.len() < FIXED_LEN {
            return Err(CompiledError::Truncated {
                expected: FIXED_LEN as u64,
                got: file.len() as u64,
            });
        }
        let version = u32_at(file, 8);
        if version != FORMAT_VERSION {
            return Err(CompiledError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let hlen = u32_at(file, 12) as usize;
        let count = u32_at(file, 56) as usize;
        if count > 16 || hlen != header_len(count) {
            return Err(CompiledError::Corrupt(format!(
                "header length {hlen} does not fit {count} sections"
            )));
        }
        if file.len() < hlen {
            return Err(CompiledError::Truncated {
                expected: hlen as u64,
                got: file.len() as u64,
            });
        }
        let mut h = file[..hlen].to_vec();
        let stored = u32_at(&h, 60);
        h[60..64].fill(0);
        if crc32fast::hash(&h) != stored {
            return Err(CompiledError::ChecksumMismatch { part: "header" });
        }
        let file_len = u64_at(file, 16);
        if (file.len() as u64) < file_len {
            return Err(CompiledError::Truncated {
                expected: file_len,
                got: file.len() as u64,
            });
        }
        if file.len() as u64 > file_len {
            return Err(CompiledError::Corrupt(format!(
                "{} bytes after the end the header declares ({file_len} bytes)",
                file.len() as u64 - file_len
            )));
        }
        let target_bytes = &file[32..32 + TARGET_LEN];
        let end = target_bytes
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(TARGET_LEN);
        let target = std::str::from_utf8(&target_bytes[..end])
            .map_err(|_| CompiledError::Corrupt("target name is not UTF-8".into()))?
            .to_string();
        let mut sections = vec![];
        for i in 0..count {
            let at = FIXED_LEN + i * ENTRY_LEN;
            let kind = match u32_at(file, at) {
                1 => SectionKind::Plan,
                2 => SectionKind::Weights,
                k => return Err(CompiledError::Corrupt(format!("unknown section kind {k}"))),
            };
            let (offset, len) = (u64_at(file, at + 8), u64_at(file, at + 16));
            let inside = offset >= hlen as u64
                && offset % ALIGN as u64 == 0
                && offset.checked_add(len).is_some_and(|e| e <= file_len);
            if !inside {
                return Err(CompiledError::Corrupt(format!(
                    "section {kind:?} at {offset}+{len} lies outside the file"
                )));
            }
            sections.push(Section { kind, offset, len });
        }
        Ok((
            Header {
                file_len,
                flags: u32_at(file, 24),
                payload_crc: u32_at(file, 28),
                target,
                sections,
            },
            hlen,
        ))
    }

    /// The section of a kind.
    pub fn section(&self, kind: SectionKind) -> Result<Section, CompiledError> {
        self.sections
            .iter()
            .find(|s| s.kind == kind)
            .copied()
            .ok_or_else(|| CompiledError::Corrupt(format!("no {kind:?} section")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            file_len: 256,
            flags: FLAG_PASSES_APPLIED,
            payload_crc: 0xdead_beef,
            target: "aarch64-dotprod".into(),
            sections: vec![
                Section {
                    kind: SectionKind::Plan,
                    offset: 128,
                    len: 10,
                },
                Section {
                    kind: SectionKind::Weights,
                    offset: 192,
                    len: 64,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let h = sample();
        let mut file = h.encode();
        assert_eq!(file.len(), 128);
        file.resize(256, 0);
        let (back, len) = Header::decode(&file).unwrap();
        assert_eq!((back, len), (h, 128));
    }

    #[test]
    fn every_header_byte_is_checked() {
        let mut file = sample().encode();
        file.resize(256, 0);
        for i in 0..128 {
            let mut f = file.clone();
            f[i] ^= 0x20;
            assert!(Header::decode(&f).is_err(), "flip at {i} went unnoticed");
        }
    }
}
