//! Torch's random generator is one per process, and the tests of a binary run on
//! parallel threads: a test that seeds it (`tch::manual_seed`, or `train`, which seeds
//! it per run and per epoch) and then draws from it (initialization, dropout) must not
//! have another test's draws interleaved, or its seeded thresholds are not
//! reproducible. Every test of such a binary holds this lock while it runs.

use std::sync::{Mutex, MutexGuard};

/// The lock on torch's generator, held until the guard drops.
pub fn torch_rng() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding it leaves nothing to repair.
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
