//! The process's heap under glibc.
//!
//! glibc gives threads that allocate arenas of their own (up to 8 per core), each keeping
//! what was freed in it; the daemon's threads (two workers, the queue's writer, sled's
//! I/O threads) would hold eight. Two arenas: 0.6–0.8 MB less resident at 200 devices,
//! the same CPU (BENCHMARKS.md, issue 20).

/// Two arenas instead of up to eight per core. Call before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn limit_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; called before the runtime's and
    // sled's threads exist, as glibc asks. A refusal (0) leaves the default.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}
