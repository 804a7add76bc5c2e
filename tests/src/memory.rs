//! Reading and writing the guest's linear memory from inside a host call.

use wasmtime::{Caller, Extern, Memory, Result, bail, format_err};

use crate::state::VmState;

pub(crate) type Ctx<'a> = Caller<'a, VmState>;

fn memory(caller: &mut Ctx<'_>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => bail!("the module exports no `memory`"),
    }
}

fn address(raw: i32) -> usize {
    raw as u32 as usize
}

/// Copies `len` bytes at guest address `ptr`.
pub(crate) fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let memory = memory(caller)?;
    let start = address(ptr);
    let end = start.checked_add(address(len));
    end.and_then(|end| memory.data(&caller).get(start..end))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format_err!("guest range {start:#x}+{} is outside memory", address(len)))
}

/// The little-endian `i32` at guest address `ptr`.
pub(crate) fn read_i32(caller: &mut Ctx<'_>, ptr: i32) -> Result<i32> {
    let bytes = <[u8; 4]>::try_from(read(caller, ptr, 4)?).map_err(|_| {
        format_err!(
            "reading 4 bytes at {:#x} returned another length",
            address(ptr)
        )
    })?;
    Ok(i32::from_le_bytes(bytes))
}

pub(crate) fn read_string(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

pub(crate) fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    memory
        .write(&mut *caller, address(ptr), bytes)
        .map_err(|_| format_err!("guest write at {:#x} is outside memory", address(ptr)))
}

pub(crate) fn write_u32(caller: &mut Ctx<'_>, ptr: i32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Ctx<'_>, ptr: i32, value: u64) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Asks the guest allocator (`proxy_on_memory_allocate`, else `malloc`) for `len` bytes.
pub(crate) fn allocate(caller: &mut Ctx<'_>, len: usize) -> Result<i32> {
    let size = i32::try_from(len).map_err(|_| format_err!("{len} bytes do not fit wasm32"))?;
    let func = ["proxy_on_memory_allocate", "malloc"]
        .iter()
        .find_map(|name| caller.get_export(name).and_then(Extern::into_func))
        .ok_or_else(|| {
            format_err!("the module exports neither proxy_on_memory_allocate nor malloc")
        })?;
    let func = func.typed::<i32, i32>(&*caller)?;
    let ptr = func.call(&mut *caller, size)?;
    if ptr == 0 {
        bail!("guest allocator returned null for {len} bytes");
    }
    Ok(ptr)
}

/// Hands `bytes` to the guest the way every `proxy_get_*` call does: copied into memory the
/// guest allocated, with its address and length stored at `ptr_out` and `len_out`. Empty data
/// is reported as a null pointer and length 0.
pub(crate) fn return_bytes(
    caller: &mut Ctx<'_>,
    bytes: &[u8],
    ptr_out: i32,
    len_out: i32,
) -> Result<()> {
    let ptr = if bytes.is_empty() {
        0
    } else {
        let ptr = allocate(caller, bytes.len())?;
        write(caller, ptr, bytes)?;
        ptr
    };
    write_u32(caller, ptr_out, ptr as u32)?;
    write_u32(
        caller,
        len_out,
        u32::try_from(bytes.len()).unwrap_or(u32::MAX),
    )
}
