//! Finding the Linux root filesystem inside a disk image: MBR (type 0x83) or GPT (Linux
//! filesystem GUID) partitions whose ext2/3/4 superblock magic checks out.

use std::io::{Read, Seek, SeekFrom};

/// Why no root partition was found.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// Reading the image failed.
    #[error("reading the image: {0}")]
    Io(#[from] std::io::Error),
    /// No MBR boot signature.
    #[error("no partition table (no MBR signature 0x55AA at byte 510)")]
    NoTable,
    /// A protective MBR without a valid GPT header.
    #[error("protective MBR but no GPT header ('EFI PART') at LBA 1")]
    BadGpt,
    /// Partitions exist, none of them an ext filesystem.
    #[error(
        "no ext4 root filesystem: none of the Linux partitions ({0}) has an ext2/3/4 superblock"
    )]
    NoExtRoot(String),
}

/// A partition, in bytes from the start of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 1-based number, as in `/dev/sdX<n>`.
    pub number: usize,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

const SECTOR: u64 = 512;
/// GPT "Linux filesystem data" type GUID 0FC63DAF-8483-4772-8E79-3D69D8477DE4, as stored.
const GPT_LINUX: [u8; 16] = [
    0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
];
const EXT_MAGIC: u16 = 0xEF53;

fn read_at<F: Read + Seek>(f: &mut F, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(buf)
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Linux partitions listed by the partition table, in table order.
pub fn linux_partitions<F: Read + Seek>(f: &mut F) -> Result<Vec<Partition>, PartitionError> {
    let mut mbr = [0u8; 512];
    read_at(f, 0, &mut mbr)?;
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Err(PartitionError::NoTable);
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + 16 * i..462 + 16 * i]).collect();
    if entries.iter().any(|e| e[4] == 0xEE) {
        return gpt_partitions(f);
    }
    Ok(entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e[4] == 0x83 && u32le(e, 12) > 0)
        .map(|(i, e)| Partition {
            number: i + 1,
            start: u32le(e, 8) as u64 * SECTOR,
            len: u32le(e, 12) as u64 * SECTOR,
        })
        .collect())
}

fn gpt_partitions<F: Read + Seek>(f: &mut F) -> Result<Vec<Partition>, PartitionError> {
    let mut h = [0u8; 92];
    read_at(f, SECTOR, &mut h)?;
    if &h[..8] != b"EFI PART" {
        return Err(PartitionError::BadGpt);
    }
    let table = u64le(&h, 72) * SECTOR;
    let count = u32le(&h, 80).min(1024) as usize;
    let size = u32le(&h, 84) as usize;
    if !(128..=4096).contains(&size) {
        return Err(PartitionError::BadGpt);
    }
    let mut buf = vec![0u8; count * size];
    read_at(f, table, &mut buf)?;
    Ok(buf
        .chunks(size)
        .enumerate()
        .filter(|(_, e)| e[..16] == GPT_LINUX)
        .filter_map(|(i, e)| {
            let (first, last) = (u64le(e, 32), u64le(e, 40));
            (last >= first).then(|| Partition {
                number: i + 1,
                start: first * SECTOR,
                len: (last - first + 1) * SECTOR,
            })
        })
        .collect())
}

/// Whether the partition starts with an ext2/3/4 superblock.
pub fn has_ext_superblock<F: Read + Seek>(f: &mut F, p: &Partition) -> bool {
    let mut m = [0u8; 2];
    p.len > 2048
        && read_at(f, p.start + 1024 + 56, &mut m).is_ok()
        && u16::from_le_bytes(m) == EXT_MAGIC
}

/// The root filesystem: the largest Linux partition holding an ext filesystem.
pub fn find_root<F: Read + Seek>(f: &mut F) -> Result<Partition, PartitionError> {
    let parts = linux_partitions(f)?;
    let names: Vec<String> = parts.iter().map(|p| format!("#{}", p.number)).collect();
    parts
        .into_iter()
        .filter(|p| has_ext_superblock(f, p))
        .max_by_key(|p| p.len)
        .ok_or_else(|| {
            PartitionError::NoExtRoot(if names.is_empty() {
                "there are none".into()
            } else {
                names.join(", ")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn mbr(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        for (i, (ty, start, len)) in entries.iter().enumerate() {
            let e = 446 + 16 * i;
            d[e + 4] = *ty;
            d[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            d[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        }
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    #[test]
    fn mbr_linux_entries_and_the_ext_magic() {
        let mut d = mbr(&[(0x0c, 1, 2), (0x83, 3, 5)]);
        let parts = linux_partitions(&mut Cursor::new(&d)).unwrap();
        assert_eq!(
            parts,
            [Partition {
                number: 2,
                start: 1536,
                len: 2560
            }]
        );
        let e = find_root(&mut Cursor::new(&d)).unwrap_err().to_string();
        assert!(e.contains("no ext4 root") && e.contains("#2"), "{e}");
        d[1536 + 1024 + 56] = 0x53;
        d[1536 + 1024 + 57] = 0xEF;
        assert_eq!(find_root(&mut Cursor::new(&d)).unwrap().number, 2);
    }

    #[test]
    fn not_a_disk_image() {
        let e = find_root(&mut Cursor::new(vec![0u8; 4096])).unwrap_err();
        assert!(matches!(e, PartitionError::NoTable));
        let e = find_root(&mut Cursor::new(vec![0u8; 10])).unwrap_err();
        assert!(matches!(e, PartitionError::Io(_)));
        let protective = mbr(&[(0xEE, 1, 7)]);
        let e = find_root(&mut Cursor::new(protective)).unwrap_err();
        assert!(matches!(e, PartitionError::BadGpt));
    }
}
