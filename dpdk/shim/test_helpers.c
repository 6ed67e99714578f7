/*
 * Test-only C helpers, compiled apart from the shim into libdpdk_shim_test.a and
 * linked only by dpdk-sys's tests. They read the DPDK headers directly, so the
 * tests compare what the bindings export with what C code sees, by name.
 */
#include <stddef.h>
#include <stdint.h>
#include <rte_config.h>
#include <rte_version.h>
#include <rte_lcore.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ether.h>
#include <rte_ethdev.h>
#include <rte_errno.h>

struct shim_test_constant {
    const char *name;
    int64_t value;
};

#define ENTRY(name) { #name, (int64_t)(name) },

static const struct shim_test_constant constants[] = {
    ENTRY(RTE_MAX_LCORE)
    ENTRY(RTE_MAX_ETHPORTS)
    ENTRY(RTE_PKTMBUF_HEADROOM)
    ENTRY(RTE_MBUF_DEFAULT_DATAROOM)
    ENTRY(RTE_MBUF_DEFAULT_BUF_SIZE)
    ENTRY(RTE_MEMPOOL_CACHE_MAX_SIZE)
    ENTRY(RTE_ETH_XSTATS_NAME_SIZE)
    ENTRY(RTE_ETHER_ADDR_LEN)
    ENTRY(SOCKET_ID_ANY)
    ENTRY(RTE_VERSION)
    ENTRY(RTE_ETH_RSS_IPV4)
    ENTRY(RTE_ETH_RSS_FRAG_IPV4)
    ENTRY(RTE_ETH_RSS_NONFRAG_IPV4_TCP)
    ENTRY(RTE_ETH_RSS_NONFRAG_IPV4_UDP)
    ENTRY(RTE_ETH_RSS_NONFRAG_IPV4_OTHER)
    ENTRY(RTE_ETH_RSS_IPV6)
    ENTRY(RTE_ETH_RSS_NONFRAG_IPV6_TCP)
    ENTRY(RTE_ETH_RSS_NONFRAG_IPV6_UDP)
    ENTRY(RTE_ETH_RSS_IP)
    ENTRY(RTE_ETH_RSS_TCP)
    ENTRY(RTE_ETH_RSS_UDP)
    ENTRY(RTE_ETH_RSS_L3_SRC_ONLY)
    ENTRY(RTE_ETH_RSS_L3_DST_ONLY)
    ENTRY(RTE_ETH_RSS_L4_SRC_ONLY)
    ENTRY(RTE_ETH_RSS_L4_DST_ONLY)
    ENTRY(RTE_ETH_RETA_GROUP_SIZE)
    ENTRY(RTE_ETH_RSS_RETA_SIZE_64)
    ENTRY(RTE_ETH_RSS_RETA_SIZE_128)
    ENTRY(RTE_ETH_RSS_RETA_SIZE_256)
    ENTRY(RTE_ETH_RSS_RETA_SIZE_512)
    ENTRY(RTE_ETH_RX_OFFLOAD_IPV4_CKSUM)
    ENTRY(RTE_ETH_RX_OFFLOAD_UDP_CKSUM)
    ENTRY(RTE_ETH_RX_OFFLOAD_TCP_CKSUM)
    ENTRY(RTE_ETH_RX_OFFLOAD_CHECKSUM)
    ENTRY(RTE_ETH_RX_OFFLOAD_RSS_HASH)
    ENTRY(RTE_ETH_RX_OFFLOAD_SCATTER)
    ENTRY(RTE_ETH_TX_OFFLOAD_IPV4_CKSUM)
    ENTRY(RTE_ETH_TX_OFFLOAD_UDP_CKSUM)
    ENTRY(RTE_ETH_TX_OFFLOAD_TCP_CKSUM)
    ENTRY(RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
    ENTRY(RTE_ETH_TX_OFFLOAD_MULTI_SEGS)
    ENTRY(RTE_ETH_TX_OFFLOAD_TCP_TSO)
    ENTRY(RTE_MBUF_F_RX_RSS_HASH)
    ENTRY(RTE_MBUF_F_RX_IP_CKSUM_MASK)
    ENTRY(RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN)
    ENTRY(RTE_MBUF_F_RX_IP_CKSUM_BAD)
    ENTRY(RTE_MBUF_F_RX_IP_CKSUM_GOOD)
    ENTRY(RTE_MBUF_F_RX_IP_CKSUM_NONE)
    ENTRY(RTE_MBUF_F_RX_L4_CKSUM_MASK)
    ENTRY(RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN)
    ENTRY(RTE_MBUF_F_RX_L4_CKSUM_BAD)
    ENTRY(RTE_MBUF_F_RX_L4_CKSUM_GOOD)
    ENTRY(RTE_MBUF_F_RX_L4_CKSUM_NONE)
    ENTRY(RTE_MBUF_F_TX_IPV4)
    ENTRY(RTE_MBUF_F_TX_IP_CKSUM)
    ENTRY(RTE_MBUF_F_TX_L4_NO_CKSUM)
    ENTRY(RTE_MBUF_F_TX_TCP_CKSUM)
    ENTRY(RTE_MBUF_F_TX_UDP_CKSUM)
    ENTRY(RTE_MBUF_F_TX_L4_MASK)
    ENTRY(RTE_MBUF_F_TX_TCP_SEG)
};

/* The number of entries of the constant table. */
size_t shim_test_constant_count(void)
{ return sizeof(constants) / sizeof(constants[0]); }

/* Entry `i` of the constant table: its macro name (NUL-terminated) and value. */
const char *shim_test_constant(size_t i, int64_t *value)
{
    if (i >= shim_test_constant_count())
        return NULL;
    *value = constants[i].value;
    return constants[i].name;
}

/* Offsets and sizes of the mbuf fields the Rust side reads directly. */
size_t shim_test_mbuf_offset_buf_addr(void) { return offsetof(struct rte_mbuf, buf_addr); }
size_t shim_test_mbuf_offset_data_off(void) { return offsetof(struct rte_mbuf, data_off); }
size_t shim_test_mbuf_offset_nb_segs(void) { return offsetof(struct rte_mbuf, nb_segs); }
size_t shim_test_mbuf_offset_port(void) { return offsetof(struct rte_mbuf, port); }
size_t shim_test_mbuf_offset_ol_flags(void) { return offsetof(struct rte_mbuf, ol_flags); }
size_t shim_test_mbuf_offset_pkt_len(void) { return offsetof(struct rte_mbuf, pkt_len); }
size_t shim_test_mbuf_offset_data_len(void) { return offsetof(struct rte_mbuf, data_len); }
size_t shim_test_mbuf_offset_buf_len(void) { return offsetof(struct rte_mbuf, buf_len); }
size_t shim_test_mbuf_offset_pool(void) { return offsetof(struct rte_mbuf, pool); }
size_t shim_test_mbuf_size(void) { return sizeof(struct rte_mbuf); }

/* Header behaviour, computed in C without the shim, for the tests to compare. */
void *shim_test_mtod_expected(struct rte_mbuf *m)
{ return (char *)m->buf_addr + m->data_off; }
uint32_t shim_test_hash_rss_set(struct rte_mbuf *m, uint32_t v)
{ m->hash.rss = v; return v; }
unsigned int shim_test_lcore_id(void) { return rte_lcore_id(); }
void shim_test_set_errno(int v) { rte_errno = v; }
int shim_test_get_errno(void) { return rte_errno; }
uint64_t shim_test_tx_offload(const struct rte_mbuf *m) { return m->tx_offload; }
