/*
 * The DPDK macro constants that the bindings export, one per line:
 * SHIM_CONST(C type, DPDK macro name).
 *
 * Many of them are written with RTE_BIT64() or other function-like macros that
 * bindgen cannot expand, so shim.h turns each into a `static const` variable
 * that clang evaluates and bindgen then emits as a Rust `pub const` under the
 * macro's own name. Listing each name once here (an X-macro) means the value and
 * the name can never be paired wrongly by hand.
 */

/* Build configuration. */
SHIM_CONST(uint32_t, RTE_MAX_LCORE)
SHIM_CONST(uint32_t, RTE_MAX_ETHPORTS)
SHIM_CONST(uint32_t, RTE_PKTMBUF_HEADROOM)
SHIM_CONST(uint32_t, RTE_MBUF_DEFAULT_DATAROOM)
SHIM_CONST(uint32_t, RTE_MBUF_DEFAULT_BUF_SIZE)
SHIM_CONST(uint32_t, RTE_MEMPOOL_CACHE_MAX_SIZE)
SHIM_CONST(uint32_t, RTE_ETH_XSTATS_NAME_SIZE)
SHIM_CONST(uint32_t, RTE_ETHER_ADDR_LEN)
SHIM_CONST(int32_t, SOCKET_ID_ANY)
SHIM_CONST(uint32_t, RTE_VERSION)

/* RSS hash types (struct rte_eth_rss_conf.rss_hf). */
SHIM_CONST(uint64_t, RTE_ETH_RSS_IPV4)
SHIM_CONST(uint64_t, RTE_ETH_RSS_FRAG_IPV4)
SHIM_CONST(uint64_t, RTE_ETH_RSS_NONFRAG_IPV4_TCP)
SHIM_CONST(uint64_t, RTE_ETH_RSS_NONFRAG_IPV4_UDP)
SHIM_CONST(uint64_t, RTE_ETH_RSS_NONFRAG_IPV4_OTHER)
SHIM_CONST(uint64_t, RTE_ETH_RSS_IPV6)
SHIM_CONST(uint64_t, RTE_ETH_RSS_NONFRAG_IPV6_TCP)
SHIM_CONST(uint64_t, RTE_ETH_RSS_NONFRAG_IPV6_UDP)
SHIM_CONST(uint64_t, RTE_ETH_RSS_IP)
SHIM_CONST(uint64_t, RTE_ETH_RSS_TCP)
SHIM_CONST(uint64_t, RTE_ETH_RSS_UDP)
/* Modifiers that restrict a hash type to one side of the flow. */
SHIM_CONST(uint64_t, RTE_ETH_RSS_L3_SRC_ONLY)
SHIM_CONST(uint64_t, RTE_ETH_RSS_L3_DST_ONLY)
SHIM_CONST(uint64_t, RTE_ETH_RSS_L4_SRC_ONLY)
SHIM_CONST(uint64_t, RTE_ETH_RSS_L4_DST_ONLY)

/* RSS redirection table (rte_eth_dev_rss_reta_update/_query): entries come in
 * groups of 64 (struct rte_eth_rss_reta_entry64); common table sizes. */
SHIM_CONST(uint32_t, RTE_ETH_RETA_GROUP_SIZE)
SHIM_CONST(uint32_t, RTE_ETH_RSS_RETA_SIZE_64)
SHIM_CONST(uint32_t, RTE_ETH_RSS_RETA_SIZE_128)
SHIM_CONST(uint32_t, RTE_ETH_RSS_RETA_SIZE_256)
SHIM_CONST(uint32_t, RTE_ETH_RSS_RETA_SIZE_512)

/* Device RX offload capabilities and requests. */
SHIM_CONST(uint64_t, RTE_ETH_RX_OFFLOAD_IPV4_CKSUM)
SHIM_CONST(uint64_t, RTE_ETH_RX_OFFLOAD_UDP_CKSUM)
SHIM_CONST(uint64_t, RTE_ETH_RX_OFFLOAD_TCP_CKSUM)
SHIM_CONST(uint64_t, RTE_ETH_RX_OFFLOAD_CHECKSUM)
SHIM_CONST(uint64_t, RTE_ETH_RX_OFFLOAD_RSS_HASH)
SHIM_CONST(uint64_t, RTE_ETH_RX_OFFLOAD_SCATTER)

/* Device TX offload capabilities and requests. */
SHIM_CONST(uint64_t, RTE_ETH_TX_OFFLOAD_IPV4_CKSUM)
SHIM_CONST(uint64_t, RTE_ETH_TX_OFFLOAD_UDP_CKSUM)
SHIM_CONST(uint64_t, RTE_ETH_TX_OFFLOAD_TCP_CKSUM)
SHIM_CONST(uint64_t, RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
SHIM_CONST(uint64_t, RTE_ETH_TX_OFFLOAD_MULTI_SEGS)
SHIM_CONST(uint64_t, RTE_ETH_TX_OFFLOAD_TCP_TSO)

/* Per-packet RX flags (rte_mbuf.ol_flags). */
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_RSS_HASH)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_IP_CKSUM_MASK)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_IP_CKSUM_BAD)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_IP_CKSUM_GOOD)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_IP_CKSUM_NONE)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_L4_CKSUM_MASK)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_L4_CKSUM_BAD)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_L4_CKSUM_GOOD)
SHIM_CONST(uint64_t, RTE_MBUF_F_RX_L4_CKSUM_NONE)

/* Per-packet TX flags (rte_mbuf.ol_flags). */
SHIM_CONST(uint64_t, RTE_MBUF_F_TX_IPV4)
SHIM_CONST(uint64_t, RTE_MBUF_F_TX_IP_CKSUM)
SHIM_CONST(uint64_t, RTE_MBUF_F_TX_L4_NO_CKSUM)
SHIM_CONST(uint64_t, RTE_MBUF_F_TX_TCP_CKSUM)
SHIM_CONST(uint64_t, RTE_MBUF_F_TX_UDP_CKSUM)
SHIM_CONST(uint64_t, RTE_MBUF_F_TX_L4_MASK)
SHIM_CONST(uint64_t, RTE_MBUF_F_TX_TCP_SEG)
