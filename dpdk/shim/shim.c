/* One-line wrappers; see shim.h. */
#include <string.h>

#include "shim.h"

uint16_t rte_shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                                   struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{ return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts); }

uint16_t rte_shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                                   struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{ return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts); }

uint16_t rte_shim_rte_eth_tx_prepare(uint16_t port_id, uint16_t queue_id,
                                     struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{ return rte_eth_tx_prepare(port_id, queue_id, tx_pkts, nb_pkts); }

struct rte_mbuf *rte_shim_rte_pktmbuf_alloc(struct rte_mempool *mp)
{ return rte_pktmbuf_alloc(mp); }

void rte_shim_rte_pktmbuf_free(struct rte_mbuf *m)
{ rte_pktmbuf_free(m); }

int rte_shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                                    unsigned int count)
{ return rte_pktmbuf_alloc_bulk(mp, mbufs, count); }

void *rte_shim_rte_pktmbuf_mtod(struct rte_mbuf *m)
{ return rte_pktmbuf_mtod(m, void *); }

uint16_t rte_shim_rte_pktmbuf_headroom(const struct rte_mbuf *m)
{ return rte_pktmbuf_headroom(m); }

uint16_t rte_shim_rte_pktmbuf_tailroom(const struct rte_mbuf *m)
{ return rte_pktmbuf_tailroom(m); }

uint16_t rte_shim_rte_pktmbuf_data_room_size(struct rte_mempool *mp)
{ return rte_pktmbuf_data_room_size(mp); }

char *rte_shim_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{ return rte_pktmbuf_append(m, len); }

int rte_shim_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{ return rte_pktmbuf_trim(m, len); }

char *rte_shim_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{ return rte_pktmbuf_prepend(m, len); }

char *rte_shim_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{ return rte_pktmbuf_adj(m, len); }

void rte_shim_rte_pktmbuf_reset(struct rte_mbuf *m)
{ rte_pktmbuf_reset(m); }

int rte_shim_rte_pktmbuf_is_contiguous(const struct rte_mbuf *m)
{ return rte_pktmbuf_is_contiguous(m); }

uint16_t rte_shim_rte_mbuf_refcnt_read(const struct rte_mbuf *m)
{ return rte_mbuf_refcnt_read(m); }

uint32_t rte_shim_mbuf_hash_rss(const struct rte_mbuf *m)
{ return m->hash.rss; }

uint64_t rte_shim_mbuf_l2_len(const struct rte_mbuf *m)
{ return m->l2_len; }

int rte_shim_eth_link_get_nowait(uint16_t port_id, uint32_t *speed, uint8_t *up,
                                 uint8_t *full_duplex)
{
    struct rte_eth_link link;
    int rc;

    memset(&link, 0, sizeof(link));
    rc = rte_eth_link_get_nowait(port_id, &link);
    if (rc != 0)
        return rc;
    *speed = link.link_speed;
    *up = link.link_status == RTE_ETH_LINK_UP;
    *full_duplex = link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
    return 0;
}

uint64_t rte_shim_mbuf_l3_len(const struct rte_mbuf *m)
{ return m->l3_len; }

void rte_shim_mbuf_set_tx_lens(struct rte_mbuf *m, uint64_t l2_len, uint64_t l3_len)
{ m->l2_len = l2_len; m->l3_len = l3_len; }

void rte_shim_mbuf_set_tso(struct rte_mbuf *m, uint64_t l4_len, uint64_t tso_segsz)
{ m->l4_len = l4_len; m->tso_segsz = tso_segsz; }

uint64_t rte_shim_mbuf_l4_len(const struct rte_mbuf *m)
{ return m->l4_len; }

uint64_t rte_shim_mbuf_tso_segsz(const struct rte_mbuf *m)
{ return m->tso_segsz; }

struct rte_mbuf *rte_shim_mbuf_next(const struct rte_mbuf *m)
{ return m->next; }

unsigned int rte_shim_rte_lcore_id(void)
{ return rte_lcore_id(); }

int rte_shim_rte_errno(void)
{ return rte_errno; }

void rte_shim_set_rte_errno(int value)
{ rte_errno = value; }

void rte_shim_rte_prefetch0(const volatile void *p)
{ rte_prefetch0(p); }

uint64_t rte_shim_rte_rdtsc(void)
{ return rte_rdtsc(); }
