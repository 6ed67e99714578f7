//! Rule reloads off the serving loop.
//!
//! A reload reads the config file and waits up to a second for the workers
//! to apply the new rules: it must not hold up `/metrics` and `/healthz`,
//! nor the control thread's signal and health watch. [`ReloadThread`] runs
//! reloads one at a time on a thread of its own, fed by a queue of one: one
//! reload runs, one more may wait (it reads the file after the running one,
//! so later requests would read the same file and are refused as busy, or
//! for SIGHUP folded into the waiting one).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;

use super::{ControlPlane, Reloaded};

/// What a reload answers: what it did, or why it changed nothing.
pub type ReloadOutcome = Result<Reloaded, String>;

/// How long [`ReloadThread::stop`] waits for a running reload.
const STOP_WAIT: Duration = Duration::from_secs(3);

struct Job {
    trigger: &'static str,
    reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// A reload is already waiting behind the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadBusy;

/// Queues reloads on the [`ReloadThread`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct ReloadQueue {
    tx: Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("trigger", &self.trigger)
            .finish()
    }
}

impl ReloadQueue {
    /// Queue a reload whose outcome is only logged (SIGHUP).
    ///
    /// # Errors
    /// [`ReloadBusy`] when one is already waiting: it reads the file after
    /// this request anyway.
    pub fn request(&self, trigger: &'static str) -> Result<(), ReloadBusy> {
        self.send(Job {
            trigger,
            reply: None,
        })
    }

    /// Queue a reload and get its outcome through the receiver (`POST
    /// /reload`). The receiver yields an error only if the reload thread
    /// stopped first.
    ///
    /// # Errors
    /// [`ReloadBusy`] when one is already waiting.
    pub fn request_with_reply(
        &self,
        trigger: &'static str,
    ) -> Result<oneshot::Receiver<ReloadOutcome>, ReloadBusy> {
        let (reply, outcome) = oneshot::channel();
        self.send(Job {
            trigger,
            reply: Some(reply),
        })?;
        Ok(outcome)
    }

    fn send(&self, job: Job) -> Result<(), ReloadBusy> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            // Disconnected: stopping; nobody will reload any more.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(ReloadBusy),
        }
    }
}

/// The thread that runs reloads.
#[derive(Debug)]
pub struct ReloadThread {
    queue: Option<ReloadQueue>,
    thread: Option<JoinHandle<()>>,
}

impl ReloadThread {
    /// Start the thread (it inherits the caller's core affinity).
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(plane: Arc<ControlPlane>) -> anyhow::Result<ReloadThread> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(1);
        let thread = std::thread::Builder::new()
            .name("shardnet-reload".into())
            .spawn(move || {
                for job in rx {
                    // Logged by reload itself.
                    let outcome = plane.reload(job.trigger);
                    if let Some(reply) = job.reply {
                        // The asker may have given up: nothing to do.
                        let _ = reply.send(outcome);
                    }
                }
            })
            .context("cannot spawn the reload thread")?;
        Ok(ReloadThread {
            queue: Some(ReloadQueue { tx }),
            thread: Some(thread),
        })
    }

    /// A handle to queue reloads with.
    pub fn queue(&self) -> ReloadQueue {
        match &self.queue {
            Some(queue) => queue.clone(),
            // Only `stop` takes it, and it consumes self.
            None => ReloadQueue {
                tx: crossbeam_channel::bounded(0).0,
            },
        }
    }

    /// Take no more reloads and wait (a few seconds at most) for a running
    /// one; a reload stuck longer is left behind, logged.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        // Closes the queue once every other handle is gone too (the HTTP
        // server's go when it stops, before this).
        self.queue = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let start = Instant::now();
        while !thread.is_finished() && start.elapsed() < STOP_WAIT {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            if thread.join().is_err() {
                tracing::error!("the reload thread panicked");
            }
        } else {
            tracing::warn!(
                "a rules reload is still running after {STOP_WAIT:?}; not waiting for it"
            );
        }
    }
}

impl Drop for ReloadThread {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::tests::{plane_for, BASE};

    #[test]
    fn one_reload_runs_one_waits_and_more_are_busy() {
        let (file, plane) = plane_for(BASE, 0);
        let plane = Arc::new(plane);
        let reloads = ReloadThread::start(plane.clone()).unwrap();
        let queue = reloads.queue();
        // Hold the reload inside the file read: a FIFO is refused without
        // blocking now, so hold the slots lock instead, as a slow reload
        // would (publishing takes it).
        let guard = plane.slots.lock().unwrap();
        let first = queue.request_with_reply("test").unwrap();
        // The thread takes the first job off the queue, then blocks.
        let start = Instant::now();
        let second = loop {
            match queue.request_with_reply("test") {
                Ok(second) => break second,
                Err(ReloadBusy) => {
                    assert!(start.elapsed() < Duration::from_secs(5));
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        assert_eq!(queue.request("SIGHUP"), Err(ReloadBusy));
        drop(guard);
        assert_eq!(first.blocking_recv().unwrap().unwrap().generation, 2);
        assert_eq!(second.blocking_recv().unwrap().unwrap().generation, 3);
        drop(file);
        drop(queue);
        reloads.stop();
    }
}
