//! The WASI preview1 calls Envoy offers, under `wasi_snapshot_preview1` and
//! `wasi_unstable`, with Envoy's answers (proxy-wasm-cpp-host `exports.cc`).
//!
//! stdout and stderr go to the log at info and error (one trailing newline removed);
//! files do not exist (`fd_read` is `NOSYS`, preopens are `BADF`, `path_open` is
//! `NOENT`, other path and socket calls `NOTSUP`); clocks read the virtual clock
//! (realtime and monotonic; CPU-time clocks are `NOTSUP`); `random_get` draws from the
//! seeded generator; the environment is the VM's; there are no arguments; `poll_oneoff`
//! reports no events and succeeds; `proc_exit` traps (Envoy returns into the guest,
//! which then hits `unreachable`).

use wasmtime::Caller;

use super::memory::{read, read_u32, write, write_u32, write_u64};
use super::state::HostState;
use super::{LoadError, Registrar};
use crate::abi::{LogLevel, errno};

/// What a WASI function returns: an errno, or a trap.
type WasiResult = wasmtime::Result<u32>;

const NOENT: u32 = 44;
const NOTDIR: u32 = 54;

/// Registers this file's imports under both WASI module names.
pub fn register(r: &mut Registrar<'_>) -> Result<(), LoadError> {
    r.wasi("fd_write", fd_write)?;
    r.wasi("fd_pwrite", fd_pwrite)?;
    r.wasi("fd_read", fd_read)?;
    r.wasi("fd_pread", fd_pread)?;
    r.wasi("fd_seek", fd_seek)?;
    r.wasi("fd_tell", fd_tell)?;
    r.wasi("fd_close", fd_close)?;
    r.wasi("fd_fdstat_get", fd_fdstat_get)?;
    r.wasi("fd_fdstat_set_flags", fd_fdstat_set_flags)?;
    r.wasi("fd_fdstat_set_rights", fd_fdstat_set_rights)?;
    r.wasi("fd_prestat_get", fd_prestat_get)?;
    r.wasi("fd_prestat_dir_name", fd_prestat_dir_name)?;
    r.wasi("fd_filestat_get", fd_filestat_get)?;
    r.wasi("fd_filestat_set_size", fd_filestat_set_size)?;
    r.wasi("fd_filestat_set_times", fd_filestat_set_times)?;
    r.wasi("fd_advise", fd_advise)?;
    r.wasi("fd_allocate", fd_allocate)?;
    r.wasi("fd_datasync", fd_sync)?;
    r.wasi("fd_sync", fd_sync)?;
    r.wasi("fd_readdir", fd_readdir)?;
    r.wasi("fd_renumber", fd_renumber)?;
    r.wasi("environ_get", environ_get)?;
    r.wasi("environ_sizes_get", environ_sizes_get)?;
    r.wasi("args_get", args_get)?;
    r.wasi("args_sizes_get", args_sizes_get)?;
    r.wasi("clock_time_get", clock_time_get)?;
    r.wasi("clock_res_get", clock_res_get)?;
    r.wasi("random_get", random_get)?;
    r.wasi("sched_yield", sched_yield)?;
    r.wasi("poll_oneoff", poll_oneoff)?;
    r.wasi("proc_exit", proc_exit)?;
    r.wasi("path_open", path_open)?;
    r.wasi("path_filestat_get", path_filestat_get)?;
    r.wasi("path_create_directory", path_fd_only)?;
    r.wasi("path_remove_directory", path_fd_only)?;
    r.wasi("path_unlink_file", path_fd_only)?;
    r.wasi("path_rename", path_rename)?;
    r.wasi("path_link", path_link)?;
    r.wasi("path_symlink", path_symlink)?;
    r.wasi("path_readlink", path_readlink)?;
    r.wasi("path_filestat_set_times", path_filestat_set_times)?;
    r.wasi("sock_accept", sock_accept)?;
    r.wasi("sock_recv", sock_recv)?;
    r.wasi("sock_send", sock_send)?;
    r.wasi("sock_shutdown", sock_shutdown)?;
    Ok(())
}

fn is_std_stream(fd: u32) -> bool {
    fd == 1 || fd == 2
}

/// The answer to an operation Envoy accepts (and ignores) on stdout and stderr only.
fn accepted_on_std_streams(fd: u32) -> u32 {
    if is_std_stream(fd) {
        errno::SUCCESS
    } else {
        errno::BADF
    }
}

/// Gathers the iovecs and logs them; returns the byte count or an errno.
fn write_iovs(
    caller: &mut Caller<'_, HostState>,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
) -> Result<u32, u32> {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Err(errno::BADF),
    };
    let mut text = Vec::new();
    for i in 0..iovs_len {
        let entry = i
            .checked_mul(8)
            .and_then(|o| iovs.checked_add(o))
            .ok_or(errno::FAULT)?;
        let buf = read_u32(caller, "iovec", entry).map_err(|_| errno::FAULT)?;
        let len = read_u32(caller, "iovec", entry.wrapping_add(4)).map_err(|_| errno::FAULT)?;
        if len > 0 {
            text.extend(read(caller, "iovec buffer", buf, len).map_err(|_| errno::FAULT)?);
        }
    }
    caller
        .data_mut()
        .count_call("fd_write", text.len(), 0, |_| level.name().to_string());
    let written = u32::try_from(text.len()).unwrap_or(u32::MAX);
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    if written > 0 {
        caller
            .data_mut()
            .log(level, String::from_utf8_lossy(&text).into_owned());
    }
    Ok(written)
}

/// `fd_write(fd, iovs, iovs_len, nwritten_ptr)`: stdout at info, stderr at error.
pub fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    nwritten: u32,
) -> WasiResult {
    let written = match write_iovs(&mut caller, fd, iovs, iovs_len) {
        Ok(w) => w,
        Err(e) => return Ok(e),
    };
    if write_u32(&mut caller, "nwritten", nwritten, written).is_err() {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `fd_pwrite(fd, iovs, iovs_len, offset, nwritten_ptr)`: like `fd_write`.
pub fn fd_pwrite(
    caller: Caller<'_, HostState>,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    _offset: u64,
    nwritten: u32,
) -> WasiResult {
    fd_write(caller, fd, iovs, iovs_len, nwritten)
}

/// `fd_read`: no files can be read.
pub fn fd_read(
    _: Caller<'_, HostState>,
    _fd: u32,
    _iovs: u32,
    _len: u32,
    _nread: u32,
) -> WasiResult {
    Ok(errno::NOSYS)
}

/// `fd_pread`: no files can be read.
pub fn fd_pread(
    _: Caller<'_, HostState>,
    _fd: u32,
    _iovs: u32,
    _len: u32,
    _offset: u64,
    _nread: u32,
) -> WasiResult {
    Ok(errno::NOSYS)
}

/// `fd_seek`: Envoy logs and answers success without writing the offset.
pub fn fd_seek(
    _: Caller<'_, HostState>,
    _fd: u32,
    _offset: i64,
    _whence: u32,
    _new: u32,
) -> WasiResult {
    Ok(errno::SUCCESS)
}

/// `fd_tell(fd, offset_ptr)`: 0 for stdout and stderr.
pub fn fd_tell(mut caller: Caller<'_, HostState>, fd: u32, ptr: u32) -> WasiResult {
    if !is_std_stream(fd) {
        return Ok(errno::BADF);
    }
    match write_u64(&mut caller, "offset", ptr, 0) {
        Ok(()) => Ok(errno::SUCCESS),
        Err(_) => Ok(errno::FAULT),
    }
}

/// `fd_close`: Envoy answers success.
pub fn fd_close(_: Caller<'_, HostState>, _fd: u32) -> WasiResult {
    Ok(errno::SUCCESS)
}

/// `fd_fdstat_get(fd, stat_ptr)`: stdout and stderr are write-only character streams
/// (Envoy writes rights_base = FD_WRITE and ignores a bad pointer).
pub fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: u32, stat: u32) -> WasiResult {
    if !is_std_stream(fd) {
        return Ok(errno::BADF);
    }
    let mut bytes = [0u8; 24];
    if let Some(rights) = bytes.get_mut(8..16) {
        rights.copy_from_slice(&64u64.to_le_bytes());
    }
    let _ignored = write(&mut caller, "fdstat", stat, &bytes);
    Ok(errno::SUCCESS)
}

/// `fd_fdstat_set_flags`: not supported.
pub fn fd_fdstat_set_flags(_: Caller<'_, HostState>, _fd: u32, _flags: u32) -> WasiResult {
    Ok(errno::NOSYS)
}

/// `fd_fdstat_set_rights`: accepted on stdout and stderr.
pub fn fd_fdstat_set_rights(
    _: Caller<'_, HostState>,
    fd: u32,
    _base: u64,
    _inh: u64,
) -> WasiResult {
    Ok(accepted_on_std_streams(fd))
}

/// `fd_prestat_get`: there are no preopened directories.
pub fn fd_prestat_get(_: Caller<'_, HostState>, _fd: u32, _buf: u32) -> WasiResult {
    Ok(errno::BADF)
}

/// `fd_prestat_dir_name`: not supported.
pub fn fd_prestat_dir_name(
    _: Caller<'_, HostState>,
    _fd: u32,
    _path: u32,
    _len: u32,
) -> WasiResult {
    Ok(errno::NOSYS)
}

/// `fd_filestat_get`: no files.
pub fn fd_filestat_get(_: Caller<'_, HostState>, _fd: u32, _buf: u32) -> WasiResult {
    Ok(errno::BADF)
}

/// `fd_filestat_set_size`: accepted on stdout and stderr.
pub fn fd_filestat_set_size(_: Caller<'_, HostState>, fd: u32, _size: u64) -> WasiResult {
    Ok(accepted_on_std_streams(fd))
}

/// `fd_filestat_set_times`: accepted on stdout and stderr.
pub fn fd_filestat_set_times(
    _: Caller<'_, HostState>,
    fd: u32,
    _a: u64,
    _m: u64,
    _f: u32,
) -> WasiResult {
    Ok(accepted_on_std_streams(fd))
}

/// `fd_advise`: a hint, always accepted.
pub fn fd_advise(
    _: Caller<'_, HostState>,
    _fd: u32,
    _offset: u64,
    _len: u64,
    _advice: u32,
) -> WasiResult {
    Ok(errno::SUCCESS)
}

/// `fd_allocate`: accepted on stdout and stderr.
pub fn fd_allocate(_: Caller<'_, HostState>, fd: u32, _offset: u64, _len: u64) -> WasiResult {
    Ok(accepted_on_std_streams(fd))
}

/// `fd_sync` and `fd_datasync`: accepted on stdout and stderr.
pub fn fd_sync(_: Caller<'_, HostState>, fd: u32) -> WasiResult {
    Ok(accepted_on_std_streams(fd))
}

/// `fd_readdir`: nothing is a directory.
pub fn fd_readdir(
    mut caller: Caller<'_, HostState>,
    _fd: u32,
    _buf: u32,
    _len: u32,
    _cookie: u64,
    nread: u32,
) -> WasiResult {
    if write_u32(&mut caller, "nread", nread, 0).is_err() {
        return Ok(errno::FAULT);
    }
    Ok(NOTDIR)
}

/// `fd_renumber`: stdout and stderr cannot be renumbered.
pub fn fd_renumber(_: Caller<'_, HostState>, fd: u32, to: u32) -> WasiResult {
    Ok(if is_std_stream(fd) && is_std_stream(to) {
        errno::NOTSUP
    } else {
        errno::BADF
    })
}

/// `environ_get(environ_ptr, buf_ptr)`: `KEY=VALUE\0` strings and their pointers.
pub fn environ_get(mut caller: Caller<'_, HostState>, mut array: u32, mut buf: u32) -> WasiResult {
    let env = caller.data().config.env.clone();
    for (key, value) in env {
        let mut entry = format!("{key}={value}").into_bytes();
        entry.push(0);
        if write_u32(&mut caller, "environ pointer", array, buf).is_err()
            || write(&mut caller, "environ string", buf, &entry).is_err()
        {
            return Ok(errno::FAULT);
        }
        let len = u32::try_from(entry.len()).unwrap_or(u32::MAX);
        buf = buf.wrapping_add(len);
        array = array.wrapping_add(4);
    }
    Ok(errno::SUCCESS)
}

/// `environ_sizes_get(count_ptr, size_ptr)`.
pub fn environ_sizes_get(mut caller: Caller<'_, HostState>, count: u32, size: u32) -> WasiResult {
    let env = &caller.data().config.env;
    let n = u32::try_from(env.len()).unwrap_or(u32::MAX);
    let bytes: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    if write_u32(&mut caller, "environ count", count, n).is_err()
        || write_u32(&mut caller, "environ size", size, bytes).is_err()
    {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `args_get`: there are no arguments.
pub fn args_get(_: Caller<'_, HostState>, _argv: u32, _buf: u32) -> WasiResult {
    Ok(errno::SUCCESS)
}

/// `args_sizes_get(argc_ptr, size_ptr)`: 0 and 0.
pub fn args_sizes_get(mut caller: Caller<'_, HostState>, argc: u32, size: u32) -> WasiResult {
    if write_u32(&mut caller, "argc", argc, 0).is_err()
        || write_u32(&mut caller, "argv size", size, 0).is_err()
    {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

/// `clock_time_get(clock_id, precision, time_ptr)`: realtime and monotonic, virtual.
pub fn clock_time_get(
    mut caller: Caller<'_, HostState>,
    clock: u32,
    _precision: u64,
    time: u32,
) -> WasiResult {
    caller
        .data_mut()
        .count_call("clock_time_get", 0, 0, |_| clock.to_string());
    let state = caller.data();
    let now = match clock {
        0 => state.now_ns,
        1 => state.now_ns.saturating_sub(state.start_ns),
        _ => return Ok(errno::NOTSUP),
    };
    match write_u64(&mut caller, "time", time, now) {
        Ok(()) => Ok(errno::SUCCESS),
        Err(_) => Ok(errno::FAULT),
    }
}

/// `clock_res_get(clock_id, resolution_ptr)`: 1 ns for realtime and monotonic.
pub fn clock_res_get(mut caller: Caller<'_, HostState>, clock: u32, res: u32) -> WasiResult {
    if clock > 1 {
        return Ok(errno::NOTSUP);
    }
    match write_u64(&mut caller, "resolution", res, 1) {
        Ok(()) => Ok(errno::SUCCESS),
        Err(_) => Ok(errno::FAULT),
    }
}

/// `random_get(buf, len)`: from the seeded generator.
pub fn random_get(mut caller: Caller<'_, HostState>, buf: u32, len: u32) -> WasiResult {
    let memory_size = caller
        .data()
        .memory
        .map(|m| m.data_size(&caller))
        .unwrap_or(0);
    if u64::from(buf) + u64::from(len) > memory_size as u64 {
        return Ok(errno::FAULT);
    }
    let mut bytes = vec![0u8; len as usize];
    let state = caller.data_mut();
    state.count_call("random_get", 0, 0, |_| String::new());
    state.rng.fill(&mut bytes);
    match write(&mut caller, "random buffer", buf, &bytes) {
        Ok(()) => Ok(errno::SUCCESS),
        Err(_) => Ok(errno::FAULT),
    }
}

/// `sched_yield`: there is nothing else to run.
pub fn sched_yield(_: Caller<'_, HostState>) -> WasiResult {
    Ok(errno::SUCCESS)
}

/// `poll_oneoff(in, out, nsubscriptions, nevents_ptr)`: no events, success (Go needs it).
pub fn poll_oneoff(
    mut caller: Caller<'_, HostState>,
    _in: u32,
    _out: u32,
    _n: u32,
    nevents: u32,
) -> WasiResult {
    match write_u32(&mut caller, "nevents", nevents, 0) {
        Ok(()) => Ok(errno::SUCCESS),
        Err(_) => Ok(errno::FAULT),
    }
}

/// `proc_exit(code)`: traps with the exit code.
pub fn proc_exit(mut caller: Caller<'_, HostState>, code: u32) -> wasmtime::Result<()> {
    let message = format!("the module called proc_exit({code})");
    caller.data_mut().host_trap = Some(message.clone());
    Err(wasmtime::Error::msg(message))
}

/// `path_open`: no files exist.
#[expect(clippy::too_many_arguments, reason = "the WASI signature")]
pub fn path_open(
    _: Caller<'_, HostState>,
    _fd: u32,
    _dirflags: u32,
    _path: u32,
    _len: u32,
    _oflags: u32,
    _base: i64,
    _inheriting: i64,
    _fdflags: u32,
    _opened: u32,
) -> WasiResult {
    Ok(NOENT)
}

/// `path_filestat_get`: not supported.
pub fn path_filestat_get(
    _: Caller<'_, HostState>,
    _fd: u32,
    _flags: u32,
    _path: u32,
    _len: u32,
    _buf: u32,
) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `path_create_directory`, `path_remove_directory`, `path_unlink_file`: not supported.
pub fn path_fd_only(_: Caller<'_, HostState>, _fd: u32, _path: u32, _len: u32) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `path_rename`: not supported.
pub fn path_rename(
    _: Caller<'_, HostState>,
    _fd: u32,
    _p: u32,
    _l: u32,
    _nfd: u32,
    _np: u32,
    _nl: u32,
) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `path_link`: not supported.
#[expect(clippy::too_many_arguments, reason = "the WASI signature")]
pub fn path_link(
    _: Caller<'_, HostState>,
    _fd: u32,
    _f: u32,
    _p: u32,
    _l: u32,
    _nfd: u32,
    _np: u32,
    _nl: u32,
) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `path_symlink`: not supported.
pub fn path_symlink(
    _: Caller<'_, HostState>,
    _p: u32,
    _l: u32,
    _fd: u32,
    _np: u32,
    _nl: u32,
) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `path_readlink`: writes 0 bytes read, then not supported.
pub fn path_readlink(
    mut caller: Caller<'_, HostState>,
    _fd: u32,
    _p: u32,
    _l: u32,
    _buf: u32,
    _len: u32,
    nread: u32,
) -> WasiResult {
    if write_u32(&mut caller, "nread", nread, 0).is_err() {
        return Ok(errno::FAULT);
    }
    Ok(errno::NOTSUP)
}

/// `path_filestat_set_times`: not supported.
#[expect(clippy::too_many_arguments, reason = "the WASI signature")]
pub fn path_filestat_set_times(
    _: Caller<'_, HostState>,
    _fd: u32,
    _f: u32,
    _p: u32,
    _l: u32,
    _a: u64,
    _m: u64,
    _fl: u32,
) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `sock_accept`: not supported.
pub fn sock_accept(_: Caller<'_, HostState>, _fd: u32, _flags: u32, _out: u32) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `sock_recv`: not supported.
pub fn sock_recv(
    _: Caller<'_, HostState>,
    _fd: u32,
    _d: u32,
    _l: u32,
    _f: u32,
    _n: u32,
    _of: u32,
) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `sock_send`: not supported.
pub fn sock_send(
    _: Caller<'_, HostState>,
    _fd: u32,
    _d: u32,
    _l: u32,
    _f: u32,
    _n: u32,
) -> WasiResult {
    Ok(errno::NOTSUP)
}

/// `sock_shutdown`: not supported.
pub fn sock_shutdown(_: Caller<'_, HostState>, _fd: u32, _how: u32) -> WasiResult {
    Ok(errno::NOTSUP)
}
