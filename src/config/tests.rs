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
steer_queue_size = 1024

[dpdk]
eal_args = ["--no-pci", "--in-memory"]
port = 3
mbufs_per_worker = 4095
rx_descriptors = 512
tx_descriptors = 2048
tx_checksum = "software"

[af_packet]
interface = "eth9"
kernel_ingress = "drop"
rx_ring_frames = 1024

[interface]
address = "198.18.0.2/24"
gateway = "198.18.0.1"
mac = "02:00:00:AB:cd:02"
mtu = 9000

[kernel]
enabled = true
kind = "virtio-user"
name = "sn1"
queue_size = 256

[metrics]
listen = "[::1]:9464"
admin_socket = "/run/shardnet/admin.sock"

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
ports = "1-65535"
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
stall_endpoint = true

[tcp]
max_connections_per_worker = 1000
syn_backlog = 64
buffer_size = 100000
max_buffers_per_worker = 2000
mss = 8960
congestion = "newreno"
nagle = true
delayed_ack_ms = 0
time_wait_ms = 240000
fin_timeout_ms = 1000
keepalive_idle_s = 7200
keepalive_interval_s = 3600
keepalive_probes = 127
timestamps = false
sack = false
window_scaling = false
rto_min_ms = 1
rto_max_ms = 1000
rto_initial_ms = 1000
max_retransmits = 30
max_syn_retransmits = 1

[http]
body = """
<h1>hello</h1>
"""
header_timeout_ms = 2500
idle_timeout_ms = 0
"#;
    let c = ok(text);
    let expected = Config {
        path: PathBuf::from("test.toml"),
        dataplane: Dataplane {
            backend: Backend::Dpdk,
            workers: vec![1, 0],
            control_core: 1,
            idle: IdleMode::Adaptive,
            steer_queue_size: Some(1024),
        },
        dpdk: DpdkConfig {
            eal_args: vec!["--no-pci".into(), "--in-memory".into()],
            port: 3,
            mbufs_per_worker: 4095,
            rx_descriptors: 512,
            tx_descriptors: 2048,
            tx_checksum: TxChecksumSetting::Software,
        },
        af_packet: Some(AfPacketConfig {
            interface: "eth9".into(),
            kernel_ingress: KernelIngress::Drop,
            rx_ring_frames: 1024,
        }),
        interface: InterfaceConfig {
            address: Ipv4Addr::new(198, 18, 0, 2),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(198, 18, 0, 1)),
            mac: MacSetting::Fixed([2, 0, 0, 0xab, 0xcd, 2]),
            local_ports: crate::config::DEFAULT_LOCAL_PORTS,
            mtu: 9000,
        },
        kernel: KernelConfig {
            enabled: true,
            kind: KernelKind::VirtioUser,
            name: "sn1".into(),
            queue_size: 256,
        },
        metrics: MetricsConfig {
            listen: Some("[::1]:9464".parse().unwrap()),
            admin_socket: Some("/run/shardnet/admin.sock".into()),
        },
        tcp: TcpSettings {
            max_connections: 1000,
            syn_backlog: 64,
            buffer_size: 100_000,
            max_buffers: 2000,
            mss: 8960,
            congestion: CongestionKind::NewReno,
            nagle: true,
            delayed_ack_ms: 0,
            time_wait_ms: 240_000,
            fin_timeout_ms: 1000,
            keepalive: Some(KeepaliveSettings {
                idle_s: 7200,
                interval_s: 3600,
                probes: 127,
            }),
            timestamps: false,
            sack: false,
            window_scaling: false,
            rto_min_ms: 1,
            rto_max_ms: 1000,
            rto_initial_ms: 1000,
            max_retransmits: 30,
            max_syn_retransmits: 1,
        },
        http: HttpSettings {
            // A multi-line basic string drops the newline right after `"""`.
            body: "<h1>hello</h1>\n".into(),
            header_timeout_ms: 2500,
            idle_timeout_ms: 0,
        },
        rules: vec![
            Rule {
                name: "echo".into(),
                protocol: Protocol::Udp,
                ports: vec![7..=7],
                action: Action::Service(ServiceId::ECHO),
            },
            Rule {
                name: "mixed".into(),
                protocol: Protocol::Tcp,
                ports: vec![80..=80, 443..=443, 8000..=8100, 9000..=9001],
                action: Action::Service(ServiceId::HTTP),
            },
            Rule {
                name: "int".into(),
                protocol: Protocol::Udp,
                ports: vec![9..=9],
                action: Action::Service(ServiceId::DISCARD),
            },
            Rule {
                name: "k".into(),
                protocol: Protocol::Tcp,
                ports: vec![1..=65535],
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
            stall_endpoint: true,
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
                    line: 17,
                    column: 1,
                },
                "[af_packet] is ignored with backend \"dpdk\"",
            ),
        ],
        services: crate::config::ServiceCatalog::builtin(),
        positions: Positions {
            backend: Some(Position {
                line: 3,
                column: 11,
            }),
            kernel_enabled: Some(Position {
                line: 29,
                column: 11,
            }),
            rule_services: [42, 48, 54, 60, 66]
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
    assert_eq!(c.dataplane.steer_queue_size, None, "the RX ring's size");
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
    assert!(!c.debug.stall_endpoint);
    assert_eq!(c.tcp, TcpSettings::default());
    assert_eq!(c.http, HttpSettings::default());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.check_supported().is_empty());
}

#[test]
fn tcp_and_http_defaults() {
    let t = TcpSettings::default();
    assert_eq!(t.max_connections, 262_144);
    assert_eq!(t.syn_backlog, 1024);
    assert_eq!(t.buffer_size, 262_144);
    assert_eq!(t.max_buffers, 4096);
    assert_eq!(t.mss, 1460);
    assert_eq!(t.congestion, CongestionKind::Cubic);
    assert!(!t.nagle);
    assert_eq!(t.delayed_ack_ms, 40);
    assert_eq!(t.time_wait_ms, 60_000);
    assert_eq!(t.fin_timeout_ms, 60_000);
    assert_eq!(t.keepalive, None);
    assert!(t.timestamps && t.sack && t.window_scaling);
    assert_eq!(t.rto_min_ms, 200);
    assert_eq!(t.rto_max_ms, 120_000);
    assert_eq!(t.rto_initial_ms, 1000);
    assert_eq!(t.max_retransmits, 15);
    assert_eq!(t.max_syn_retransmits, 6);
    assert_eq!(CongestionKind::default(), CongestionKind::Cubic);
    assert_eq!(HttpSettings::default().body, "shardnet\n");
    // Empty sections are the defaults too (with a warning: nothing uses them).
    let c = ok(&format!("{MINIMAL}[tcp]\n[http]\n"));
    assert_eq!(c.tcp, t);
    assert_eq!(c.http, HttpSettings::default());
}

#[test]
fn unknown_keys_name_their_section() {
    assert_errors(
        "[dataplane]\nbackend = \"dpdk\"\nwrokers = [1]\n",
        &[(
            3,
            1,
            "unknown key \"wrokers\" in [dataplane]; expected one of backend, workers, \
             control_core, idle, steer_queue_size",
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
    assert_errors(
        &format!("{MINIMAL}[tcp]\nmss = 1400\nmax_connections = 10\n"),
        &[(
            12,
            1,
            "unknown key \"max_connections\" in [tcp]; expected one of \
             max_connections_per_worker, syn_backlog, buffer_size, max_buffers_per_worker, mss, \
             congestion, nagle, delayed_ack_ms, time_wait_ms, fin_timeout_ms, keepalive_idle_s, \
             keepalive_interval_s, keepalive_probes, timestamps, sack, window_scaling, \
             rto_min_ms, rto_max_ms, rto_initial_ms, max_retransmits, max_syn_retransmits",
        )],
    );
    assert_errors(
        &format!("{MINIMAL}[http]\nbdoy = \"x\"\n"),
        &[(
            11,
            1,
            "unknown key \"bdoy\" in [http]; expected one of body",
        )],
    );
    assert_errors(
        "[tpc]\n",
        &[(
            1,
            2,
            "unknown section [tpc]; expected one of [dataplane], [dpdk], [af_packet], \
             [interface], [kernel], [metrics], [tcp], [http], [[rule]], [default], [debug]",
        )],
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
    assert_errors(
        &MINIMAL.replace(
            "interface = \"veth-dut\"",
            "interface = \"veth-dut\"\nkernel_ingress = \"off\"",
        ),
        &[(
            7,
            18,
            "unknown kernel_ingress \"off\"; expected \"keep\" or \"drop\"",
        )],
    );
    assert_errors(
        &MINIMAL.replace(
            "interface = \"veth-dut\"",
            "interface = \"veth-dut\"\nrx_ring_frames = 32",
        ),
        &[(
            7,
            18,
            "rx_ring_frames 32 is out of range 256-65536 frames per queue",
        )],
    );
    let defaults = ok(MINIMAL).af_packet.unwrap();
    assert_eq!(defaults.kernel_ingress, KernelIngress::Keep);
    assert_eq!(defaults.rx_ring_frames, DEFAULT_AF_PACKET_RX_FRAMES);
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
fn steer_queue_size_range_and_dpdk_pool() {
    let with = |line: &str| MINIMAL.replace("workers = [1]", &format!("workers = [1]\n{line}"));
    assert_eq!(
        ok(&with("steer_queue_size = 64"))
            .dataplane
            .steer_queue_size,
        Some(64)
    );
    for bad in ["32", "65537", "-1"] {
        assert_errors(
            &with(&format!("steer_queue_size = {bad}")),
            &[(
                4,
                20,
                "is out of range 64-65536 (packets per ring between two workers",
            )],
        );
    }
    // DPDK: the rings hold the receiving worker's mbufs; all of them
    // together at most half its pool.
    let dpdk = |size: u32, mbufs: u32| {
        format!(
            "[dataplane]\nbackend = \"dpdk\"\nworkers = [0, 1]\nsteer_queue_size = {size}\n\
             [dpdk]\nmbufs_per_worker = {mbufs}\n[interface]\naddress = \"10.1.1.1/8\"\n"
        )
    };
    assert_eq!(ok(&dpdk(2048, 4096)).dataplane.steer_queue_size, Some(2048));
    assert_errors(
        &dpdk(2049, 4096),
        &[(
            4,
            20,
            "steer_queue_size 2049 x 1 (a ring to each other worker) is more than half of [dpdk] mbufs_per_worker (4096)",
        )],
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
    // Port 0 is reserved: alone, as a range's start, or in a list.
    for (ports, column) in [
        ("0", 9),
        ("\"0\"", 9),
        ("\"0-10\"", 9),
        ("[80, 0]", 14),
        ("[\"0-1\", 7]", 10),
    ] {
        assert_errors(
            &rule(&format!(
                "name = \"a\"\nprotocol = \"udp\"\nports = {ports}\nservice = \"echo\"\n"
            )),
            &[(
                13,
                column,
                "port 0 is reserved and cannot be claimed by a rule; use ports 1-65535",
            )],
        );
    }
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
            "[[rule]]\nname = \"r{i}\"\nprotocol = \"udp\"\nports = {}\nservice = \"drop\"\n",
            i + 1
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
    // The exception port is supported: a TAP on AF_PACKET passes.
    let text = format!(
        "{MINIMAL}[kernel]\nenabled = true\n\
         [[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = 80\nservice = \"http\"\n\
         [[rule]]\nname = \"ssh\"\nprotocol = \"tcp\"\nports = 22\nservice = \"kernel\"\n"
    );
    assert!(ok(&text).check_supported().is_empty());

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
fn tcp_service_rules_are_supported() {
    let text = format!(
        "{MINIMAL}[[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = [80, 8080]\nservice = \"http\"\n\
         [[rule]]\nname = \"echo\"\nprotocol = \"tcp\"\nports = 7\nservice = \"echo\"\n\
         [[rule]]\nname = \"sink\"\nprotocol = \"tcp\"\nports = 9\nservice = \"discard\"\n"
    );
    let c = ok(&text);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.check_supported(), []);
    assert!(c.uses_tcp_services());
    assert!(c.uses_service(ServiceId::HTTP));
    assert!(!ok(MINIMAL).uses_tcp_services());
}

/// `MINIMAL` plus a `[tcp]` section with `body` (starting on line 11) and a
/// tcp echo rule after it, so that `[tcp]` is used.
fn with_tcp(body: &str) -> String {
    format!(
        "{MINIMAL}[tcp]\n{body}[[rule]]\nname = \"echo\"\nprotocol = \"tcp\"\nports = 7\n\
         service = \"echo\"\n"
    )
}

#[test]
fn tcp_every_key_in_range_bounds() {
    // Both ends of every range are accepted.
    let low = with_tcp(
        "max_connections_per_worker = 1\nsyn_backlog = 1\nbuffer_size = 4096\n\
         max_buffers_per_worker = 2\nmss = 536\ncongestion = \"cubic\"\nnagle = false\n\
         delayed_ack_ms = 0\ntime_wait_ms = 1000\nfin_timeout_ms = 1000\nkeepalive_idle_s = 1\n\
         keepalive_interval_s = 1\nkeepalive_probes = 1\ntimestamps = true\nsack = true\n\
         window_scaling = true\nrto_min_ms = 1\nrto_max_ms = 1000\nrto_initial_ms = 1\n\
         max_retransmits = 1\nmax_syn_retransmits = 1\n",
    );
    let c = ok(&low);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let t = &c.tcp;
    assert_eq!(
        (
            t.max_connections,
            t.syn_backlog,
            t.buffer_size,
            t.max_buffers,
            t.mss
        ),
        (1, 1, 4096, 2, 536)
    );
    assert_eq!(
        (t.delayed_ack_ms, t.time_wait_ms, t.fin_timeout_ms),
        (0, 1000, 1000)
    );
    assert_eq!(
        t.keepalive,
        Some(KeepaliveSettings {
            idle_s: 1,
            interval_s: 1,
            probes: 1
        })
    );
    assert_eq!((t.rto_min_ms, t.rto_max_ms, t.rto_initial_ms), (1, 1000, 1));
    assert_eq!((t.max_retransmits, t.max_syn_retransmits), (1, 1));

    let high = with_tcp(
        "max_connections_per_worker = 16777216\nsyn_backlog = 1048576\n\
         buffer_size = 16777216\nmax_buffers_per_worker = 512\nmss = 8960\n\
         delayed_ack_ms = 500\ntime_wait_ms = 240000\nfin_timeout_ms = 600000\n\
         keepalive_idle_s = 604800\nkeepalive_interval_s = 3600\nkeepalive_probes = 127\n\
         rto_min_ms = 60000\nrto_max_ms = 600000\nrto_initial_ms = 60000\n\
         max_retransmits = 30\nmax_syn_retransmits = 30\n",
    );
    let high = high.replacen(
        "address = \"198.18.0.2/24\"\n",
        "address = \"198.18.0.2/24\"\nmtu = 9000\n",
        1,
    );
    let c = ok(&high);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let t = &c.tcp;
    assert_eq!(
        (
            t.max_connections,
            t.syn_backlog,
            t.buffer_size,
            t.max_buffers,
            t.mss
        ),
        (16_777_216, 1_048_576, 16_777_216, 512, 8960)
    );
    assert_eq!(
        (t.delayed_ack_ms, t.time_wait_ms, t.fin_timeout_ms),
        (500, 240_000, 600_000)
    );
    assert_eq!(
        t.keepalive,
        Some(KeepaliveSettings {
            idle_s: 604_800,
            interval_s: 3600,
            probes: 127
        })
    );
    assert_eq!(
        (t.rto_min_ms, t.rto_max_ms, t.rto_initial_ms),
        (60_000, 600_000, 60_000)
    );
    assert_eq!((t.max_retransmits, t.max_syn_retransmits), (30, 30));
    // Keys not written keep their defaults; a buffer size need not be a power
    // of two.
    let c = ok(&with_tcp(
        "congestion = \"newreno\"\nbuffer_size = 100000\nkeepalive_idle_s = 60\n",
    ));
    assert_eq!(c.tcp.congestion, CongestionKind::NewReno);
    assert_eq!(c.tcp.buffer_size, 100_000);
    assert_eq!(
        c.tcp.keepalive,
        Some(KeepaliveSettings {
            idle_s: 60,
            interval_s: 75,
            probes: 9
        })
    );
    assert_eq!(
        c.tcp,
        TcpSettings {
            congestion: CongestionKind::NewReno,
            buffer_size: 100_000,
            keepalive: c.tcp.keepalive,
            ..TcpSettings::default()
        }
    );
    // keepalive_idle_s = 0 is off, like leaving it out.
    assert_eq!(ok(&with_tcp("keepalive_idle_s = 0\n")).tcp.keepalive, None);
}

#[test]
fn tcp_range_errors_each_at_its_value() {
    // (key, a value just outside the range, the message)
    let cases: &[(&str, &str, &str)] = &[
        (
            "max_connections_per_worker",
            "0",
            "max_connections_per_worker 0 is out of range 1-16777216",
        ),
        (
            "max_connections_per_worker",
            "16777217",
            "max_connections_per_worker 16777217 is out of range 1-16777216",
        ),
        (
            "syn_backlog",
            "0",
            "syn_backlog 0 is out of range 1-1048576",
        ),
        (
            "syn_backlog",
            "1048577",
            "syn_backlog 1048577 is out of range 1-1048576",
        ),
        (
            "buffer_size",
            "4095",
            "buffer_size 4095 is out of range 4096-16777216 bytes",
        ),
        (
            "buffer_size",
            "16777217",
            "buffer_size 16777217 is out of range 4096-16777216 bytes",
        ),
        (
            "max_buffers_per_worker",
            "1",
            "max_buffers_per_worker 1 is out of range 2-16777216 (a connection uses up to two)",
        ),
        (
            "max_buffers_per_worker",
            "16777217",
            "max_buffers_per_worker 16777217 is out of range 2-16777216",
        ),
        (
            "mss",
            "535",
            "mss 535 is out of range 536-1460 bytes ([interface] mtu 1500 minus 40 bytes of IPv4 \
             and TCP headers at most)",
        ),
        ("mss", "8961", "mss 8961 is out of range 536-1460 bytes"),
        (
            "mss",
            "8960",
            "mss 8960 is larger than [interface] mtu 1500 minus 40 bytes of IPv4 and TCP headers \
             (1460); raise mtu",
        ),
        (
            "delayed_ack_ms",
            "-1",
            "delayed_ack_ms -1 is out of range 0-500 (RFC 1122 allows at most 500 ms)",
        ),
        (
            "delayed_ack_ms",
            "501",
            "delayed_ack_ms 501 is out of range 0-500",
        ),
        (
            "time_wait_ms",
            "-1",
            "time_wait_ms -1 is out of range 0-240000 (RFC 9293's 2*MSL is at most 240 s)",
        ),
        (
            "time_wait_ms",
            "240001",
            "time_wait_ms 240001 is out of range 0-240000",
        ),
        (
            "fin_timeout_ms",
            "999",
            "fin_timeout_ms 999 is out of range 1000-600000",
        ),
        (
            "fin_timeout_ms",
            "600001",
            "fin_timeout_ms 600001 is out of range 1000-600000",
        ),
        (
            "keepalive_idle_s",
            "-1",
            "keepalive_idle_s -1 is out of range 0-604800 seconds (0 turns keepalive off; at \
             most a week)",
        ),
        (
            "keepalive_idle_s",
            "604801",
            "keepalive_idle_s 604801 is out of range 0-604800",
        ),
        (
            "keepalive_interval_s",
            "0",
            "keepalive_interval_s 0 is out of range 1-3600 seconds",
        ),
        (
            "keepalive_interval_s",
            "3601",
            "keepalive_interval_s 3601 is out of range 1-3600 seconds",
        ),
        (
            "keepalive_probes",
            "0",
            "keepalive_probes 0 is out of range 1-127",
        ),
        (
            "keepalive_probes",
            "128",
            "keepalive_probes 128 is out of range 1-127",
        ),
        ("rto_min_ms", "0", "rto_min_ms 0 is out of range 1-60000"),
        (
            "rto_min_ms",
            "60001",
            "rto_min_ms 60001 is out of range 1-60000",
        ),
        (
            "rto_max_ms",
            "999",
            "rto_max_ms 999 is out of range 1000-600000",
        ),
        (
            "rto_max_ms",
            "600001",
            "rto_max_ms 600001 is out of range 1000-600000",
        ),
        (
            "rto_initial_ms",
            "0",
            "rto_initial_ms 0 is out of range 1-60000",
        ),
        (
            "rto_initial_ms",
            "60001",
            "rto_initial_ms 60001 is out of range 1-60000",
        ),
        (
            "max_retransmits",
            "0",
            "max_retransmits 0 is out of range 1-30",
        ),
        (
            "max_retransmits",
            "31",
            "max_retransmits 31 is out of range 1-30",
        ),
        (
            "max_retransmits",
            "-9223372036854775808",
            "max_retransmits -9223372036854775808 is out of range 1-30",
        ),
        (
            "max_syn_retransmits",
            "0",
            "max_syn_retransmits 0 is out of range 1-30",
        ),
        (
            "max_syn_retransmits",
            "256",
            "max_syn_retransmits 256 is out of range 1-30",
        ),
    ];
    for (key, value, message) in cases {
        // A comment first, so that the value is on line 12; its column is
        // the key's length plus " = ".
        let text = with_tcp(&format!("# {key}\n{key} = {value}\n"));
        assert_errors(&text, &[(12, key.len() + 4, message)]);
    }
    // Every key covered, both ends.
    let tcp_keys = raw::SECTIONS.iter().find(|(s, _)| *s == "tcp").unwrap().1;
    for key in tcp_keys {
        let not_integers = [
            "nagle",
            "timestamps",
            "sack",
            "window_scaling",
            "congestion",
        ];
        if !not_integers.contains(key) {
            assert!(cases.iter().filter(|c| c.0 == *key).count() >= 2, "{key}");
        }
    }
}

#[test]
fn tcp_unknown_strings_and_types() {
    assert_errors(
        &with_tcp("congestion = \"bbr\"\n"),
        &[(
            11,
            14,
            "unknown congestion control \"bbr\"; expected \"cubic\" or \"newreno\"",
        )],
    );
    assert_errors(
        &with_tcp("congestion = \"Cubic\"\n"),
        &[(11, 14, "unknown congestion control \"Cubic\"")],
    );
    assert_errors(
        &with_tcp("nagle = \"yes\"\n"),
        &[(11, 9, "wrong type: string \"yes\", expected a boolean")],
    );
    assert_errors(
        &with_tcp("mss = \"1460\"\n"),
        &[(11, 7, "wrong type: string \"1460\", expected an integer")],
    );
    assert_errors(
        &with_tcp("buffer_size = 1.5\n"),
        &[(
            11,
            15,
            "wrong type: floating point `1.5`, expected an integer",
        )],
    );
    assert_errors(
        &format!("{MINIMAL}[http]\nbody = 1\n"),
        &[(11, 8, "wrong type: integer `1`, expected a string")],
    );
}

#[test]
fn tcp_all_problems_at_once_in_file_order() {
    let text = with_tcp(
        "mss = 100\ncongestion = \"vegas\"\nrto_min_ms = 5000\nrto_max_ms = 2000\n\
         rto_initial_ms = 3000\ntime_wait_ms = 999999\nmax_syn_retransmits = 0\n",
    ) + "[http]\nbody = \"x\"\n";
    let e = parse(&text).unwrap_err().to_string();
    assert_eq!(
        e,
        "\
test.toml:11:7: mss 100 is out of range 536-1460 bytes ([interface] mtu 1500 minus 40 bytes of IPv4 and TCP headers at most)
test.toml:12:14: unknown congestion control \"vegas\"; expected \"cubic\" or \"newreno\"
test.toml:14:14: rto_max_ms 2000 is below rto_min_ms 5000; it must be at least as large
test.toml:14:14: rto_max_ms 2000 is below rto_initial_ms 3000; it must be at least as large
test.toml:16:16: time_wait_ms 999999 is out of range 0-240000 (RFC 9293's 2*MSL is at most 240 s)
test.toml:17:23: max_syn_retransmits 0 is out of range 1-30"
    );
}

#[test]
fn tcp_rto_cross_checks() {
    assert_errors(
        &with_tcp("rto_min_ms = 2000\nrto_max_ms = 1000\n"),
        &[(
            12,
            14,
            "rto_max_ms 1000 is below rto_min_ms 2000; it must be at least as large",
        )],
    );
    // The default rto_initial_ms (1000) counts too.
    assert_errors(
        &with_tcp("rto_max_ms = 1000\nrto_min_ms = 1\nrto_initial_ms = 1001\n"),
        &[(11, 14, "rto_max_ms 1000 is below rto_initial_ms 1001")],
    );
    // Equal is fine; written in any order.
    let c = ok(&with_tcp(
        "rto_max_ms = 5000\nrto_min_ms = 5000\nrto_initial_ms = 5000\n",
    ));
    assert_eq!((c.tcp.rto_min_ms, c.tcp.rto_max_ms), (5000, 5000));
    // An invalid rto_min_ms is reported alone, not compared.
    assert_errors(
        &with_tcp("rto_min_ms = 70000\nrto_max_ms = 1000\n"),
        &[(11, 14, "rto_min_ms 70000 is out of range 1-60000")],
    );
    // The defaults of rto_min_ms and rto_initial_ms fit under any valid
    // rto_max_ms.
    ok(&with_tcp("rto_max_ms = 1000\n"));
}

#[test]
fn tcp_warnings() {
    let warnings = |text: &str| -> Vec<(usize, usize, String)> {
        ok(text)
            .warnings
            .into_iter()
            .map(|w| (w.line, w.column, w.message))
            .collect()
    };
    assert_eq!(
        warnings(&with_tcp("time_wait_ms = 999\n")),
        [(
            11,
            16,
            "time_wait_ms 999: TIME-WAIT shorter than 1 s risks old duplicates being accepted \
             by a new connection"
                .to_owned()
        )]
    );
    assert_eq!(ok(&with_tcp("time_wait_ms = 0\n")).tcp.time_wait_ms, 0);
    assert_eq!(
        warnings(&with_tcp(
            "keepalive_interval_s = 10\nkeepalive_probes = 3\n"
        )),
        [
            (
                11,
                24,
                "keepalive_interval_s is ignored without keepalive_idle_s (keepalive is off)"
                    .to_owned()
            ),
            (
                12,
                20,
                "keepalive_probes is ignored without keepalive_idle_s (keepalive is off)"
                    .to_owned()
            ),
        ]
    );
    let w = warnings(&with_tcp("keepalive_idle_s = 0\nkeepalive_probes = 3\n"));
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].0, w[0].1), (12, 20));
    assert!(
        w[0].2
            .starts_with("keepalive_probes is ignored without keepalive_idle_s"),
        "{w:?}"
    );
    // 4096 buffers of 4 MiB are 16 GiB; 2048 of 4 MiB exactly 8 GiB (fine).
    assert_eq!(
        warnings(&with_tcp("buffer_size = 4194304\n")),
        [(
            11,
            15,
            "TCP buffers may take up to 16 GiB per worker (max_buffers_per_worker 4096 x \
             buffer_size 4194304); more than 8 GiB is probably more memory than meant"
                .to_owned()
        )]
    );
    assert!(warnings(&with_tcp(
        "buffer_size = 4194304\nmax_buffers_per_worker = 2048\n"
    ))
    .is_empty());
    let w = warnings(&with_tcp(
        "buffer_size = 4194304\nmax_buffers_per_worker = 2049\n",
    ));
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].0, w[0].1), (12, 26), "{w:?}");
    assert!(w[0].2.contains("up to 8196 MiB per worker"), "{w:?}");
}

#[test]
fn unused_tcp_and_http_sections_are_warnings() {
    let rule = |proto: &str, service: &str| {
        format!(
            "[[rule]]\nname = \"r\"\nprotocol = \"{proto}\"\nports = 7\nservice = \"{service}\"\n"
        )
    };
    let messages = |text: String| -> Vec<(usize, usize, String)> {
        ok(&text)
            .warnings
            .into_iter()
            .map(|w| (w.line, w.column, w.message))
            .collect()
    };
    let tcp_unused = "[tcp] has no effect: no rule sends TCP to a service".to_owned();
    let http_unused = "[http] has no effect: no rule uses the \"http\" service".to_owned();
    // No rules at all.
    assert_eq!(
        messages(format!("{MINIMAL}[tcp]\nmss = 1400\n[http]\nbody = \"\"\n")),
        [(10, 1, tcp_unused.clone()), (12, 1, http_unused.clone())]
    );
    // UDP services and TCP rules to the kernel or dropped do not use [tcp].
    for r in [
        rule("udp", "echo"),
        rule("tcp", "kernel"),
        rule("tcp", "drop"),
    ] {
        assert_eq!(
            messages(format!("{MINIMAL}[tcp]\n{r}")),
            [(10, 1, tcp_unused.clone())]
        );
    }
    // A TCP echo uses [tcp] but not [http].
    assert_eq!(
        messages(format!("{MINIMAL}[tcp]\n[http]\n{}", rule("tcp", "echo"))),
        [(11, 1, http_unused.clone())]
    );
    // An http rule uses both.
    assert_eq!(
        messages(format!("{MINIMAL}[tcp]\n[http]\n{}", rule("tcp", "http"))),
        []
    );
    // Absent sections are never warned about.
    assert_eq!(messages(format!("{MINIMAL}{}", rule("udp", "echo"))), []);
}

#[test]
fn http_body() {
    let http = |body: &str| format!("{MINIMAL}[http]\nbody = {body}\n{}", http_rule());
    fn http_rule() -> &'static str {
        "[[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = 80\nservice = \"http\"\n"
    }
    assert_eq!(ok(&http("\"\"")).http.body, "");
    assert_eq!(ok(&http("\"<p>ü</p>\\r\\n\"")).http.body, "<p>ü</p>\r\n");
    let max = "x".repeat(MAX_HTTP_BODY);
    assert_eq!(ok(&http(&format!("'{max}'"))).http.body.len(), 1 << 20);
    assert_errors(
        &http(&format!("'{max}y'")),
        &[(
            11,
            8,
            "body is 1048577 bytes; at most 1048576 (1 MiB) are allowed",
        )],
    );
    // Bytes, not characters: 2-byte characters reach the limit sooner.
    let wide = "é".repeat(MAX_HTTP_BODY / 2 + 1);
    assert_errors(
        &http(&format!("\"{wide}\"")),
        &[(11, 8, "body is 1048578 bytes")],
    );
}

#[test]
fn http_timeouts() {
    let http = |keys: &str| {
        format!(
            "{MINIMAL}[http]\n{keys}\n[[rule]]\nname = \"web\"\nprotocol = \"tcp\"\n\
             ports = 80\nservice = \"http\"\n"
        )
    };
    let c = ok(&http(""));
    assert_eq!(c.http.header_timeout_ms, DEFAULT_HTTP_HEADER_TIMEOUT_MS);
    assert_eq!(c.http.idle_timeout_ms, DEFAULT_HTTP_IDLE_TIMEOUT_MS);
    let c = ok(&http("header_timeout_ms = 0\nidle_timeout_ms = 86400000"));
    assert_eq!(
        (c.http.header_timeout_ms, c.http.idle_timeout_ms),
        (0, 86_400_000)
    );
    assert_errors(
        &http("header_timeout_ms = -1\nidle_timeout_ms = 86400001"),
        &[
            (11, 21, "header_timeout_ms -1 is out of range 0-86400000 ms"),
            (
                12,
                19,
                "idle_timeout_ms 86400001 is out of range 0-86400000 ms",
            ),
        ],
    );
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
    assert!(!s.contains("tcp:"), "{s}");
    assert!(!s.contains("http:"), "{s}");
}

#[test]
fn summary_of_tcp_and_http() {
    let c = ok(&with_tcp(""));
    let s = c.summary();
    assert!(
        s.contains(
            "\ntcp:       cubic, 262144 connections/worker, buffers 256 KiB, TIME-WAIT 60 s\n"
        ),
        "{s}"
    );
    // Only http rules show the body.
    assert!(!s.contains("http:"), "{s}");
    let c = ok(&(with_tcp(
        "congestion = \"newreno\"\nmax_connections_per_worker = 1000\nbuffer_size = 100000\n\
         time_wait_ms = 1500\n",
    )
        + "[http]\nbody = \"hello\"\n[[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = 80\n\
         service = \"http\"\n"));
    let s = c.summary();
    for needle in [
        "tcp:       newreno, 1000 connections/worker, buffers 97.7 KiB, TIME-WAIT 1500 ms",
        "http:      body of 5 bytes",
        "web   tcp 80 -> http",
    ] {
        assert!(s.contains(needle), "{needle:?} not in:\n{s}");
    }
    // The line comes before the rules.
    assert!(s.find("tcp: ").unwrap() < s.find("rules:").unwrap(), "{s}");
}

#[test]
fn byte_and_time_formats() {
    for (bytes, shown) in [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (4096, "4 KiB"),
        (100_000, "97.7 KiB"),
        (262_144, "256 KiB"),
        (1_049_600, "1025 KiB"),
        (1 << 20, "1 MiB"),
        (16 << 20, "16 MiB"),
        (8 << 30, "8 GiB"),
        ((8 << 30) + (4 << 20), "8196 MiB"),
        (1 << 40, "1 TiB"),
        ((1 << 40) + 1, "1.0 TiB"),
    ] {
        assert_eq!(format_bytes(bytes), shown);
    }
    assert_eq!(format_ms(0), "0 ms");
    assert_eq!(format_ms(999), "999 ms");
    assert_eq!(format_ms(1000), "1 s");
    assert_eq!(format_ms(60_000), "60 s");
    assert_eq!(format_ms(1500), "1500 ms");
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
    // Nothing is pending (but the DPDK backend in a build without it).
    let pending = prod.check_supported();
    assert!(
        pending
            .iter()
            .all(|e| !cfg!(feature = "dpdk") && e.message.contains("\"dpdk\" feature")),
        "{pending:?}"
    );
    assert!(prod.kernel.enabled);
    assert_eq!(prod.kernel.kind, KernelKind::VirtioUser);
    // Its TCP services, with [tcp] and [http] written out.
    let tcp_services: Vec<(&str, &str)> = prod
        .rules
        .iter()
        .filter(|r| r.protocol == Protocol::Tcp && matches!(r.action, Action::Service(_)))
        .map(|r| (r.name.as_str(), r.action.as_str()))
        .collect();
    assert_eq!(tcp_services, [("tcp-echo", "echo"), ("web", "http")]);
    assert!(prod.rules.iter().any(|r| r.matches(Protocol::Tcp, 80)));
    assert_eq!(prod.tcp.congestion, CongestionKind::Cubic);
    assert_eq!(prod.tcp.max_connections, 262_144);
    assert_eq!(prod.tcp.buffer_size, 256 * 1024);
    assert_eq!(
        prod.tcp.keepalive,
        Some(KeepaliveSettings {
            idle_s: 600,
            interval_s: 75,
            probes: 9
        })
    );
    assert_eq!(prod.http.body, "hello from shardnet\n");
    assert!(prod.summary().contains("tcp:       cubic"));
}

#[test]
fn kernel_section_is_checked_against_the_backend() {
    let virtio = format!("{MINIMAL}[kernel]\nenabled = true\nkind = \"virtio-user\"\n");
    let got = errors(&virtio);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0, got[0].1), (12, 8));
    assert!(got[0].2.contains("needs backend = \"dpdk\""), "{got:?}");

    let same_name = format!("{MINIMAL}[kernel]\nenabled = true\nname = \"veth-dut\"\n");
    let got = errors(&same_name);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].2.contains("is the [af_packet] interface"), "{got:?}");
    // Disabled, the names may coincide (nothing is created).
    ok(&same_name.replace("enabled = true", "enabled = false"));

    for (value, good) in [
        ("7", false),
        ("8", true),
        ("65536", true),
        ("65537", false),
        ("-1", false),
    ] {
        let text = format!("{MINIMAL}[kernel]\nenabled = true\nqueue_size = {value}\n");
        if good {
            assert_eq!(ok(&text).kernel.queue_size, value.parse::<usize>().unwrap());
        } else {
            let got = errors(&text);
            assert_eq!((got[0].0, got[0].1), (12, 14), "{got:?}");
            assert!(got[0].2.contains("out of range 8-65536"), "{got:?}");
        }
    }
    assert_eq!(
        ok(MINIMAL).kernel.queue_size,
        super::DEFAULT_KERNEL_QUEUE_SIZE
    );
}

#[test]
fn only_a_regular_file_of_at_most_a_mebibyte_is_read() {
    let message = |path: &Path| {
        let start = std::time::Instant::now();
        let e = Config::load_with(path, &two_cores()).unwrap_err();
        // Refused before reading: no FIFO wait, no endless /dev/zero.
        assert!(start.elapsed() < std::time::Duration::from_secs(2), "{e}");
        assert_eq!(e.errors.len(), 1, "{e}");
        e.errors[0].message.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        message(Path::new("/dev/zero")),
        "the config file is a character device, not a regular file; give the path of a TOML file"
    );
    assert_eq!(
        message(dir.path()),
        "the config file is a directory, not a regular file; give the path of a TOML file"
    );
    // A FIFO with no writer: a blocking open would wait for one forever.
    let fifo = dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(
        message(&fifo),
        "the config file is a FIFO, not a regular file; give the path of a TOML file"
    );
    // One byte over the cap; exactly the cap is read (and is then only a
    // TOML problem: comments are valid TOML, but no [dataplane]).
    let big = dir.path().join("big.toml");
    let mut text = "#".repeat(MAX_CONFIG_BYTES as usize - 1);
    text.push('\n');
    std::fs::write(&big, &text).unwrap();
    let e = Config::load_with(&big, &two_cores()).unwrap_err();
    assert!(e.errors[0].message.contains("missing [dataplane]"), "{e}");
    text.push('\n');
    std::fs::write(&big, &text).unwrap();
    assert_eq!(
        message(&big),
        "the config file is larger than 1 MiB, the most accepted"
    );
}

#[test]
fn the_admin_socket_and_a_public_listener() {
    let base = MINIMAL.to_owned();
    let c = ok(&format!(
        "{base}\n[metrics]\nlisten = \"127.0.0.1:9464\"\nadmin_socket = \"/run/sn/a.sock\"\n"
    ));
    assert_eq!(
        c.metrics.admin_socket,
        Some(PathBuf::from("/run/sn/a.sock"))
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.summary().contains("admin:     /run/sn/a.sock"));
    // Reading metrics from anywhere is allowed, with a warning.
    let c = ok(&format!("{base}\n[metrics]\nlisten = \"0.0.0.0:9464\"\n"));
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0]
            .message
            .starts_with("listen 0.0.0.0:9464 is not a loopback address"),
        "{:?}",
        c.warnings
    );
    let e = errors(&format!(
        "{base}\n[metrics]\nadmin_socket = \"admin.sock\"\n"
    ));
    assert_eq!(e.len(), 1);
    assert!(e[0].2.contains("not an absolute path"), "{e:?}");
    let long = format!("/{}", "a".repeat(120));
    let e = errors(&format!("{base}\n[metrics]\nadmin_socket = \"{long}\"\n"));
    assert!(e[0].2.contains("at most 107"), "{e:?}");
}

#[test]
fn service_ports_are_those_the_rules_give_the_service() {
    let text = format!(
        "{MINIMAL}
[[rule]]
name = \"first\"
protocol = \"tcp\"
ports = [8081]
service = \"drop\"

[[rule]]
name = \"web\"
protocol = \"tcp\"
ports = [\"8080-8082\", 9000, 8080]
service = \"echo\"

[[rule]]
name = \"web-udp\"
protocol = \"udp\"
ports = [7]
service = \"echo\"

[[rule]]
name = \"other\"
protocol = \"tcp\"
ports = [9001]
service = \"discard\"
"
    );
    let config = ok(&text);
    // 8081 goes to an earlier rule; 8080 is listed twice.
    assert_eq!(
        config.service_ports(Protocol::Tcp, "echo"),
        vec![8080, 8082, 9000]
    );
    assert_eq!(config.service_ports(Protocol::Udp, "echo"), vec![7]);
    assert_eq!(config.service_ports(Protocol::Tcp, "discard"), vec![9001]);
    assert!(config.service_ports(Protocol::Udp, "http").is_empty());
}

#[test]
fn local_ports_default_above_linux_ephemeral_range_and_bad_ranges_are_refused() {
    let with = |line: &str| {
        MINIMAL.replace(
            "address = \"198.18.0.2/24\"\n",
            &format!("address = \"198.18.0.2/24\"\n{line}"),
        )
    };
    assert_eq!(ok(MINIMAL).interface.local_ports, (61000, 65535));
    assert_eq!(
        ok(&with("local_ports = \"40000-40999\"\n"))
            .interface
            .local_ports,
        (40000, 40999)
    );
    assert_eq!(
        ok(&with("local_ports = \"50000\"\n")).interface.local_ports,
        (50000, 50000)
    );
    for (bad, message) in [
        ("\"\"", "is not a port or a port range"),
        ("\"62000-61000\"", "is reversed"),
        ("\"0-100\"", "cannot include port 0"),
        ("\"61000-70000\"", "out of range"),
        ("\"many\"", "is not a port or a port range"),
    ] {
        let text = with(&format!("local_ports = {bad}\n"));
        let line = text
            .lines()
            .position(|l| l.starts_with("local_ports"))
            .expect("the line")
            + 1;
        assert_errors(&text, &[(line, 15, message)]);
    }
}

#[test]
fn a_rule_on_the_stacks_own_source_ports_is_warned_about() {
    let text = MINIMAL.replace(
        "address = \"198.18.0.2/24\"\n",
        "address = \"198.18.0.2/24\"\nlocal_ports = \"50000-50099\"\n",
    ) + "\n[[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = [\"50050-50060\"]\nservice = \"echo\"\n";
    let c = ok(&text);
    assert!(
        c.warnings.iter().any(|w| w
            .message
            .contains("inside [interface] local_ports 50000-50099")),
        "{:?}",
        c.warnings
    );
    let c = ok(&text.replace("50050-50060", "8080"));
    assert!(
        !c.warnings.iter().any(|w| w.message.contains("local_ports")),
        "{:?}",
        c.warnings
    );
}

/// MINIMAL with `[interface] mtu`, then `rest`.
fn with_mtu(mtu: &str, rest: &str) -> String {
    format!("{MINIMAL}mtu = {mtu}\n{rest}")
}

#[test]
fn mtu_defaults_to_1500_and_mss_follows_it() {
    let c = ok(MINIMAL);
    assert_eq!((c.interface.mtu, c.tcp.mss), (1500, 1460));
    let c = ok(&with_mtu("9000", ""));
    assert_eq!((c.interface.mtu, c.tcp.mss), (9000, 8960));
    let c = ok(&with_mtu("576", ""));
    assert_eq!((c.interface.mtu, c.tcp.mss), (576, 536));
    // An explicit mss up to mtu - 40 is taken as written.
    let c = ok(&with_mtu(
        "9000",
        "[tcp]\nmss = 1460\n[[rule]]\nname = \"e\"\nprotocol = \"tcp\"\nports = 7\nservice = \"echo\"\n",
    ));
    assert_eq!(c.tcp.mss, 1460);
}

#[test]
fn mtu_out_of_range_is_refused_with_its_position() {
    for (mtu, message) in [
        ("575", "mtu 575 is out of range 576-9000 bytes"),
        ("9001", "mtu 9001 is out of range 576-9000 bytes"),
        ("-1", "mtu -1 is out of range 576-9000 bytes"),
    ] {
        let e = errors(&with_mtu(mtu, ""));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1), (10, 7), "{e:?}");
        assert!(e[0].2.starts_with(message), "{e:?}");
    }
}

#[test]
fn an_mss_larger_than_the_mtu_allows_is_refused() {
    let rule = "[[rule]]\nname = \"e\"\nprotocol = \"tcp\"\nports = 7\nservice = \"echo\"\n";
    let e = errors(&with_tcp("mss = 8960\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1), (11, 7), "{e:?}");
    assert_eq!(
        e[0].2,
        "mss 8960 is larger than [interface] mtu 1500 minus 40 bytes of IPv4 and TCP headers \
         (1460); raise mtu (on the NIC and its peers too) or leave mss out (it defaults to mtu - 40)"
    );
    let e = errors(&with_mtu("4000", &format!("[tcp]\nmss = 3961\n{rule}")));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].2
            .starts_with("mss 3961 is larger than [interface] mtu 4000"),
        "{e:?}"
    );
    ok(&with_mtu("4000", &format!("[tcp]\nmss = 3960\n{rule}")));
}

#[test]
fn dpdk_descriptor_counts() {
    let dpdk = |keys: &str| {
        format!(
            "[dataplane]\nbackend = \"dpdk\"\nworkers = [1]\n\n[dpdk]\nmbufs_per_worker = 8191\n\
             {keys}\n[interface]\naddress = \"198.18.0.2/24\"\n"
        )
    };
    let c = ok(&dpdk(""));
    assert_eq!((c.dpdk.rx_descriptors, c.dpdk.tx_descriptors), (1024, 1024));
    let c = ok(&dpdk("rx_descriptors = 2048\ntx_descriptors = 4096\n"));
    assert_eq!((c.dpdk.rx_descriptors, c.dpdk.tx_descriptors), (2048, 4096));
    let e = errors(&dpdk("rx_descriptors = 63\ntx_descriptors = 32769\n"));
    let messages: Vec<_> = e.iter().map(|e| (e.0, e.1, e.2.as_str())).collect();
    assert_eq!(
        messages,
        [
            (
                7,
                18,
                "rx_descriptors 63 is out of range 64-32768 per queue (the device's own limits \
                 are checked at start)"
            ),
            (
                8,
                18,
                "tx_descriptors 32769 is out of range 64-32768 per queue (the device's own \
                 limits are checked at start)"
            ),
        ]
    );
    let e = errors(&dpdk("rx_descriptors = 4096\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].2
            .starts_with("rx_descriptors 4096 is more than half of mbufs_per_worker (8191)"),
        "{e:?}"
    );
}
