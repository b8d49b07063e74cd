//! Memory checks made before allocating what user-given sizes imply (a dimension, a trajectory
//! length), so an impossible size is a typed error naming the bytes, not an allocator abort.

use crate::error::{KernelError, Result};

/// Bytes of memory the system can give a new allocation now (`MemAvailable` of
/// /proc/meminfo), or `None` where it is not known (non-Linux).
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The bytes of `count` f64 values, where `count` is a product of sizes (saturating: a product
/// that overflows is reported as too large, never wrapped).
pub fn f64_bytes(sizes: &[usize]) -> u128 {
    sizes.iter().fold(8u128, |acc, &n| acc.saturating_mul(n as u128))
}

/// `Ok` if `needed` bytes fit in the memory available now (or if that is unknown and `needed`
/// fits in the address space), else [`KernelError::TooLarge`] naming `what`.
pub fn check_fits(what: impl FnOnce() -> String, needed: u128) -> Result<()> {
    let available = available_bytes().unwrap_or(isize::MAX as u64);
    if needed <= available as u128 {
        Ok(())
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
}
