//! The set of CPU cores that workers and the control thread may be pinned to.

use std::fmt;

/// A set of CPU core numbers, such as the cores online on this machine.
///
/// Validation takes one of these so that tests can pretend to run on any
/// machine; [`CoreSet::online`] reads the real one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoreSet {
    /// Sorted, without duplicates.
    cores: Vec<usize>,
}

impl CoreSet {
    /// The cores online on this machine: `/sys/devices/system/cpu/online`
    /// (which may be sparse, like `0-3,8-11`), or `0..available_parallelism`
    /// where that file cannot be read.
    pub fn online() -> CoreSet {
        std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| CoreSet::parse_list(&s))
            .filter(|set| !set.is_empty())
            .unwrap_or_else(|| {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                CoreSet::from_cores(0..n)
            })
    }

    /// Parses the kernel's CPU list format: `0-3,5,7-8` (whitespace around the
    /// whole list is ignored). `None` if it is malformed or a range is reversed.
    pub fn parse_list(list: &str) -> Option<CoreSet> {
        let list = list.trim();
        let mut cores = Vec::new();
        if list.is_empty() {
            return Some(CoreSet::default());
        }
        for part in list.split(',') {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: usize = a.trim().parse().ok()?;
                    let b: usize = b.trim().parse().ok()?;
                    if a > b {
                        return None;
                    }
                    cores.extend(a..=b);
                }
                None => cores.push(part.parse().ok()?),
            }
        }
        Some(CoreSet::from_cores(cores))
    }

    /// A set of the given cores, in any order, duplicates allowed.
    pub fn from_cores(cores: impl IntoIterator<Item = usize>) -> CoreSet {
        let mut cores: Vec<usize> = cores.into_iter().collect();
        cores.sort_unstable();
        cores.dedup();
        CoreSet { cores }
    }

    /// Whether `core` is in the set.
    pub fn contains(&self, core: usize) -> bool {
        self.cores.binary_search(&core).is_ok()
    }

    /// The number of cores in the set.
    pub fn len(&self) -> usize {
        self.cores.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.cores.is_empty()
    }

    /// The cores, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.cores.iter().copied()
    }
}

/// The kernel's list format, `0-3,5`.
impl fmt::Display for CoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.cores.len() {
            let start = self.cores[i];
            let mut end = start;
            while i + 1 < self.cores.len() && self.cores[i + 1] == end + 1 {
                i += 1;
                end = self.cores[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_kernel_lists() {
        let set = CoreSet::parse_list("0-3,5,7-8\n").unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 5, 7, 8]);
        assert_eq!(set.to_string(), "0-3,5,7-8");
        assert!(set.contains(5) && !set.contains(4) && !set.contains(9));
        assert_eq!(CoreSet::parse_list("0").unwrap().to_string(), "0");
        assert!(CoreSet::parse_list("").unwrap().is_empty());
        assert_eq!(CoreSet::parse_list("3-1"), None);
        assert_eq!(CoreSet::parse_list("a"), None);
        assert_eq!(CoreSet::from_cores([2, 0, 1, 1]).to_string(), "0-2");
    }

    #[test]
    fn online_is_never_empty() {
        let online = CoreSet::online();
        assert!(!online.is_empty());
        assert!(online.len() <= 1 << 16);
    }
}
