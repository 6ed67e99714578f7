use super::validate::LineIndex;
use super::*;

fn two_cores() -> CoreSet {
    CoreSet::from_cores(0..2)
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse_with(text, Path::new("test.toml"), &two_cores())
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// The errors as (line, column, message).
fn errors(text: &str) -> Vec<(usize, usize, String)> {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e
            .errors
            .into_iter()
            .map(|e| (e.line, e.column, e.message))
            .collect(),
    }
}

/// Asserts exactly these errors: exact positions, messages containing the
/// given text.
#[track_caller]
fn assert_errors(text: &str, expected: &[(usize, usize, &str)]) {
    let got = errors(text);
    let ok = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|(g, e)| g.0 == e.0 && g.1 == e.1 && g.2.contains(e.2));
    assert!(ok, "expected {expected:#?}\ngot {got:#?}");
}

/// A valid minimal file, for appending to.
const MINIMAL: &str = r#"[dataplane]
backend = "af_packet"
workers = [1]

[af_packet]
interface = "veth-dut"

[interface]
address = "198.18.0.2/24"
"#;

#[test]
fn full_config_round_trip() {
    let text = r#"# every key
[dataplane]
backend = "dpdk"
workers = [1, 0]
control_core = 1
idle = "adaptive"

[dpdk]
eal_args = ["--no-pci", "--in-memory"]
port = 3
mbufs_per_worker = 4095

[af_packet]
interface = "eth9"

[interface]
address = "198.18.0.2/24"
gateway = "198.18.0.1"
mac = "02:00:00:AB:cd:02"

[kernel]
enabled = true
kind = "virtio-user"
name = "sn1"

[metrics]
listen = "[::1]:9464"

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[[rule]]
name = "mixed"
protocol = "tcp"
ports = [80, 443, "8000-8100", " 9000 - 9001 "]
service = "http"

[[rule]]
name = "int"
protocol = "udp"
ports = 9
service = "discard"

[[rule]]
name = "k"
protocol = "tcp"
ports = "0-65535"
service = "kernel"

[[rule]]
name = "d"
protocol = "udp"
ports = ["65535"]
service = "drop"

[default]
action = "drop"

[debug]
flow_record = "/tmp/flows/run1-"
"#;
    let c = ok(text);
    let expected = Config {
        path: PathBuf::from("test.toml"),
        dataplane: Dataplane {
            backend: Backend::Dpdk,
            workers: vec![1, 0],
            control_core: 1,
            idle: IdleMode::Adaptive,
        },
        dpdk: DpdkConfig {
            eal_args: vec!["--no-pci".into(), "--in-memory".into()],
            port: 3,
            mbufs_per_worker: 4095,
        },
        af_packet: Some(AfPacketConfig {
            interface: "eth9".into(),
        }),
        interface: InterfaceConfig {
            address: Ipv4Addr::new(198, 18, 0, 2),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(198, 18, 0, 1)),
            mac: MacSetting::Fixed([2, 0, 0, 0xab, 0xcd, 2]),
        },
        kernel: KernelConfig {
            enabled: true,
            kind: KernelKind::VirtioUser,
            name: "sn1".into(),
        },
        metrics: MetricsConfig {
            listen: Some("[::1]:9464".parse().unwrap()),
        },
        rules: vec![
            Rule {
                name: "echo".into(),
                protocol: Protocol::Udp,
                ports: vec![7..=7],
                action: Action::Service(ServiceKind::Echo),
            },
            Rule {
                name: "mixed".into(),
                protocol: Protocol::Tcp,
                ports: vec![80..=80, 443..=443, 8000..=8100, 9000..=9001],
                action: Action::Service(ServiceKind::Http),
            },
            Rule {
                name: "int".into(),
                protocol: Protocol::Udp,
                ports: vec![9..=9],
                action: Action::Service(ServiceKind::Discard),
            },
            Rule {
                name: "k".into(),
                protocol: Protocol::Tcp,
                ports: vec![0..=65535],
                action: Action::Kernel,
            },
            Rule {
                name: "d".into(),
                protocol: Protocol::Udp,
                ports: vec![65535..=65535],
                action: Action::Drop,
            },
        ],
        default_action: DefaultAction::Drop,
        debug: DebugConfig {
            flow_record: Some(PathBuf::from("/tmp/flows/run1-")),
        },
        warnings: vec![
            ConfigError::new(
                Position {
                    line: 5,
                    column: 16,
                },
                "control_core 1 is also a worker core; the control thread will share it with \
                 a worker (fine for tests, give it its own core in production)",
            ),
            ConfigError::new(
                Position {
                    line: 13,
                    column: 1,
                },
                "[af_packet] is ignored with backend \"dpdk\"",
            ),
        ],
        positions: Positions {
            backend: Some(Position {
                line: 3,
                column: 11,
            }),
            kernel_enabled: Some(Position {
                line: 22,
                column: 11,
            }),
            rule_services: [33, 39, 45, 51, 57]
                .map(|line| Position { line, column: 11 })
                .to_vec(),
        },
    };
    assert_eq!(c, expected);
    assert_eq!(c.interface.netmask(), Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(c.interface.network(), Ipv4Addr::new(198, 18, 0, 0));
    assert_eq!(c.rules[1].ports_string(), "80,443,8000-8100,9000-9001");
}

#[test]
fn defaults() {
    let c = ok(MINIMAL);
    assert_eq!(c.dataplane.control_core, 0);
    assert_eq!(c.dataplane.idle, IdleMode::Busy);
    assert_eq!(c.dpdk, DpdkConfig::default());
    assert_eq!(c.dpdk.mbufs_per_worker, 8191);
    assert_eq!(c.dpdk.port, 0);
    assert!(c.dpdk.eal_args.is_empty());
    assert_eq!(c.interface.mac, MacSetting::Auto);
    assert_eq!(c.interface.gateway, None);
    assert_eq!(c.kernel, KernelConfig::default());
    assert!(!c.kernel.enabled);
    assert_eq!(c.metrics.listen, None);
    assert!(c.rules.is_empty());
    assert_eq!(c.default_action, DefaultAction::Kernel);
    assert_eq!(c.debug.flow_record, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.check_supported().is_empty());
}

#[test]
fn unknown_keys_name_their_section() {
    assert_errors(
        "[dataplane]\nbackend = \"dpdk\"\nwrokers = [1]\n",
        &[(
            3,
            1,
            "unknown key \"wrokers\" in [dataplane]; expected one of backend, workers, \
             control_core, idle",
        )],
    );
    assert_errors(
        "[[rule]]\nname = \"a\"\nport = 7\n",
        &[(
            3,
            1,
            "unknown key \"port\" in [[rule]]; expected one of name, protocol, ports, service",
        )],
    );
    assert_errors(
        "[dataplan]\n",
        &[(
            1,
            2,
            "unknown section [dataplan]; expected one of [dataplane], [dpdk]",
        )],
    );
    assert_errors(
        "workers = 1\n",
        &[(1, 1, "unknown key \"workers\" outside any section")],
    );
    // Every section in the table used for the messages matches its struct.
    for (section, keys) in raw::SECTIONS {
        let text = match *section {
            "" => continue,
            "[rule]" => "[[rule]]\nbogus = 1\n".to_owned(),
            s => format!("[{s}]\nbogus = 1\n"),
        };
        let got = errors(&text);
        assert_eq!(got.len(), 1);
        let want = format!(
            "unknown key \"bogus\" in [{section}]; expected one of {}",
            keys.join(", ")
        );
        assert_eq!(got[0], (2, 1, want));
    }
}

#[test]
fn syntax_and_type_errors() {
    assert_errors("[dataplane\n", &[(1, 11, "unclosed table")]);
    assert_errors(
        "[dataplane]\nbackend = \"a\"\nbackend = \"b\"\n",
        &[(3, 1, "backend is defined twice")],
    );
    assert_errors(
        "[dataplane]\nworkers = 1\n",
        &[(2, 11, "wrong type: integer `1`, expected an array")],
    );
    assert_errors(
        "[rule]\nname = \"x\"\n",
        &[(
            1,
            1,
            "rules are written [[rule]] (an array of tables), not [rule]",
        )],
    );
    assert_errors(
        "[[rule]]\nports = true\n",
        &[(
            2,
            9,
            "expected a port, a range like \"8000-8100\", or an array of them",
        )],
    );
    assert_errors(
        "[[rule]]\nports = [1.5]\n",
        &[(
            2,
            10,
            "expected a port number or a range like \"8000-8100\"",
        )],
    );
}

#[test]
fn missing_sections_and_keys() {
    assert_errors(
        "",
        &[
            (
                1,
                1,
                "missing [dataplane] section; it needs backend and workers",
            ),
            (1, 1, "missing [interface] section; it needs address"),
        ],
    );
    assert_errors(
        "[dataplane]\n[interface]\n[[rule]]\n",
        &[
            (
                1,
                1,
                "[dataplane] needs backend = \"dpdk\" or \"af_packet\"",
            ),
            (1, 1, "[dataplane] needs workers"),
            (2, 1, "[interface] needs address"),
            (3, 1, "[[rule]] needs a name"),
            (3, 1, "[[rule]] needs protocol"),
            (3, 1, "[[rule]] needs ports"),
            (3, 1, "[[rule]] needs service"),
        ],
    );
    // [af_packet] twice is a TOML error, reported first and alone.
    assert_errors(
        &format!("{MINIMAL}[default]\n[af_packet]\n"),
        &[(11, 2, "[af_packet] is defined twice")],
    );
    let text = MINIMAL.replace("interface = \"veth-dut\"", "") + "[default]\n";
    assert_errors(
        &text,
        &[
            (5, 1, "[af_packet] needs interface"),
            (10, 1, "[default] needs action"),
        ],
    );
}

#[test]
fn backend_section_requirements() {
    let text = MINIMAL.replace("[af_packet]\ninterface = \"veth-dut\"\n", "");
    assert_errors(
        &text,
        &[(
            2,
            11,
            "backend \"af_packet\" needs an [af_packet] section with interface",
        )],
    );
    assert_errors(
        &MINIMAL.replace("\"af_packet\"", "\"xdp\""),
        &[(
            2,
            11,
            "unknown backend \"xdp\"; expected \"dpdk\" or \"af_packet\"",
        )],
    );
    assert_errors(
        &MINIMAL.replace("\"veth-dut\"", "\"this-name-is-too-long\""),
        &[(
            6,
            13,
            "\"this-name-is-too-long\" is not a valid interface name (1-15 bytes, no '/', ':' \
             or whitespace)",
        )],
    );
    let c = ok(&format!("{MINIMAL}[dpdk]\nport = 1\n"));
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(
        c.warnings[0].message,
        "[dpdk] is ignored with backend \"af_packet\""
    );
    assert_eq!((c.warnings[0].line, c.warnings[0].column), (10, 1));
}

#[test]
fn cores() {
    let text = "[dataplane]\nbackend = \"af_packet\"\nworkers = [7, 1, 1, -1]\ncontrol_core = 9\n\
                [af_packet]\ninterface = \"x\"\n[interface]\naddress = \"10.0.0.1/8\"\n";
    assert_errors(
        text,
        &[
            (
                3,
                12,
                "core 7 does not exist on this machine (cores 0-1 are online)",
            ),
            (3, 18, "worker core 1 is listed twice"),
            (3, 21, "core -1 is not a core number"),
            (
                4,
                16,
                "core 9 does not exist on this machine (cores 0-1 are online)",
            ),
        ],
    );
    // Sparse online sets are reported as the kernel writes them.
    let sparse = CoreSet::parse_list("0-3,8-11").unwrap();
    let e = Config::parse_with(
        &text.replace("[7, 1, 1, -1]", "[4]").replace("9", "0"),
        Path::new("t"),
        &sparse,
    )
    .unwrap_err();
    assert_eq!(
        e.errors[0].message,
        "core 4 does not exist on this machine (cores 0-3,8-11 are online)"
    );
    let one = CoreSet::from_cores([0]);
    let e = Config::parse_with(MINIMAL, Path::new("t"), &one).unwrap_err();
    assert_eq!(
        e.errors[0].message,
        "core 1 does not exist on this machine (core 0 is online)"
    );
    assert_errors(
        &MINIMAL.replace("[1]", "[]"),
        &[(3, 11, "workers must not be empty")],
    );
}

#[test]
fn control_core_shared_with_worker_is_a_warning() {
    let c = ok(&MINIMAL.replace("workers = [1]", "workers = [0, 1]\ncontrol_core = 1"));
    assert_eq!(c.dataplane.control_core, 1);
    assert_eq!(c.warnings.len(), 1);
    assert_eq!((c.warnings[0].line, c.warnings[0].column), (4, 16));
    assert!(c.warnings[0]
        .message
        .starts_with("control_core 1 is also a worker core"));
    // The default control core 0 is warned about at the [dataplane] header.
    let c = ok(&MINIMAL.replace("workers = [1]", "workers = [0, 1]"));
    assert_eq!((c.warnings[0].line, c.warnings[0].column), (1, 1));
}

#[test]
fn interface_values() {
    let with = |iface: &str| MINIMAL.replace("address = \"198.18.0.2/24\"\n", "") + iface;
    assert_errors(
        &with("address = \"198.18.0.300/24\"\n"),
        &[(
            9,
            11,
            "\"198.18.0.300/24\" is not an IPv4 address with prefix (like \"198.18.0.2/24\")",
        )],
    );
    assert_errors(
        &with("address = \"198.18.0.2\"\n"),
        &[(9, 11, "is not an IPv4 address with prefix")],
    );
    assert_errors(
        &with("address = \"198.18.0.2/33\"\n"),
        &[(9, 11, "prefix length 33 is out of range 0-32")],
    );
    assert_errors(
        &with("address = \"198.18.0.0/24\"\n"),
        &[(
            9,
            11,
            "address 198.18.0.0 is the network address of 198.18.0.0/24",
        )],
    );
    assert_errors(
        &with("address = \"198.18.0.255/24\"\n"),
        &[(
            9,
            11,
            "address 198.18.0.255 is the broadcast address of 198.18.0.0/24",
        )],
    );
    assert_errors(
        &with("address = \"224.0.0.1/4\"\n"),
        &[(9, 11, "multicast")],
    );
    // /31 and /32 have no network or broadcast address.
    ok(&with("address = \"198.18.0.0/31\"\n"));
    ok(&with("address = \"198.18.0.255/32\"\n"));
    assert_errors(
        &with("address = \"198.18.0.2/24\"\ngateway = \"198.18.1.1\"\n"),
        &[(10, 11, "gateway 198.18.1.1 is outside 198.18.0.0/24")],
    );
    assert_errors(
        &with("address = \"198.18.0.2/24\"\ngateway = \"198.18.0.2\"\n"),
        &[(10, 11, "gateway 198.18.0.2 is the stack's own address")],
    );
    assert_errors(
        &with("address = \"198.18.0.2/24\"\ngateway = \"gw\"\n"),
        &[(
            10,
            11,
            "\"gw\" is not an IPv4 address (like \"198.18.0.1\")",
        )],
    );
    for bad in [
        "02:00:00:00:00",
        "02-00-00-00-00-02",
        "02:00:00:00:00:2",
        "g2:00:00:00:00:02",
        "Auto",
    ] {
        assert_errors(
            &with(&format!("address = \"198.18.0.2/24\"\nmac = \"{bad}\"\n")),
            &[(
                10,
                7,
                "is not a MAC address; use \"auto\" or the xx:xx:xx:xx:xx:xx form",
            )],
        );
    }
    assert_errors(
        &with("address = \"198.18.0.2/24\"\nmac = \"01:00:5e:00:00:01\"\n"),
        &[(10, 7, "\"01:00:5e:00:00:01\" is a multicast MAC address")],
    );
    assert_errors(
        &with("address = \"198.18.0.2/24\"\nmac = \"00:00:00:00:00:00\"\n"),
        &[(10, 7, "is not a usable MAC address")],
    );
}

#[test]
fn kernel_metrics_debug_dpdk_values() {
    let text = format!(
        "{MINIMAL}[kernel]\nkind = \"veth\"\nname = \"a/b\"\n[metrics]\nlisten = \"127.0.0.1\"\n\
         [debug]\nflow_record = \"\"\n"
    );
    assert_errors(
        &text,
        &[
            (
                11,
                8,
                "unknown kernel kind \"veth\"; expected \"virtio-user\" or \"tap\"",
            ),
            (12, 8, "\"a/b\" is not a valid interface name"),
            (
                14,
                10,
                "\"127.0.0.1\" is not a socket address (like \"127.0.0.1:9464\")",
            ),
            (16, 15, "flow_record must not be empty"),
        ],
    );
    let text = "[dataplane]\nbackend = \"dpdk\"\nworkers = [1]\n[dpdk]\n\
                eal_args = [\"--no-pci\", \"-l\", \"0-1\", \"--lcores=1\", \"-c3\"]\n\
                port = 70000\nmbufs_per_worker = 100\n[interface]\naddress = \"10.1.1.1/8\"\n";
    assert_errors(
        text,
        &[
            (5, 25, "eal_args must not set cores (-l)"),
            (5, 38, "eal_args must not set cores (--lcores)"),
            (5, 52, "eal_args must not set cores (-c)"),
            (6, 8, "port 70000 is out of range 0-65535"),
            (7, 20, "mbufs_per_worker 100 is too small; use at least 256"),
        ],
    );
    assert_errors(
        &text
            .replace(", \"-l\", \"0-1\", \"--lcores=1\", \"-c3\"", "")
            .replace("70000", "1")
            .replace("100", "5000000000"),
        &[(7, 20, "mbufs_per_worker 5000000000 is out of range")],
    );
}

#[test]
fn rule_values() {
    let rule = |body: &str| format!("{MINIMAL}[[rule]]\n{body}");
    // MINIMAL has 9 lines; the rule header is line 10.
    assert_errors(
        &rule("name = \"a\"\nprotocol = \"udp\"\nports = 70000\nservice = \"echo\"\n"),
        &[(13, 9, "port 70000 is out of range 0-65535")],
    );
    assert_errors(
        &rule("name = \"a\"\nprotocol = \"udp\"\nports = \"9000-8000\"\nservice = \"echo\"\n"),
        &[(13, 9, "port range \"9000-8000\" is reversed")],
    );
    assert_errors(
        &rule(
            "name = \"a\"\nprotocol = \"udp\"\nports = [80, \"70000\", -1, \"x\", \"1-\", \"99999999999999999999999\"]\n\
             service = \"echo\"\n",
        ),
        &[
            (13, 14, "port 70000 is out of range 0-65535"),
            (13, 23, "port -1 is out of range 0-65535"),
            (13, 27, "\"x\" is not a port or a port range (like \"80\" or \"8000-8100\")"),
            (13, 32, "\"1-\" is not a port or a port range"),
            (13, 38, "port number is out of range 0-65535"),
        ],
    );
    assert_errors(
        &rule("name = \"a\"\nprotocol = \"udp\"\nports = []\nservice = \"echo\"\n"),
        &[(13, 9, "ports must not be empty")],
    );
    assert_errors(
        &rule("name = \"a\"\nprotocol = \"icmp\"\nports = 1\nservice = \"ech\"\n"),
        &[
            (
                12,
                12,
                "unknown protocol \"icmp\"; expected \"udp\" or \"tcp\"",
            ),
            (
                14,
                11,
                "unknown service \"ech\"; expected one of echo, discard, http, kernel, drop",
            ),
        ],
    );
    assert_errors(
        &rule("name = \"a\"\nprotocol = \"udp\"\nports = 80\nservice = \"http\"\n"),
        &[(
            14,
            11,
            "service \"http\" runs over tcp only, but this rule has protocol = \"udp\"",
        )],
    );
    assert_errors(
        &rule("name = \" \"\nprotocol = \"udp\"\nports = 1\nservice = \"drop\"\n"),
        &[(11, 8, "rule name must not be empty")],
    );
    assert_errors(
        &format!(
            "{}[[rule]]\nname = \"a\"\nprotocol = \"tcp\"\nports = 2\nservice = \"drop\"\n",
            rule("name = \"a\"\nprotocol = \"udp\"\nports = 1\nservice = \"drop\"\n")
        ),
        &[(16, 8, "rule name \"a\" is used twice (first on line 11)")],
    );
}

#[test]
fn too_many_rules() {
    let mut text = MINIMAL.to_owned();
    for i in 0..=MAX_RULES {
        text.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\nprotocol = \"udp\"\nports = {i}\nservice = \"drop\"\n"
        ));
    }
    // The 256th rule starts on line 10 + 255 * 5.
    assert_errors(
        &text,
        &[(
            10 + 255 * 5,
            1,
            "too many rules (256); at most 255 are allowed",
        )],
    );
    let fits: String = text
        .lines()
        .take(9 + 255 * 5)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(ok(&fits).rules.len(), 255);
}

#[test]
fn shadowed_rule_is_a_warning() {
    let text = format!(
        "{MINIMAL}[[rule]]\nname = \"wide\"\nprotocol = \"udp\"\nports = \"1-100\"\nservice = \"drop\"\n\
         [[rule]]\nname = \"hidden\"\nprotocol = \"udp\"\nports = [5, \"7-9\"]\nservice = \"echo\"\n\
         [[rule]]\nname = \"other-proto\"\nprotocol = \"tcp\"\nports = 5\nservice = \"drop\"\n"
    );
    let c = ok(&text);
    assert_eq!(c.warnings.len(), 1);
    assert_eq!((c.warnings[0].line, c.warnings[0].column), (15, 1));
    assert_eq!(
        c.warnings[0].message,
        "rule \"hidden\" never matches: earlier rules claim all of its ports"
    );
}

#[test]
fn many_errors_in_one_run_in_file_order() {
    let text = r#"[interface]
address = "198.18.0.300/24"
mac = "01:02:03:04:05:06"

[dataplane]
backend = "af_packet"
workers = [1, 7, 1]
idle = "lazy"

[[rule]]
name = "web"
protocol = "udp"
ports = [80, "9000-8000"]
service = "http"

[[rule]]
name = "web"
protocol = "udp"
ports = "70000"
service = "ech"
"#;
    let e = parse(text).unwrap_err();
    let shown = e.to_string();
    let expected = "\
test.toml:2:11: \"198.18.0.300/24\" is not an IPv4 address with prefix (like \"198.18.0.2/24\")
test.toml:3:7: \"01:02:03:04:05:06\" is a multicast MAC address; the stack needs a unicast one (the first byte must be even, like \"02:00:00:00:00:02\")
test.toml:6:11: backend \"af_packet\" needs an [af_packet] section with interface
test.toml:7:15: core 7 does not exist on this machine (cores 0-1 are online)
test.toml:7:18: worker core 1 is listed twice
test.toml:8:8: unknown idle mode \"lazy\"; expected \"busy\" or \"adaptive\"
test.toml:13:14: port range \"9000-8000\" is reversed
test.toml:14:11: service \"http\" runs over tcp only, but this rule has protocol = \"udp\"
test.toml:17:8: rule name \"web\" is used twice (first on line 11)
test.toml:19:9: port 70000 is out of range 0-65535
test.toml:20:11: unknown service \"ech\"; expected one of echo, discard, http, kernel, drop";
    assert_eq!(shown, expected);
}

#[test]
fn columns_count_characters_not_bytes() {
    // Inline tables put several values on one line, after multi-byte text.
    let text = "rule = [{ name = \"ñandú-😀\", protocol = \"udp\", ports = \"9-1\", service = \"echo\" }]\n\
                [dataplane]\nbackend = \"af_packet\"\nworkers = [1]\n[af_packet]\ninterface = \"x\"\n\
                [interface]\naddress = \"10.0.0.1/8\"\n";
    // `rule = [{ name = "ñandú-😀", protocol = "udp", ports = ` is 54 characters
    // (but 59 bytes).
    assert_errors(text, &[(1, 55, "port range \"9-1\" is reversed")]);

    let index = LineIndex::new("a\r\nbé c\nxyz");
    assert_eq!(index.position(0), Position { line: 1, column: 1 });
    assert_eq!(index.position(3), Position { line: 2, column: 1 });
    assert_eq!(index.position(6), Position { line: 2, column: 3 }); // ' ' after "bé"
    assert_eq!(index.position(5), Position { line: 2, column: 2 }); // inside 'é'
    assert_eq!(index.position(9), Position { line: 3, column: 1 });
    assert_eq!(index.position(100), Position { line: 3, column: 4 });
    let bom = LineIndex::new("\u{feff}[x]");
    assert_eq!(bom.position(3), Position { line: 1, column: 1 });
}

#[test]
fn display_and_load_errors() {
    let e = ConfigErrors {
        path: PathBuf::from("/etc/shardnet.toml"),
        errors: vec![
            ConfigError::new(Position { line: 3, column: 7 }, "first"),
            ConfigError::new(Position::default(), "no position"),
        ],
    };
    assert_eq!(
        e.to_string(),
        "/etc/shardnet.toml:3:7: first\n/etc/shardnet.toml: no position"
    );
    assert_eq!(e.errors[0].to_string(), "3:7: first");

    let missing = Path::new("/nonexistent/shardnet.toml");
    let e = Config::load(missing).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(e
        .to_string()
        .starts_with("/nonexistent/shardnet.toml: cannot read the config file: "));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let c = Config::load_with(&path, &two_cores()).unwrap();
    assert_eq!(c.path, path);
    std::fs::write(&path, "[dataplane]\nbackend = 1\n").unwrap();
    let e = Config::load_with(&path, &two_cores()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:11: wrong type: integer `1`, expected a string",
            path.display()
        )
    );
}

#[test]
fn unsupported_features_are_separate_from_parsing() {
    let text = format!(
        "{MINIMAL}[kernel]\nenabled = true\n\
         [[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = 80\nservice = \"http\"\n\
         [[rule]]\nname = \"ssh\"\nprotocol = \"tcp\"\nports = 22\nservice = \"kernel\"\n\
         [[rule]]\nname = \"echo\"\nprotocol = \"udp\"\nports = 7\nservice = \"echo\"\n"
    );
    let c = ok(&text);
    let problems = c.check_supported();
    let got: Vec<_> = problems.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, [(11, 11), (16, 11)]);
    assert!(problems[0]
        .message
        .starts_with("the kernel exception port is not implemented yet in this build"));
    assert!(problems[1]
        .message
        .starts_with("rule \"web\": TCP services (here \"http\") are not implemented yet"));

    let dpdk = ok(&MINIMAL.replace("\"af_packet\"", "\"dpdk\""));
    let problems = dpdk.check_supported();
    if cfg!(feature = "dpdk") {
        assert!(problems.is_empty());
    } else {
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].line, problems[0].column), (2, 11));
        assert!(problems[0].message.contains("\"dpdk\" feature"));
    }
}

#[test]
fn summary_mentions_the_essentials() {
    let c = ok(&format!(
        "{MINIMAL}[[rule]]\nname = \"echo\"\nprotocol = \"udp\"\nports = [7, \"9-10\"]\nservice = \"echo\"\n"
    ));
    let s = c.summary();
    assert!(!s.ends_with('\n'));
    for needle in [
        "af_packet on veth-dut",
        "198.18.0.2/24",
        "1 on core 1,",
        "echo  udp 7,9-10 -> echo",
        "default -> kernel",
        "metrics:   disabled",
    ] {
        assert!(s.contains(needle), "{needle:?} not in:\n{s}");
    }
}

#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // production.toml describes an 8-core server.
            let cores = CoreSet::from_cores(0..8);
            if let Err(e) = Config::load_with(&path, &cores) {
                panic!("{e}");
            }
            seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["af_packet.toml", "dpdk-vdev.toml", "production.toml"]
    );

    let af = Config::load_with(&dir.join("af_packet.toml"), &two_cores()).unwrap();
    assert_eq!(af.dataplane.backend, Backend::AfPacket);
    assert_eq!(af.af_packet.as_ref().unwrap().interface, "veth-dut");
    assert_eq!(af.dataplane.workers, [0, 1]);
    assert_eq!(af.dataplane.idle, IdleMode::Adaptive);
    assert_eq!(af.rules.len(), 2);
    assert!(af.check_supported().is_empty());

    let vdev = Config::load_with(&dir.join("dpdk-vdev.toml"), &two_cores()).unwrap();
    assert_eq!(vdev.dataplane.backend, Backend::Dpdk);
    assert_eq!(vdev.dpdk.eal_args.len(), 4);
    assert_eq!(vdev.rules, af.rules);

    let prod = Config::load_with(&dir.join("production.toml"), &CoreSet::from_cores(0..8)).unwrap();
    assert!(prod.warnings.is_empty(), "{:?}", prod.warnings);
    // The pending parts are exactly the exception port and the TCP service.
    let pending = prod.check_supported();
    let kernel_and_web = pending
        .iter()
        .filter(|e| e.message.contains("kernel exception port") || e.message.contains("\"web\""))
        .count();
    assert_eq!(kernel_and_web, 2, "{pending:?}");
}
