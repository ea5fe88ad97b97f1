//! Memory by part for `status` frames and `/metrics`: what each growing structure of the
//! pipeline holds (`docs/memory.md` states each one's bound), the process's resident
//! memory as the kernel counts it, and the bytes the allocator has handed out (resident
//! growing while those stay flat is fragmentation, not a structure growing).

/// Resident memory of this process in bytes (`VmRSS` of `/proc/self/status`); `None` where
/// the file is absent (not Linux) or unreadable.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// Bytes allocated and not yet freed, as glibc's allocator counts them (`mallinfo2`:
/// in-use bytes of its arenas plus its mmapped blocks); `None` with another C library.
pub fn heap_in_use_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's `struct mallinfo2`.
        #[repr(C)]
        struct MallInfo2 {
            arena: usize,
            ordblks: usize,
            smblks: usize,
            hblks: usize,
            hblkhd: usize,
            usmblks: usize,
            fsmblks: usize,
            uordblks: usize,
            fordblks: usize,
            keepcost: usize,
        }
        extern "C" {
            fn mallinfo2() -> MallInfo2;
        }
        // SAFETY: mallinfo2 (glibc >= 2.33) takes no arguments and returns the struct by value.
        let m = unsafe { mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// The `VmRSS:  123456 kB` line of a `/proc/PID/status` text, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_in_bytes() {
        let status = "Name:\tneuralign\nVmPeak:\t  900 kB\nVmRSS:\t  463812 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(463_812 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn resident_memory_grows_when_pages_are_touched() {
        let before = resident_bytes().expect("Linux has /proc/self/status");
        let block = vec![1u8; 64 << 20];
        let after = resident_bytes().unwrap();
        assert!(after >= before + (48 << 20), "{before} -> {after}");
        drop(block);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn heap_in_use_counts_a_live_allocation() {
        let before = heap_in_use_bytes().unwrap();
        // Large (mmapped, zero pages untouched) and with a wide margin: tests beside this
        // one allocate and free at the same time.
        let block = vec![0u8; 256 << 20];
        let during = heap_in_use_bytes().unwrap();
        drop(block);
        assert!(during >= before + (128 << 20), "{before} -> {during}");
    }
}
