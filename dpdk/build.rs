//! Builds dpdk-sys against the system's DPDK: pkg-config for the flags,
//! bindgen for the bindings, cc for the C shim (and the test-only C helpers).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest DPDK release the shim is written for.
const MIN_VERSION: &str = "22.11";

/// Names the shim's constants carry in C; the bindings drop the prefix, so each
/// constant appears in Rust under the DPDK macro's own name.
const CONST_PREFIX: &str = "rte_shim_const_";

/// The cfgs set from the DPDK release found: `(name, first release, what it
/// stands for)`.
const VERSION_CFGS: &[(&str, (u32, u32), &str)] = &[
    (
        "dpdk_mbuf_field_unions",
        (24, 3),
        "struct rte_mbuf's rearm_data and rx_descriptor_fields1 are anonymous unions \
         (no RTE_MARKER fields): data_off, nb_segs, port, pkt_len, data_len and buf_len \
         sit inside them",
    ),
    (
        "dpdk_rss_key_len_checked",
        (23, 11),
        "rte_eth_dev_configure refuses an RSS key whose rss_key_len is not the \
         device's hash_key_size",
    ),
];

/// `(year, month)` of a pkg-config version such as `24.11.3` or `22.11.11`.
fn release_of(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(year)), Some(Ok(month))) => (year, month),
        _ => panic!("pkg-config reports DPDK version {version:?}, not YEAR.MONTH[.PATCH]"),
    }
}

#[derive(Debug)]
struct StripConstPrefix;

impl bindgen::callbacks::ParseCallbacks for StripConstPrefix {
    fn item_name(&self, item: bindgen::callbacks::ItemInfo) -> Option<String> {
        item.name.strip_prefix(CONST_PREFIX).map(str::to_owned)
    }
}

fn pkg_config_output(args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run pkg-config: {e}; install pkg-config"));
    if !out.status.success() {
        panic!(
            "pkg-config {} failed: {}; install libdpdk-dev ({MIN_VERSION} or later)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config printed non-UTF-8")
}

fn main() {
    println!("cargo:rerun-if-changed=shim");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // Link flags: the shared libraries (Debian and most distributions ship them).
    let lib = pkg_config::Config::new()
        .atleast_version(MIN_VERSION)
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!("DPDK {MIN_VERSION} or later not found through pkg-config: {e}")
        });

    // What moved between the releases the crate supports, as cfgs of this
    // crate (its tests included): the Rust side then names each field where
    // this release's bindings have it.
    let release = release_of(&lib.version);
    for (cfg, since, _what) in VERSION_CFGS {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
        if release >= *since {
            println!("cargo:rustc-cfg={cfg}");
        }
    }

    // Compile flags exactly as DPDK states them: they carry `-include
    // rte_config.h` and an `-march` that the inline functions need.
    let cflags: Vec<String> = pkg_config_output(&["--cflags", "libdpdk"])
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let shim_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("shim");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());

    // The shim, linked into every user of the crate.
    let mut shim = cc::Build::new();
    shim.file(shim_dir.join("shim.c"))
        .include(&shim_dir)
        .opt_level(3);
    for flag in &cflags {
        shim.flag(flag);
    }
    shim.compile("dpdk_shim");

    // Test-only helpers: built as a separate archive that only the tests name in
    // a #[link] attribute, so nothing outside the tests links it.
    let mut helpers = cc::Build::new();
    helpers
        .file(shim_dir.join("test_helpers.c"))
        .cargo_metadata(false);
    for flag in &cflags {
        helpers.flag(flag);
    }
    helpers.compile("dpdk_shim_test");

    let bindings = bindgen::Builder::default()
        .header(shim_dir.join("shim.h").to_string_lossy())
        .clang_args(&cflags)
        .clang_arg(format!("-I{}", shim_dir.display()))
        .parse_callbacks(Box::new(StripConstPrefix))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(true)
        .allowlist_function("rte_shim_.*")
        .allowlist_function("rte_eal_.*")
        .allowlist_function("rte_eth_.*")
        .allowlist_function("rte_pktmbuf_.*")
        .allowlist_function("rte_mempool_.*")
        .allowlist_function("rte_lcore_.*")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_socket_count")
        .allowlist_function("rte_get_tsc_hz")
        .allowlist_function("rte_get_main_lcore")
        .allowlist_function("rte_get_next_lcore")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_mempool")
        .allowlist_type("rte_eth_.*")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("lcore_function_t")
        .allowlist_var(format!("{CONST_PREFIX}.*"))
        .allowlist_var("RTE_ETH_NAME_MAX_LEN")
        .generate_comments(true)
        .generate()
        .expect("bindgen failed on dpdk/shim/shim.h");
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("cannot write bindings.rs");

    // Where EAL looks for its driver plugins: `$libdir/dpdk/pmds-<ABI>` on
    // distribution builds. Only informational (EAL has it built in); exported
    // so tools and error messages can name it.
    let pmd_dir = lib
        .link_paths
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir.join("dpdk")).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pmds-"))
        })
        .unwrap_or_default();
    println!("cargo:rustc-env=DPDK_SYS_PMD_DIR={}", pmd_dir.display());
    println!("cargo:rustc-env=DPDK_SYS_VERSION={}", lib.version);
    println!("cargo:pmd_dir={}", pmd_dir.display());
    println!("cargo:version={}", lib.version);
    let _: &Path = &out_dir;
}
