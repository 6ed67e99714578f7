//! The async services' tasks ([`crate::rt`], [`crate::rt::net`]): the
//! worker's executor, created at the first round with the worker's clock,
//! which spawns the services' main tasks, and the round itself,
//! [`Stack::run_tasks`], run between RX bursts: the executor's round inside
//! the worker's async context, resets for the connections of tasks that
//! panicked, the active opens the tasks asked for (`client.rs`), the
//! datagrams the tasks' UDP sockets sent (their next hops resolved, into
//! the outbox), then the end of the table's batch, which sends what the
//! tasks wrote and their SYNs.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use hashbrown::HashMap;

use super::{Egress, Stack};
use crate::config::ServiceId;
use crate::rt::net::Net;
use crate::rt::Executor;
use crate::service::{AsyncMain, AsyncParts};
use crate::tcp::table::TcpTable;

/// A worker's executor and async context.
pub(super) struct Tasks {
    pub(super) net: Rc<Net>,
    /// Created at the first round, with the worker's clock.
    executor: Option<Executor>,
    /// The main tasks, until that first round spawns them.
    mains: Vec<AsyncMain>,
    /// Next hops the tasks' datagrams wait for, with when an ARP request
    /// was last sent for each (see `Stack::send_task_datagrams`).
    pub(super) arp_asked: HashMap<Ipv4Addr, u64>,
    /// The service of the tasks' active opens.
    dialer: ServiceId,
}

impl Tasks {
    pub(super) fn new(table: Rc<RefCell<TcpTable>>, parts: AsyncParts) -> Tasks {
        Tasks {
            net: Net::new(table, parts.reactor),
            executor: None,
            mains: parts.mains,
            arp_asked: HashMap::new(),
            dialer: parts.dialer,
        }
    }
}

impl Stack {
    /// Run the async services' tasks that are ready at `now_ns` (woken by
    /// the segments processed so far, or by a timer), then send what they
    /// wrote to `egress`. Cheap when no task is ready. The first call
    /// creates the executor and spawns the services' main tasks.
    pub fn run_tasks<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        let Some(tasks) = &mut self.tasks else {
            return;
        };
        let executor = tasks.executor.get_or_insert_with(|| Executor::new(now_ns));
        for main in tasks.mains.drain(..) {
            drop(executor.spawn(main));
        }
        let ready = executor.has_ready() || executor.next_deadline().is_some_and(|at| at <= now_ns);
        if ready {
            tasks.net.enter(now_ns, || executor.run(now_ns));
            for task in executor.take_panicked() {
                tasks.net.abort_owned_by(task);
            }
            let stats = executor.stats();
            self.counters.async_tasks.set(stats.tasks as u64);
            self.counters.async_task_panics.set(stats.panics);
        }
        // Datagrams sent in the round, or waiting for ARP.
        let sends = tasks.net.reactor().borrow().udp().has_sends();
        // Active opens asked for in the round, or waiting for ARP.
        let dials = tasks
            .net
            .has_dials()
            .then(|| (tasks.net.clone(), tasks.dialer));
        if !ready && !sends && dials.is_none() {
            return;
        }
        if let Some((net, service)) = dials {
            self.start_dials(&net, service, now_ns, egress);
        }
        if sends {
            self.send_task_datagrams(now_ns);
        }
        self.end_burst(now_ns, egress);
    }

    /// The async services' executor, once the first round created it.
    pub fn executor(&self) -> Option<&Executor> {
        self.tasks.as_ref()?.executor.as_ref()
    }

    /// The async services' context, if there are any.
    pub fn net(&self) -> Option<&Rc<Net>> {
        self.tasks.as_ref().map(|t| &t.net)
    }
}
