//! Memory checks made before allocating what user-given sizes imply (a dimension, a trajectory
//! length), so an impossible size is a typed error naming the bytes, not an allocator abort.

use crate::error::{KernelError, Result};

/// Bytes of memory the system can give a new allocation now: the smaller of `MemAvailable`
/// (/proc/meminfo) and what the process's address-space limit (RLIMIT_AS, `ulimit -v`) leaves
/// above its current virtual size; `None` where neither is known (non-Linux).
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok();
    let mem = info.as_deref().and_then(|i| field_kib(i, "MemAvailable:")).map(|k| k.saturating_mul(1024));
    match (mem, address_space_left()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `kB` value of the line starting with `key` in a /proc file.
fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// RLIMIT_AS's soft limit minus the process's virtual size (VmSize), where a limit is set.
fn address_space_left() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let soft: u64 = line["Max address space".len()..].split_whitespace().next()?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let size = field_kib(&status, "VmSize:")?.saturating_mul(1024);
    Some(soft.saturating_sub(size))
}

thread_local! {
    /// Bytes granted by [`check_fits`] inside the current [`ledger`] (`None` outside one).
    static LEDGER: std::cell::Cell<Option<u128>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with its [`check_fits`] calls counted together: each must fit beside the bytes the
/// earlier ones were granted (a run's buffers, allocated one after another and touched later,
/// must fit all at once; `MemAvailable` does not drop until they are touched).
pub fn ledger<R>(f: impl FnOnce() -> R) -> R {
    let outer = LEDGER.with(|l| l.replace(Some(0)));
    let r = f();
    LEDGER.with(|l| l.set(outer));
    r
}

/// The bytes of `count` f64 values, where `count` is a product of sizes (saturating: a product
/// that overflows is reported as too large, never wrapped).
pub fn f64_bytes(sizes: &[usize]) -> u128 {
    sizes.iter().fold(8u128, |acc, &n| acc.saturating_mul(n as u128))
}

/// `Ok` if `needed` bytes fit in the memory available now (or if that is unknown and `needed`
/// fits in the address space), else [`KernelError::TooLarge`] naming `what`.
///
/// Inside a [`ledger`], the bytes granted before count against what is available (the
/// message says how many).
pub fn check_fits(what: impl FnOnce() -> String, needed: u128) -> Result<()> {
    let available = available_bytes().unwrap_or(isize::MAX as u64);
    let claimed = LEDGER.with(|l| l.get());
    let before = claimed.unwrap_or(0);
    if needed.saturating_add(before) <= available as u128 {
        LEDGER.with(|l| l.set(claimed.map(|c| c + needed)));
        Ok(())
    } else if before > 0 {
        let what = format!("{}, beside the {} this run already holds,", what(), format_bytes(before));
        Err(KernelError::TooLarge { what, needed, available })
    } else {
        Err(KernelError::TooLarge { what: what(), needed, available })
    }
}

/// `12.3 GiB`-style, for messages.
pub fn format_bytes(bytes: u128) -> String {
    if bytes == u128::MAX {
        return "more bytes than a u128 counts".into();
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {} ({bytes} bytes)", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_refused_with_the_figure() {
        assert!(check_fits(|| "small".into(), f64_bytes(&[10, 10])).is_ok());
        let err = check_fits(|| "trajectory of 10^11 steps".into(), f64_bytes(&[100_000_000_000, 1000])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("trajectory of 10^11 steps") && msg.contains("TiB"), "{msg}");
        // A product that overflows usize saturates instead of wrapping to a small number.
        assert_eq!(f64_bytes(&[usize::MAX, usize::MAX, 4]), u128::MAX);
        assert!(check_fits(|| "overflow".into(), f64_bytes(&[usize::MAX, usize::MAX, 4])).is_err());
    }

    #[test]
    fn a_ledger_counts_its_buffers_together() {
        let available = available_bytes().expect("Linux") as u128;
        let two_thirds = available / 3 * 2;
        // Each fits alone, outside a ledger.
        assert!(check_fits(|| "a".into(), two_thirds).is_ok());
        assert!(check_fits(|| "b".into(), two_thirds).is_ok());
        // Together they do not.
        let err = ledger(|| {
            check_fits(|| "first".into(), two_thirds).unwrap();
            check_fits(|| "second".into(), two_thirds).unwrap_err()
        });
        assert!(err.to_string().contains("second, beside the"), "{err}");
        // The ledger ends with its scope.
        assert!(check_fits(|| "c".into(), two_thirds).is_ok());
    }

    #[test]
    fn the_address_space_limit_bounds_what_is_available() {
        // Parsing: the field reader reads kB values.
        assert_eq!(field_kib("VmSize:\t  1234 kB\nVmRSS: 5 kB", "VmSize:"), Some(1234));
        // Where a limit is set (as under `ulimit -v`), available_bytes is at most the limit.
        if let Some(left) = address_space_left() {
            assert!(available_bytes().unwrap() <= left);
        }
    }
}
