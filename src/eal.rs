//! The EAL command line of DPDK 22.11, read without DPDK: its options (so
//! that a bad `eal_args` entry is refused with one sentence, not EAL's
//! 80-line usage text), and the devices it names.
//!
//! The table is EAL's own (`eal_short_options`/`eal_long_options` of
//! `lib/eal/common/eal_common_options.c`, 22.11, checked against the strings
//! of Debian 12's `librte_eal.so.23`). It is written out here rather than
//! asked of DPDK because DPDK has no call that checks arguments without
//! initialising, and because `check` runs without the `dpdk` feature too.
//! Unlike getopt, abbreviated long options are refused: a config names
//! options in full.

/// Whether an EAL option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// A flag: `--no-pci`.
    None,
    /// `--vdev=X` or `--vdev X`; `-a X` or `-aX`.
    Required,
    /// Only as `--syslog=X`; `--syslog` alone is valid.
    Optional,
}

/// EAL 22.11's short options (`"a:b:c:s:d:hl:S:m:n:r:v"`).
const SHORT: &[(char, Value)] = &[
    ('a', Value::Required),
    ('b', Value::Required),
    ('c', Value::Required),
    ('s', Value::Required),
    ('d', Value::Required),
    ('h', Value::None),
    ('l', Value::Required),
    ('S', Value::Required),
    ('m', Value::Required),
    ('n', Value::Required),
    ('r', Value::Required),
    ('v', Value::None),
];

/// EAL 22.11's long options.
const LONG: &[(&str, Value)] = &[
    ("allow", Value::Required),
    ("base-virtaddr", Value::Required),
    ("block", Value::Required),
    ("create-uio-dev", Value::None),
    ("file-prefix", Value::Required),
    ("force-max-simd-bitwidth", Value::Required),
    ("help", Value::None),
    ("huge-dir", Value::Required),
    ("huge-unlink", Value::Optional),
    ("huge-worker-stack", Value::Optional),
    ("in-memory", Value::None),
    ("iova-mode", Value::Required),
    ("lcores", Value::Required),
    ("legacy-mem", Value::None),
    ("log-level", Value::Required),
    ("main-lcore", Value::Required),
    ("match-allocations", Value::None),
    ("mbuf-pool-ops-name", Value::Required),
    ("no-hpet", Value::None),
    ("no-huge", Value::None),
    ("no-pci", Value::None),
    ("no-shconf", Value::None),
    ("no-telemetry", Value::None),
    ("proc-type", Value::Required),
    ("single-file-segments", Value::None),
    ("socket-limit", Value::Required),
    ("socket-mem", Value::Required),
    ("syslog", Value::Optional),
    ("telemetry", Value::None),
    ("trace", Value::Required),
    ("trace-bufsz", Value::Required),
    ("trace-dir", Value::Required),
    ("trace-mode", Value::Required),
    ("vdev", Value::Required),
    ("vfio-intr", Value::Required),
    ("vfio-vf-token", Value::Required),
    ("vmware-tsc-map", Value::None),
];

/// A refused argument: its index in the list and one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadArgument {
    /// The index of the refused entry in the checked list.
    pub index: usize,
    /// What is wrong, as one sentence.
    pub reason: String,
}

/// Check `args` (the config's `eal_args`, without the program name)
/// against EAL 22.11's options: every entry is a known option, or the value
/// of the option before it. The first bad entry is returned.
pub fn check_arguments(args: &[String]) -> Result<(), BadArgument> {
    let bad = |index: usize, reason: String| Err(BadArgument { index, reason });
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            if name.is_empty() {
                return bad(
                    i,
                    format!(
                        "eal_args entry {arg:?} ends EAL's options; shardnet passes no \
                         arguments of its own after it, so leave it out"
                    ),
                );
            }
            let Some((_, value)) = LONG.iter().find(|(n, _)| *n == name) else {
                return bad(i, unknown_long(name));
            };
            match (value, inline) {
                (Value::None, Some(_)) => {
                    return bad(i, format!("EAL option --{name} takes no value"));
                }
                (Value::Required, None) => {
                    if i + 1 >= args.len() {
                        return bad(i, format!("EAL option --{name} needs a value"));
                    }
                    i += 1;
                }
                _ => {}
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (at, c) in short.char_indices() {
                let Some((_, value)) = SHORT.iter().find(|(s, _)| *s == c) else {
                    return bad(
                        i,
                        format!(
                            "unknown EAL option -{c} in eal_args (DPDK 22.11's EAL has \
                             -a -b -c -d -h -l -m -n -r -s -S -v and long options)"
                        ),
                    );
                };
                if *value == Value::Required {
                    if at + c.len_utf8() == short.len() {
                        if i + 1 >= args.len() {
                            return bad(i, format!("EAL option -{c} needs a value"));
                        }
                        i += 1;
                    }
                    break;
                }
            }
        } else {
            return bad(
                i,
                format!(
                    "eal_args entry {arg:?} is not an EAL option (a value goes after its \
                     option, as in \"-a\", \"0000:03:00.0\")"
                ),
            );
        }
        i += 1;
    }
    Ok(())
}

/// The sentence for an unknown long option, naming the known one it most
/// likely meant (same first word) when there is one.
fn unknown_long(name: &str) -> String {
    let first = name.split('-').next().unwrap_or(name);
    let near: Vec<String> = LONG
        .iter()
        .filter(|(n, _)| n.split('-').next() == Some(first))
        .map(|(n, _)| format!("--{n}"))
        .collect();
    if near.is_empty() {
        format!("unknown EAL option --{name} in eal_args (DPDK 22.11's EAL has no such option)")
    } else {
        format!(
            "unknown EAL option --{name} in eal_args (DPDK 22.11's EAL has no such option; \
             did you mean {}?)",
            near.join(" or ")
        )
    }
}

/// The value of every occurrence of the options named by `short`/`long`,
/// in order (`-aX`, `-a X`, `--allow=X`, `--allow X`).
fn values_of<'a>(args: &'a [String], short: &str, long: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let long_eq = format!("{long}=");
        if arg == short || arg == long {
            if let Some(v) = args.get(i + 1) {
                out.push(v.as_str());
            }
            i += 1;
        } else if let Some(v) = arg.strip_prefix(long_eq.as_str()) {
            out.push(v);
        } else if let Some(v) = arg.strip_prefix(short).filter(|_| !arg.starts_with("--")) {
            out.push(v);
        }
        i += 1;
    }
    out
}

/// The PCI addresses that `-a`/`--allow` name, in the full
/// `DOMAIN:BUS:DEVICE.FUNCTION` form sysfs uses (`03:00.0` becomes
/// `0000:03:00.0`), without their device arguments.
pub fn allowed_pci(args: &[String]) -> Vec<String> {
    values_of(args, "-a", "--allow")
        .into_iter()
        .map(|v| {
            let address = v.split(',').next().unwrap_or(v).to_ascii_lowercase();
            if address.matches(':').count() == 1 {
                format!("0000:{address}")
            } else {
                address
            }
        })
        .collect()
}

/// Whether `--no-pci` is among `args`.
pub fn no_pci(args: &[String]) -> bool {
    args.iter().any(|a| a == "--no-pci")
}

/// Whether `--no-huge` is among `args`.
pub fn no_huge(args: &[String]) -> bool {
    args.iter().any(|a| a == "--no-huge")
}

/// The device names of every `--vdev` (`net_af_packet0` of
/// `--vdev=net_af_packet0,iface=eth1`).
pub fn vdev_names(args: &[String]) -> Vec<String> {
    values_of(args, "--vdev", "--vdev")
        .into_iter()
        .map(|v| v.split(',').next().unwrap_or(v).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn known_options_pass() {
        let ok = args(&[
            "--no-pci",
            "-a",
            "0000:03:00.0",
            "-a0000:04:00.0,rxq_pkt_pad_en=1",
            "--allow=05:00.0",
            "--vdev",
            "net_tap0,iface=x",
            "--vdev=net_af_packet0,iface=veth0",
            "--file-prefix=sn",
            "--huge-unlink",
            "--huge-unlink=always",
            "--syslog",
            "-n",
            "4",
            "--in-memory",
        ]);
        assert_eq!(check_arguments(&ok), Ok(()));
    }

    #[test]
    fn unknown_and_malformed_are_one_sentence() {
        let cases: &[(&[&str], usize, &str)] = &[
            (
                &["--no-pci", "--bogus"],
                1,
                "unknown EAL option --bogus in eal_args (DPDK 22.11's EAL has no such option)",
            ),
            (
                &["--no-pcie"],
                0,
                "unknown EAL option --no-pcie in eal_args (DPDK 22.11's EAL has no such option; \
                 did you mean --no-hpet or --no-huge or --no-pci or --no-shconf or --no-telemetry?)",
            ),
            (
                &["-w", "0000:03:00.0"],
                0,
                "unknown EAL option -w in eal_args (DPDK 22.11's EAL has -a -b -c -d -h -l -m \
                 -n -r -s -S -v and long options)",
            ),
            (&["--no-pci=1"], 0, "EAL option --no-pci takes no value"),
            (&["--no-pci", "--vdev"], 1, "EAL option --vdev needs a value"),
            (&["-a"], 0, "EAL option -a needs a value"),
            (
                &["0000:03:00.0"],
                0,
                "eal_args entry \"0000:03:00.0\" is not an EAL option (a value goes after its \
                 option, as in \"-a\", \"0000:03:00.0\")",
            ),
        ];
        for (list, index, reason) in cases {
            assert_eq!(
                check_arguments(&args(list)),
                Err(BadArgument {
                    index: *index,
                    reason: reason.to_string()
                }),
                "{list:?}"
            );
        }
    }

    #[test]
    fn devices_named() {
        let a = args(&[
            "-a",
            "0000:03:00.0",
            "-a04:00.1,x=1",
            "--allow=0000:3B:00.0",
            "--vdev=net_tap0,iface=t",
            "--vdev",
            "net_af_packet1,iface=v",
        ]);
        assert_eq!(
            allowed_pci(&a),
            ["0000:03:00.0", "0000:04:00.1", "0000:3b:00.0"]
        );
        assert_eq!(vdev_names(&a), ["net_tap0", "net_af_packet1"]);
        assert!(!no_pci(&a));
    }
}
