//! How much memory this process may still take: the least of what the system has
//! free, what the address-space limit (`ulimit -v`) leaves, and what the process's
//! cgroup (a container's memory limit) leaves.

use std::path::Path;

/// Bytes this process may still allocate, as far as Linux tells; `None` where
/// nothing can be read.
pub fn available() -> Option<u128> {
    [system_available(), address_space_left(), cgroup_left()]
        .into_iter()
        .flatten()
        .min()
}

/// `MemAvailable` from `/proc/meminfo`.
fn system_available() -> Option<u128> {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

/// `RLIMIT_AS` less the address space the process already maps (`VmSize`).
fn address_space_left() -> Option<u128> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    let mapped = kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmSize:",
    )?;
    Some(u128::from(limit.rlim_cur).saturating_sub(mapped))
}

/// cgroup v2's `memory.max` less `memory.current`, for the process's own cgroup.
fn cgroup_left() -> Option<u128> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let relative = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(relative.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let max: u128 = read("memory.max")?.trim().parse().ok()?;
    let current: u128 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// A `Name:   1234 kB` field of a `/proc` file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u128> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::kib_field;

    #[test]
    fn a_proc_field_is_read_in_bytes() {
        let text = "MemTotal:       24000000 kB\nMemAvailable:   1000 kB\n";
        assert_eq!(kib_field(text, "MemAvailable:"), Some(1_024_000));
        assert_eq!(kib_field(text, "VmSize:"), None);
    }
}
