//! A counting global allocator, so a block's memory cap limits *live* memory, not just single allocations.
//!
//! The interpreter measures memory through the process-wide count of live heap bytes
//! (`monty_types::LIVE_MEMORY`) minus a baseline. Nothing counts unless the executable installs a counting global
//! allocator, and a library must not choose the global allocator, so binaries opt in:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: codepilot_script::CountingAllocator = codepilot_script::CountingAllocator;
//! ```
//!
//! Unlike `monty-alloc` (built for one-session worker processes), this allocator never ends the process: a block
//! over its cap gets a `MemoryError`, raised before a large allocation is made (the interpreter sizes those up
//! front) or at its next checkpoint, and the host carries on. The baseline is reset when each block starts, so
//! the cap bounds what a block adds; allocations of other threads of the process during the block count against
//! it too, so a process running many blocks at once shares one budget.

use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::alloc::System;
use std::sync::atomic::Ordering;

use monty_types::BASELINE_MEMORY;
use monty_types::LIVE_MEMORY;

/// The system allocator, counting live bytes for the interpreter's memory cap. See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

// SAFETY: every method forwards its arguments unchanged to `System` and returns what `System` returned; the only
// addition is a relaxed atomic counter, which allocates nothing and cannot fail.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, forwarded unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_MEMORY.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, forwarded unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_MEMORY.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_MEMORY.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` describe a live block of this allocator; `new_size` is the caller's.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            LIVE_MEMORY.fetch_add(new_size, Ordering::Relaxed);
            LIVE_MEMORY.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new_ptr
    }
}

/// Whether a counting allocator is installed (something has been counted).
#[must_use]
pub fn counting() -> bool {
    LIVE_MEMORY.load(Ordering::Relaxed) != 0
}

/// Starts a block's memory budget from the live bytes of now. Without a counting allocator the baseline stays
/// unset and only single allocations are capped.
pub(crate) fn start_budget() {
    if counting() {
        BASELINE_MEMORY.store(LIVE_MEMORY.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}
