//! The process collector: CPU, memory, open files and start time of this process, read from
//! `/proc` (Linux).

/// This process's CPU, memory, fds and start time, from `/proc` (Linux). Hand-read: the
/// process collectors of the Rust Prometheus crates belong to the other client library.
/// Memory comes from `/proc/self/status`, which states it in kB whatever the kernel's page
/// size (4K, 16K or 64K on arm64), not from page counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    /// The soft limit on open files; `None` when unlimited.
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads the figures; `None` where `/proc` is not available.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may contain spaces: parse after its closing paren.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state); utime is field 14, stime 15, starttime 22.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let ticks = 100.0; // USER_HZ is 100 on every Linux ABI Rust targets.
        let cpu_seconds = (field(14)? + field(15)?) / ticks;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })?;
        let start_time_seconds = boot + field(22)? / ticks;
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| max_open_files(&limits));
        Some(Self {
            cpu_seconds,
            rss_bytes: status_kb(&status, "VmRSS")? * 1024,
            virtual_memory_bytes: status_kb(&status, "VmSize")? * 1024,
            open_fds,
            max_fds,
            start_time_seconds,
        })
    }
}

/// A `Name:   1234 kB` line of `/proc/self/status`, in kB.
fn status_kb(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`; `None` if unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_are_plausible() {
        let p = ProcessStats::read().expect("linux /proc");
        assert!(p.rss_bytes > 1_000_000, "{p:?}");
        assert!(p.open_fds >= 3, "{p:?}");
        assert!(p.virtual_memory_bytes > p.rss_bytes, "{p:?}");
        // Within a factor of two of the page count times a 4K page (this machine's size).
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        let by_pages = pages * 4096;
        assert!(
            p.rss_bytes > by_pages / 2 && p.rss_bytes < by_pages * 2,
            "{p:?} vs {by_pages}"
        );
        assert!(p.max_fds.is_none_or(|max| max >= p.open_fds), "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86400.0 * 365.0,
            "{p:?}"
        );
    }

    #[test]
    fn memory_is_read_in_kilobytes_whatever_the_page_size() {
        // From a 64K-page arm64 kernel: the page-count fields would be 16x too small with a
        // fixed 4096-byte page.
        let status = "Name:\tbot-server\nVmPeak:\t  1310720 kB\nVmSize:\t  1245184 kB\n\
                      VmRSS:\t    52480 kB\nRssAnon:\t   40960 kB\n";
        assert_eq!(status_kb(status, "VmRSS"), Some(52_480));
        assert_eq!(status_kb(status, "VmSize"), Some(1_245_184));
        assert_eq!(status_kb(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             127563               127563               processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }
}
