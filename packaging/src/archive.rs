//! A minimal, deterministic ustar writer: regular files and directories only, mtime 0,
//! uid/gid 0, fixed modes, no user or group names. Enough for an OCI layout (names of at
//! most 100 bytes: `blobs/sha256/<64 hex>` is 77) and byte-for-byte reproducible, which
//! the `tar` command's defaults (current mtime, owner names) are not.

use crate::Error;

const BLOCK: usize = 512;

/// A tar archive being built in memory.
#[derive(Debug, Default)]
pub struct Tar {
    out: Vec<u8>,
}

impl Tar {
    /// Adds a directory entry (`name` ends with `/`).
    pub fn dir(&mut self, name: &str) -> Result<(), Error> {
        self.entry(name, b'5', 0o755, &[])
    }

    /// Adds a regular file.
    pub fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        self.entry(name, b'0', 0o644, bytes)
    }

    /// The archive, with the two zero blocks that end it.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0; 2 * BLOCK]);
        self.out
    }

    fn entry(&mut self, name: &str, kind: u8, mode: u32, bytes: &[u8]) -> Result<(), Error> {
        if name.len() > 100 {
            return Err(Error::NameTooLong(name.to_owned()));
        }
        // The header up to the checksum field (offsets 0..148) and after it (156..512):
        // the checksum is the byte sum of the header with its own field read as spaces.
        let mut before = Vec::with_capacity(148);
        push_field(&mut before, name.as_bytes(), 100);
        push_field(&mut before, octal(u64::from(mode), 7).as_bytes(), 8);
        push_field(&mut before, octal(0, 7).as_bytes(), 8); // uid
        push_field(&mut before, octal(0, 7).as_bytes(), 8); // gid
        push_field(&mut before, octal(bytes.len() as u64, 11).as_bytes(), 12);
        push_field(&mut before, octal(0, 11).as_bytes(), 12); // mtime
        let mut after = Vec::with_capacity(356);
        after.push(kind);
        push_field(&mut after, b"", 100); // linkname
        after.extend_from_slice(b"ustar\0");
        after.extend_from_slice(b"00");
        push_field(&mut after, b"", 32); // uname
        push_field(&mut after, b"", 32); // gname
        push_field(&mut after, octal(0, 7).as_bytes(), 8); // devmajor
        push_field(&mut after, octal(0, 7).as_bytes(), 8); // devminor
        push_field(&mut after, b"", 155); // prefix
        push_field(&mut after, b"", 12); // to 512
        let sum: u64 = before
            .iter()
            .chain(after.iter())
            .map(|b| u64::from(*b))
            .sum::<u64>()
            + 8 * u64::from(b' ');
        self.out.extend_from_slice(&before);
        // Six octal digits, NUL, space: the form GNU and BSD tar write.
        self.out.extend_from_slice(octal(sum, 6).as_bytes());
        self.out.extend_from_slice(b"\0 ");
        self.out.extend_from_slice(&after);
        self.out.extend_from_slice(bytes);
        let pad = (BLOCK - bytes.len() % BLOCK) % BLOCK;
        self.out.resize(self.out.len() + pad, 0);
        Ok(())
    }
}

/// `value` in octal, zero-padded to `width` digits.
fn octal(value: u64, width: usize) -> String {
    format!("{value:0width$o}")
}

/// `bytes` then NULs up to `width` (callers keep `bytes` within `width`).
fn push_field(out: &mut Vec<u8>, bytes: &[u8], width: usize) {
    let take = bytes.len().min(width);
    out.extend(bytes.iter().take(take));
    out.resize(out.len() + (width - take), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_whole_blocks_and_the_archive_ends_with_two_zero_blocks() {
        let mut tar = Tar::default();
        tar.dir("d/").unwrap();
        tar.file("d/f", b"hello").unwrap();
        let out = tar.finish();
        assert_eq!(out.len(), 512 + 512 + 512 + 1024);
        assert!(out[out.len() - 1024..].iter().all(|b| *b == 0));
        assert_eq!(&out[257..263], b"ustar\0");
        assert_eq!(&out[512 + 512..512 + 512 + 5], b"hello");
    }

    #[test]
    fn the_checksum_field_matches_the_header_sum() {
        let mut tar = Tar::default();
        tar.file("x", b"1").unwrap();
        let out = tar.finish();
        let header = &out[..512];
        let stored =
            u64::from_str_radix(std::str::from_utf8(&header[148..154]).unwrap(), 8).unwrap();
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    u64::from(b' ')
                } else {
                    u64::from(*b)
                }
            })
            .sum();
        assert_eq!(stored, sum);
    }

    #[test]
    fn a_name_longer_than_100_bytes_is_refused() {
        let mut tar = Tar::default();
        assert!(tar.file(&"a".repeat(101), b"").is_err());
    }
}
