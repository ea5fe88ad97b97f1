//! Memory by part for `status` frames and `/metrics`: what each growing structure of the
//! pipeline holds (`docs/memory.md` states each one's bound), and the process's resident
//! memory as the kernel counts it.

/// Resident memory of this process in bytes (`VmRSS` of `/proc/self/status`); `None` where
/// the file is absent (not Linux) or unreadable.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
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
}
