//! Keeping freed tensor memory in the process for the next batch.
//!
//! A training step allocates and frees several `[tokens, vocab]` tensors (logits,
//! log-probabilities, their gradients), each tens of megabytes. glibc serves blocks that
//! large with `mmap` and returns them with `munmap` on free, so every step pays for page
//! faults and for the kernel zeroing fresh pages: about a fifth of the training time of a
//! 2×256 LSTM on Brown on a 2-core CPU. Telling glibc never to `mmap` and never to trim
//! the heap lets the next batch reuse the same memory. The price is that the process keeps
//! its peak memory, and the fragments of batches of every shape, until it exits: right for
//! training, whose memory is its largest batch's autograd graph anyway, but not for
//! streaming scoring, which keeps glibc's defaults and bounds its blocks instead.

/// Makes glibc's malloc keep freed memory for reuse instead of returning it to the
/// kernel. Call once, early, before the first tensors; elsewhere than Linux with glibc it
/// does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
