/*
 * The C shim: declarations of one-line wrappers around DPDK's `static inline`
 * functions and function-like macros (which have no symbol to link against),
 * plus the macro constants of constants.h as `static const` variables.
 *
 * Every wrapper is named `rte_shim_<what it wraps>`; the Rust crate re-exports
 * it under DPDK's own name.
 */
#ifndef SHARDNET_DPDK_SHIM_H
#define SHARDNET_DPDK_SHIM_H

#include <stdint.h>

#include <rte_config.h>
#include <rte_version.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ether.h>
#include <rte_ethdev.h>

#if RTE_VERSION < RTE_VERSION_NUM(22, 11, 0, 0)
#error "shardnet's dpdk-sys needs DPDK 22.11 or later"
#endif

#define SHIM_CONST(type, name) static const type rte_shim_const_##name = (name);
#include "constants.h"
#undef SHIM_CONST

/* ethdev fast path (rte_ethdev.h) */
uint16_t rte_shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                                   struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t rte_shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                                   struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
uint16_t rte_shim_rte_eth_tx_prepare(uint16_t port_id, uint16_t queue_id,
                                     struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* mbuf (rte_mbuf.h) */
struct rte_mbuf *rte_shim_rte_pktmbuf_alloc(struct rte_mempool *mp);
void rte_shim_rte_pktmbuf_free(struct rte_mbuf *m);
int rte_shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                                    unsigned int count);
void *rte_shim_rte_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t rte_shim_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t rte_shim_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t rte_shim_rte_pktmbuf_data_room_size(struct rte_mempool *mp);
char *rte_shim_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int rte_shim_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
char *rte_shim_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *rte_shim_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
void rte_shim_rte_pktmbuf_reset(struct rte_mbuf *m);
int rte_shim_rte_pktmbuf_is_contiguous(const struct rte_mbuf *m);
uint16_t rte_shim_rte_mbuf_refcnt_read(const struct rte_mbuf *m);

/* mbuf fields whose place in struct rte_mbuf differs between DPDK releases or
 * that sit in anonymous unions and bitfields */
uint32_t rte_shim_mbuf_hash_rss(const struct rte_mbuf *m);
uint64_t rte_shim_mbuf_l2_len(const struct rte_mbuf *m);

/* rte_eth_link_get_nowait, its fields decoded: they are bitfields, and from
 * DPDK 24.x they sit in an anonymous union (with an atomic 64-bit view) */
int rte_shim_eth_link_get_nowait(uint16_t port_id, uint32_t *speed, uint8_t *up,
                                 uint8_t *full_duplex);
uint64_t rte_shim_mbuf_l3_len(const struct rte_mbuf *m);
void rte_shim_mbuf_set_tx_lens(struct rte_mbuf *m, uint64_t l2_len, uint64_t l3_len);
void rte_shim_mbuf_set_tso(struct rte_mbuf *m, uint64_t l4_len, uint64_t tso_segsz);
uint64_t rte_shim_mbuf_l4_len(const struct rte_mbuf *m);
uint64_t rte_shim_mbuf_tso_segsz(const struct rte_mbuf *m);
struct rte_mbuf *rte_shim_mbuf_next(const struct rte_mbuf *m);

/* EAL (rte_lcore.h, rte_errno.h, rte_cycles.h, rte_prefetch.h) */
unsigned int rte_shim_rte_lcore_id(void);
int rte_shim_rte_errno(void);
void rte_shim_set_rte_errno(int value);
void rte_shim_rte_prefetch0(const volatile void *p);
uint64_t rte_shim_rte_rdtsc(void);

#endif
