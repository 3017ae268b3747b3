//! Traffic from several places: files and directories (read whole, as Envoy's
//! `file_per_tap` sink writes one file per request, named by trace id), merged into one
//! replay in recorded-time order.
//!
//! Why time order: file names and argument order say nothing about when a request
//! happened (trace ids are random), and the replay's clock never goes backwards, so
//! records taken in name order would have their times collapsed and their counters
//! (lockouts, sessions, rate limits) fire on other requests than they did. One file keeps
//! its own order (its recorder wrote it in order; the clock treats a step back as no
//! step), so merging only interleaves files.

use std::path::{Path, PathBuf};

use super::{Record, read_file_lenient};
use crate::error::TrafficError;

/// The files a traffic argument stands for: the file itself, or a directory's regular
/// files (not hidden ones, not subdirectories) sorted by name, so ties in time replay in
/// one order on every machine.
pub fn files_of(path: &Path) -> Result<Vec<PathBuf>, TrafficError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let read_error = |source| TrafficError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map_err(read_error)?.is_file() {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        return Err(TrafficError::EmptyDirectory {
            path: path.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

/// Reads every file of `paths` (directories whole) and merges them by recorded time,
/// collecting bad entries instead of stopping at the first. A file of no known format
/// (empty, or cut short: a tap file still being written) is collected like a bad entry;
/// one that cannot be read at all is an error.
pub fn read_paths_lenient(
    paths: &[PathBuf],
) -> Result<(Vec<Record>, Vec<TrafficError>), TrafficError> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        for file in files_of(path)? {
            match read_file_lenient(&file) {
                Ok((records, mut bad)) => {
                    files.push(records);
                    errors.append(&mut bad);
                }
                Err(e @ TrafficError::UnknownFormat { .. }) => errors.push(e),
                Err(e) => return Err(e),
            }
        }
    }
    Ok((merge_by_time(files), errors))
}

/// Reads every file of `paths` (directories whole), merged by recorded time; the first
/// bad entry is an error.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<Record>, TrafficError> {
    let (records, mut errors) = read_paths_lenient(paths)?;
    match errors.is_empty() {
        true => Ok(records),
        false => Err(errors.remove(0)),
    }
}

/// Merges the records of several files into recorded-time order, stable for ties (the
/// earlier file first). Each file keeps its own order: a record's place in time is the
/// latest time recorded up to it in its file (a record without a time, or with an
/// earlier one, happens when its predecessor did, as the replay's clock takes it), and
/// records before their file's first time take that first time. A file with no time at
/// all goes first, as the clock starts before any recorded time.
pub fn merge_by_time(files: Vec<Vec<Record>>) -> Vec<Record> {
    if files.len() < 2 {
        return files.into_iter().flatten().collect();
    }
    let mut keyed: Vec<(Option<i64>, Record)> = Vec::new();
    for records in files {
        let mut at = records.iter().find_map(|r| r.time_ns);
        for record in records {
            at = at.max(record.time_ns);
            keyed.push((at, record));
        }
    }
    // `sort_by_key` is stable, and `None` orders before every time.
    keyed.sort_by_key(|(at, _)| *at);
    keyed.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: Option<i64>, origin: &str) -> Record {
        Record {
            time_ns: seconds.map(|s| s * 1_000_000_000),
            origin: origin.to_string(),
            ..Record::default()
        }
    }

    fn origins(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.origin.as_str()).collect()
    }

    #[test]
    fn files_interleave_by_time_and_keep_their_own_order() {
        let a = vec![at(Some(10), "a0"), at(None, "a1"), at(Some(30), "a2")];
        // b's second record steps back in time: it stays after b0, at b0's time.
        let b = vec![at(Some(20), "b0"), at(Some(5), "b1"), at(Some(40), "b2")];
        let merged = merge_by_time(vec![a, b]);
        assert_eq!(origins(&merged), ["a0", "a1", "b0", "b1", "a2", "b2"]);
    }

    #[test]
    fn ties_keep_argument_order_and_untimed_files_go_first() {
        let a = vec![at(Some(10), "a0")];
        let b = vec![at(Some(10), "b0")];
        let c = vec![at(None, "c0"), at(None, "c1")];
        let d = vec![at(None, "d0"), at(Some(7), "d1")];
        let merged = merge_by_time(vec![a, b, c, d]);
        assert_eq!(origins(&merged), ["c0", "c1", "d0", "d1", "a0", "b0"]);
    }

    #[test]
    fn one_file_is_left_as_recorded() {
        let a = vec![at(Some(30), "a0"), at(Some(10), "a1")];
        assert_eq!(origins(&merge_by_time(vec![a])), ["a0", "a1"]);
    }
}
