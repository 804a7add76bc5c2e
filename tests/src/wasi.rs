//! The small part of WASI preview1 a proxy-wasm filter built for `wasm32-wasip1` imports:
//! output goes to captured stdout/stderr, clocks read the host's controllable clock, no
//! arguments, no environment, deterministic random bytes.

use std::time::UNIX_EPOCH;

use wasmtime::{Linker, Result, bail};

use crate::memory::{Ctx, read, read_i32, write, write_u32, write_u64};
use crate::state::VmState;

const MODULE: &str = "wasi_snapshot_preview1";
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;

pub(crate) fn add_to_linker(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(MODULE, "fd_write", fd_write)?;
    linker.func_wrap(MODULE, "clock_time_get", clock_time_get)?;
    linker.func_wrap(MODULE, "clock_res_get", clock_res_get)?;
    linker.func_wrap(MODULE, "random_get", random_get)?;
    linker.func_wrap(MODULE, "environ_sizes_get", sizes_get_empty)?;
    linker.func_wrap(MODULE, "args_sizes_get", sizes_get_empty)?;
    linker.func_wrap(MODULE, "environ_get", |_: Ctx<'_>, _: i32, _: i32| {
        Ok(ERRNO_SUCCESS)
    })?;
    linker.func_wrap(MODULE, "args_get", |_: Ctx<'_>, _: i32, _: i32| {
        Ok(ERRNO_SUCCESS)
    })?;
    linker.func_wrap(MODULE, "sched_yield", |_: Ctx<'_>| Ok(ERRNO_SUCCESS))?;
    linker.func_wrap(MODULE, "proc_exit", |_: Ctx<'_>, code: i32| -> Result<()> {
        bail!("the filter called WASI proc_exit({code})")
    })?;
    Ok(())
}

/// Writes iovecs to fd 1 (stdout) or 2 (stderr); both are captured per VM.
fn fd_write(mut c: Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> Result<i32> {
    let mut data = Vec::new();
    for index in 0..iovs_len.max(0) {
        let iov = iovs.wrapping_add(index.wrapping_mul(8));
        let ptr = read_i32(&mut c, iov)?;
        let len = read_i32(&mut c, iov.wrapping_add(4))?;
        data.extend(read(&mut c, ptr, len)?);
    }
    let state = c.data_mut();
    match fd {
        1 => state.stdout.extend_from_slice(&data),
        2 => {
            if std::env::var_os("PROXY_WASM_HOST_QUIET").is_none() {
                eprint!(
                    "[vm{} stderr] {}",
                    state.vm_index,
                    String::from_utf8_lossy(&data)
                );
            }
            state.stderr.extend_from_slice(&data)
        }
        _ => return Ok(ERRNO_BADF),
    }
    write_u32(
        &mut c,
        nwritten,
        u32::try_from(data.len()).unwrap_or(u32::MAX),
    )?;
    Ok(ERRNO_SUCCESS)
}

/// Every clock (realtime, monotonic, CPU) reads the shared, test-controlled clock.
fn clock_time_get(mut c: Ctx<'_>, clock: i32, _precision: i64, ret: i32) -> Result<i32> {
    if !(0..=3).contains(&clock) {
        return Ok(ERRNO_INVAL);
    }
    let now = c.data().shared.now();
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    write_u64(&mut c, ret, u64::try_from(nanos).unwrap_or(u64::MAX))?;
    Ok(ERRNO_SUCCESS)
}

fn clock_res_get(mut c: Ctx<'_>, clock: i32, ret: i32) -> Result<i32> {
    if !(0..=3).contains(&clock) {
        return Ok(ERRNO_INVAL);
    }
    write_u64(&mut c, ret, 1)?;
    Ok(ERRNO_SUCCESS)
}

fn random_get(mut c: Ctx<'_>, buf: i32, len: i32) -> Result<i32> {
    let mut bytes = vec![0; len as u32 as usize];
    c.data_mut().fill_random(&mut bytes);
    write(&mut c, buf, &bytes)?;
    Ok(ERRNO_SUCCESS)
}

fn sizes_get_empty(mut c: Ctx<'_>, count: i32, size: i32) -> Result<i32> {
    write_u32(&mut c, count, 0)?;
    write_u32(&mut c, size, 0)?;
    Ok(ERRNO_SUCCESS)
}
