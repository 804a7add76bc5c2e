//! What every fuzz target shares: an allocator that turns one oversized allocation into a crash.
//!
//! libFuzzer's own `-malloc_limit_mb` works only under a sanitizer runtime, and these targets run
//! without one (the filter is memory-safe Rust; what we look for is panics, runaway recursion and
//! inputs that make the filter allocate without bound). A single allocation larger than
//! [`ONE_ALLOCATION_LIMIT`] from an input of at most `-max_len` bytes means a size came from the
//! input unchecked: the process aborts, and libFuzzer saves the input as a crash.

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation a target may make (inputs are at most 64 KiB).
pub const ONE_ALLOCATION_LIMIT: usize = 8 * 1024 * 1024;

pub struct LimitedAllocator;

fn check(size: usize) {
    if size > ONE_ALLOCATION_LIMIT {
        // No formatting: the allocator must not allocate while it reports.
        let message = b"fuzz: one allocation exceeded ONE_ALLOCATION_LIMIT\n";
        // SAFETY: writing a static buffer to the standard error descriptor.
        unsafe {
            libc_write(2, message.as_ptr(), message.len());
        }
        std::process::abort();
    }
}

unsafe extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

// SAFETY: every call is forwarded to the system allocator unchanged; only the size is checked.
unsafe impl GlobalAlloc for LimitedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}
