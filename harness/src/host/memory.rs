//! The one gate between host functions and guest linear memory.
//!
//! Every guest pointer and length the module hands the host goes through here: bounds
//! are computed with checked arithmetic in `u64`, and a failure names the region the
//! host was reading or writing (`"header value"`, `"return pointer"`, ...), so a hostile
//! or buggy module gets `InvalidMemoryAccess` (or a WASI `FAULT`) and the host never
//! panics. Allocation in the guest (`malloc` or `proxy_on_memory_allocate`) lives here
//! too, because the address it returns is one more guest pointer to check.

use std::borrow::Cow;
use std::fmt;

use wasmtime::Caller;

use super::state::HostState;

/// Why a guest memory access failed.
#[derive(Debug)]
pub enum MemoryError {
    /// `ptr + len` is past the end of linear memory (or overflows).
    OutOfBounds {
        /// What the host was touching.
        region: &'static str,
        /// The guest pointer.
        ptr: u64,
        /// The length asked for.
        len: u64,
        /// The size of linear memory at the time.
        memory_size: u64,
    },
    /// The module exports no memory.
    NoMemory,
    /// The guest allocator returned 0 or an address whose block does not fit in memory.
    AllocFailed {
        /// The size asked for.
        size: u64,
        /// The address returned.
        address: u64,
    },
    /// The guest allocator trapped; the trap goes on up to the callback.
    Trap(wasmtime::Error),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::OutOfBounds {
                region,
                ptr,
                len,
                memory_size,
            } => write!(
                f,
                "{region} at {ptr:#x} (+{len} bytes) is outside guest memory of {memory_size} bytes"
            ),
            MemoryError::NoMemory => write!(f, "the module exports no memory named `memory`"),
            MemoryError::AllocFailed { size, address } => write!(
                f,
                "guest allocator returned {address:#x} for {size} bytes; the block is not in guest memory"
            ),
            MemoryError::Trap(e) => write!(f, "guest allocator trapped: {e}"),
        }
    }
}

/// The bounds of `[ptr, ptr + len)` as a range of `usize`, checked against `size`.
fn range(
    region: &'static str,
    ptr: u64,
    len: u64,
    memory_size: usize,
) -> Result<std::ops::Range<usize>, MemoryError> {
    let size = memory_size as u64;
    let err = || MemoryError::OutOfBounds {
        region,
        ptr,
        len,
        memory_size: size,
    };
    let end = ptr.checked_add(len).ok_or_else(err)?;
    if end > size {
        return Err(err());
    }
    let start = usize::try_from(ptr).map_err(|_| err())?;
    let end = usize::try_from(end).map_err(|_| err())?;
    Ok(start..end)
}

/// The `len` bytes at `ptr` of guest memory `data`.
pub fn guest_bytes<'d>(
    data: &'d [u8],
    region: &'static str,
    ptr: u32,
    len: u32,
) -> Result<&'d [u8], MemoryError> {
    let r = range(region, u64::from(ptr), u64::from(len), data.len())?;
    data.get(r).ok_or(MemoryError::OutOfBounds {
        region,
        ptr: u64::from(ptr),
        len: u64::from(len),
        memory_size: data.len() as u64,
    })
}

/// The `len` bytes at `ptr`, borrowed from guest memory.
pub fn slice<'c>(
    caller: &'c Caller<'_, HostState>,
    region: &'static str,
    ptr: u32,
    len: u32,
) -> Result<&'c [u8], MemoryError> {
    let memory = caller.data().memory.ok_or(MemoryError::NoMemory)?;
    guest_bytes(memory.data(caller), region, ptr, len)
}

/// Guest memory and the host state at once, so a host function can read guest bytes
/// (with [`guest_bytes`]) straight into host state without copying them first.
pub fn memory_and_state<'c>(
    caller: &'c mut Caller<'_, HostState>,
) -> Result<(&'c [u8], &'c mut HostState), MemoryError> {
    let memory = caller.data().memory.ok_or(MemoryError::NoMemory)?;
    let (data, state) = memory.data_and_store_mut(caller);
    Ok((data, state))
}

/// The `len` bytes at `ptr`, to write in place.
fn slice_mut<'c>(
    caller: &'c mut Caller<'_, HostState>,
    region: &'static str,
    ptr: u32,
    len: usize,
) -> Result<&'c mut [u8], MemoryError> {
    let memory = caller.data().memory.ok_or(MemoryError::NoMemory)?;
    guest_bytes_mut(memory.data_mut(caller), region, ptr, len)
}

/// The `len` bytes at `ptr` of guest memory `data`, to write in place.
fn guest_bytes_mut<'d>(
    data: &'d mut [u8],
    region: &'static str,
    ptr: u32,
    len: usize,
) -> Result<&'d mut [u8], MemoryError> {
    let size = data.len();
    let r = range(region, u64::from(ptr), len as u64, size)?;
    data.get_mut(r).ok_or(MemoryError::OutOfBounds {
        region,
        ptr: u64::from(ptr),
        len: len as u64,
        memory_size: size as u64,
    })
}

/// A copy of `len` bytes at `ptr`.
pub fn read(
    caller: &mut Caller<'_, HostState>,
    region: &'static str,
    ptr: u32,
    len: u32,
) -> Result<Vec<u8>, MemoryError> {
    slice(caller, region, ptr, len).map(<[u8]>::to_vec)
}

/// A copy of `len` bytes at `ptr`, as text (invalid UTF-8 replaced).
pub fn read_string(
    caller: &mut Caller<'_, HostState>,
    region: &'static str,
    ptr: u32,
    len: u32,
) -> Result<String, MemoryError> {
    read(caller, region, ptr, len)
        .map(|bytes| String::from_utf8(bytes).unwrap_or_else(|e| text(e.as_bytes()).into_owned()))
}

/// Guest bytes as text, invalid UTF-8 replaced: borrowed when they are valid. The
/// standard validator checks ASCII a word at a time where `String::from_utf8_lossy`
/// walks byte by byte, and what a module hands over (property paths, header names and
/// values) is nearly always ASCII.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Writes `bytes` at `ptr`.
pub fn write(
    caller: &mut Caller<'_, HostState>,
    region: &'static str,
    ptr: u32,
    bytes: &[u8],
) -> Result<(), MemoryError> {
    slice_mut(caller, region, ptr, bytes.len())?.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian `u32` (a wasm32 word) at `ptr`.
pub fn write_u32(
    caller: &mut Caller<'_, HostState>,
    region: &'static str,
    ptr: u32,
    value: u32,
) -> Result<(), MemoryError> {
    write(caller, region, ptr, &value.to_le_bytes())
}

/// Writes a little-endian `u64` at `ptr`.
pub fn write_u64(
    caller: &mut Caller<'_, HostState>,
    region: &'static str,
    ptr: u32,
    value: u64,
) -> Result<(), MemoryError> {
    write(caller, region, ptr, &value.to_le_bytes())
}

/// Reads a little-endian `u32` at `ptr`.
pub fn read_u32(
    caller: &mut Caller<'_, HostState>,
    region: &'static str,
    ptr: u32,
) -> Result<u32, MemoryError> {
    let bytes = slice(caller, region, ptr, 4)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes.get(..4).unwrap_or(&[0; 4]));
    Ok(u32::from_le_bytes(word))
}

/// Calls the guest allocator for `size` bytes: the address it returns, unchecked.
fn alloc(caller: &mut Caller<'_, HostState>, size: u32) -> Result<u32, MemoryError> {
    let Some(allocator) = caller.data().allocator.clone() else {
        return Err(MemoryError::AllocFailed {
            size: u64::from(size),
            address: 0,
        });
    };
    allocator
        .call(&mut *caller, size)
        .map_err(MemoryError::Trap)
}

/// Envoy's `copyToPointerSize`: copies `bytes` into a fresh guest allocation and writes
/// its address and size at `ptr_ptr` and `size_ptr` (0 and 0 for an empty value, without
/// calling the allocator).
pub fn copy_out(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> Result<(), MemoryError> {
    let size = u32::try_from(bytes.len()).map_err(|_| MemoryError::AllocFailed {
        size: bytes.len() as u64,
        address: 0,
    })?;
    let address = if size > 0 { alloc(caller, size)? } else { 0 };
    // Memory is looked up once, after the allocator ran (it may have grown memory), for
    // the block and both return words.
    let memory = caller.data().memory.ok_or(MemoryError::NoMemory)?;
    let data = memory.data_mut(&mut *caller);
    if size > 0 {
        let failed = || MemoryError::AllocFailed {
            size: u64::from(size),
            address: u64::from(address),
        };
        if address == 0 {
            return Err(failed());
        }
        guest_bytes_mut(data, "allocated block", address, bytes.len())
            .map_err(|_| failed())?
            .copy_from_slice(bytes);
    }
    guest_bytes_mut(data, "return pointer", ptr_ptr, 4)?.copy_from_slice(&address.to_le_bytes());
    guest_bytes_mut(data, "return size", size_ptr, 4)?.copy_from_slice(&size.to_le_bytes());
    Ok(())
}

/// The size of `pairs` in the proxy-wasm encoding (see [`encode_pairs_into`]).
pub fn pairs_size<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> usize {
    let strings: usize = pairs
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    4 + pairs.len() * 8 + strings
}

/// Encodes pairs the way proxy-wasm does into `out`, which holds exactly
/// [`pairs_size`] bytes: a `u32` count, then a `u32` key length and a `u32` value length
/// per pair, then each key and value followed by a NUL byte.
pub fn encode_pairs_into<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)], out: &mut [u8]) {
    let mut out = Cursor(out);
    out.put(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.put(&(k.as_ref().len() as u32).to_le_bytes());
        out.put(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.put(k.as_ref());
        out.put(&[0]);
        out.put(v.as_ref());
        out.put(&[0]);
    }
}

/// Writes bytes one after the other into a slice (what does not fit is dropped).
struct Cursor<'a>(&'a mut [u8]);

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.0.len());
        let (dest, rest) = std::mem::take(&mut self.0).split_at_mut(n);
        dest.copy_from_slice(bytes.get(..n).unwrap_or_default());
        self.0 = rest;
    }
}

/// Decodes proxy-wasm pairs. Like Envoy, a buffer too short for its header yields no
/// pairs; unlike Envoy (which reads past the end), a buffer too short for its strings
/// also yields no pairs.
pub fn decode_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    pair_slices(bytes)
        .map(|(k, v)| (text(k).into_owned(), text(v).into_owned()))
        .collect()
}

/// The keys and values of proxy-wasm pairs as they are in `bytes` (see
/// [`decode_pairs`]), for a reader that copies only what it keeps. The buffer is
/// checked whole before the first pair comes out, so a malformed one yields none, and
/// nothing is collected on the way.
pub fn pair_slices(bytes: &[u8]) -> PairSlices<'_> {
    let none = PairSlices {
        bytes,
        index: 0,
        count: 0,
        at: 0,
    };
    let Some(count) = word(bytes, 0) else {
        return none;
    };
    let header = count.checked_mul(8).and_then(|n| n.checked_add(4));
    let Some(header) = header.filter(|&h| h <= bytes.len()) else {
        return none;
    };
    let pairs = PairSlices {
        bytes,
        index: 0,
        count,
        at: header,
    };
    if pairs.clone().count() == count {
        pairs
    } else {
        none
    }
}

/// The little-endian `u32` at `at` of `bytes`.
fn word(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    usize::try_from(u32::from_le_bytes(w)).ok()
}

/// The pairs of a proxy-wasm pairs buffer, in order (see [`pair_slices`]).
#[derive(Debug, Clone)]
pub struct PairSlices<'b> {
    bytes: &'b [u8],
    /// The next pair.
    index: usize,
    count: usize,
    /// Where the next pair's key starts.
    at: usize,
}

impl<'b> Iterator for PairSlices<'b> {
    type Item = (&'b [u8], &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let lengths = 4 + self.index * 8;
        let klen = word(self.bytes, lengths)?;
        let vlen = word(self.bytes, lengths + 4)?;
        let key = self.bytes.get(self.at..self.at.checked_add(klen)?)?;
        let at = self.at.checked_add(klen)?.checked_add(1)?;
        let value = self.bytes.get(at..at.checked_add(vlen)?)?;
        self.at = at.checked_add(vlen)?.checked_add(1)?;
        self.index += 1;
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count.saturating_sub(self.index);
        (left, Some(left))
    }
}

impl ExactSizeIterator for PairSlices<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = vec![0xff; pairs_size(pairs)];
        encode_pairs_into(pairs, &mut out);
        out
    }

    #[test]
    fn pairs_round_trip_through_the_wire_format() {
        let bytes = encode_pairs(&[(":path", "/a"), ("x-k", "")]);
        assert_eq!(
            decode_pairs(&bytes),
            vec![
                (":path".to_string(), "/a".to_string()),
                ("x-k".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn truncated_pairs_decode_to_nothing() {
        let bytes = encode_pairs(&[("key", "value")]);
        assert!(decode_pairs(&bytes[..bytes.len() - 3]).is_empty());
        assert!(decode_pairs(&[1, 0]).is_empty());
        assert!(decode_pairs(&u32::MAX.to_le_bytes()).is_empty());
    }

    #[test]
    fn ranges_reject_overflow_and_overrun() {
        assert!(range("r", u64::from(u32::MAX), u64::from(u32::MAX), 100).is_err());
        assert!(range("r", 90, 11, 100).is_err());
        assert_eq!(range("r", 90, 10, 100).ok(), Some(90..100));
        assert_eq!(range("r", 100, 0, 100).ok(), Some(100..100));
    }
}
