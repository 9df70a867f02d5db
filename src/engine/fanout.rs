//! The one bounded fan-out: many items (hosts, directory accounts, open rotations, heartbeat
//! checks), at most `concurrency` at once, each item's blocking work (SSH, LDAP binds driven
//! from blocking threads, SQLite) on tokio's blocking pool. Host rotation and recovery
//! (`driver`), directories (`directory`) and `ops::verify` all run through [`run`], so the
//! rules below are written once:
//!
//! - items start in the order given: a permit is taken before an item's task exists;
//! - the first `canary` items run as a batch of their own, before the rest;
//! - before an item starts, the stop flag and the [`Breaker`] are asked; an item that may not
//!   start gets [`Work::skip`] (a stop is counted by the breaker as an interrupt, so every
//!   later item is skipped `Interrupted` too), and work in flight always finishes;
//! - an item whose worker panicked gets [`Work::panicked`] from a receipt taken before the
//!   item moved to its worker: a panic never takes the run down nor makes an item vanish;
//! - each finished item is reported to the breaker under its [`Work::name`] (a host, or an
//!   account of a directory: a directory is one target, so its accounts are counted apart).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::task::JoinError;

use super::blast::{Breaker, FailureLimit, Launch, SkipReason};

/// How many items at once, which first, when to stop launching.
#[derive(Clone)]
pub struct Limits {
    pub concurrency: usize,
    /// The first this many items run as a batch; if one fails, nothing else starts.
    pub canary: usize,
    /// Failed items allowed before no new item starts.
    pub max_failures: FailureLimit,
    /// Once set, no new item starts; items in flight finish.
    pub stop: Arc<AtomicBool>,
}

impl Limits {
    /// `concurrency` at once, no canary, no failure limit, never stopped from outside.
    pub fn new(concurrency: usize) -> Limits {
        Limits {
            concurrency,
            canary: 0,
            max_failures: FailureLimit::Unlimited,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What one kind of fan-out does with its items.
pub trait Work: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;
    /// What answers for an item whose worker panicked (its credentials, say), taken before
    /// the item moves to its worker.
    type Receipt: Send + 'static;

    /// The breaker's name for the item (a host, an account).
    fn name(&self, item: &Self::Item) -> String;
    fn receipt(&self, item: &Self::Item) -> Self::Receipt;
    /// The item's blocking work, on the blocking pool.
    fn run(&self, item: Self::Item) -> Self::Output;
    /// The item was not started (stop, canary failed, failure limit reached).
    fn skip(&self, item: Self::Item, reason: SkipReason, detail: &str) -> Self::Output;
    fn panicked(&self, receipt: Self::Receipt, panic: &JoinError) -> Self::Output;
    /// Whether the item counts as failed for the breaker.
    fn failed(&self, output: &Self::Output) -> bool;
}

/// Runs every item; returns one output per item, in the order given. Never fails as a whole.
pub async fn run<W: Work>(
    work: Arc<W>,
    mut items: Vec<W::Item>,
    limits: &Limits,
) -> Vec<W::Output> {
    let breaker = Arc::new(Mutex::new(Breaker::new(limits.max_failures, items.len())));
    let rest = items.split_off(limits.canary.min(items.len()));
    let mut outputs = Vec::with_capacity(items.len() + rest.len());
    for (batch, canary) in [(items, true), (rest, false)] {
        outputs.extend(run_batch(&work, batch, canary, &breaker, limits).await);
    }
    outputs
}

/// One batch, run concurrently under the shared breaker.
async fn run_batch<W: Work>(
    work: &Arc<W>,
    items: Vec<W::Item>,
    canary: bool,
    breaker: &Arc<Mutex<Breaker>>,
    limits: &Limits,
) -> Vec<W::Output> {
    let semaphore = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(items.len());
    for item in items {
        // The permit is taken here, in the given order, before the task exists: items start
        // in that order (whatever order the runtime polls tasks in), and the breaker and the
        // stop flag are asked at that moment.
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let (work, breaker, stop) = (work.clone(), breaker.clone(), limits.stop.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let launch = {
                // A poisoned lock means a panic while counting, which cannot happen in the
                // few lines that hold it; keep counting with whatever state it has.
                let mut b = breaker.lock().unwrap_or_else(|p| p.into_inner());
                if stop.load(Ordering::SeqCst) {
                    b.interrupt();
                }
                b.may_launch()
            };
            if let Launch::Skip(reason, detail) = launch {
                return work.skip(item, reason, &detail);
            }
            let name = work.name(&item);
            let receipt = work.receipt(&item);
            let worker = work.clone();
            let output = tokio::task::spawn_blocking(move || worker.run(item))
                .await
                .unwrap_or_else(|panic| work.panicked(receipt, &panic));
            let failed = work.failed(&output);
            breaker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .host_finished(&name, failed, canary);
            output
        }));
    }
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        // Task bodies catch their worker's panic (above); a JoinError here would mean the
        // runtime is shutting down, which only happens after this function returns.
        outputs.push(task.await.expect("fan-out task joins"));
    }
    outputs
}

/// A worker's panic in words, for a result: cut short, since its message may quote a
/// target's bytes (reports escape it on output).
pub fn panic_text(panic: &JoinError) -> String {
    format!(
        "internal error: {}",
        panic.to_string().chars().take(300).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items are numbers; odd ones fail, 7 panics.
    struct Numbers {
        started: Mutex<Vec<u32>>,
    }

    impl Work for Numbers {
        type Item = u32;
        type Output = String;
        type Receipt = u32;
        fn name(&self, item: &u32) -> String {
            item.to_string()
        }
        fn receipt(&self, item: &u32) -> u32 {
            *item
        }
        fn run(&self, item: u32) -> String {
            self.started.lock().unwrap().push(item);
            assert_ne!(item, 7, "seven panics");
            format!("{item} {}", if item % 2 == 1 { "failed" } else { "ok" })
        }
        fn skip(&self, item: u32, reason: SkipReason, _: &str) -> String {
            format!("{item} skipped: {reason}")
        }
        fn panicked(&self, item: u32, _: &JoinError) -> String {
            format!("{item} panicked")
        }
        fn failed(&self, output: &String) -> bool {
            !output.ends_with(" ok")
        }
    }

    fn run_numbers(items: Vec<u32>, limits: Limits) -> (Vec<String>, Vec<u32>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let work = Arc::new(Numbers {
            started: Mutex::default(),
        });
        let out = rt.block_on(run(work.clone(), items, &limits));
        let started = work.started.lock().unwrap().clone();
        (out, started)
    }

    #[test]
    fn outputs_come_in_item_order_and_a_panic_is_an_output() {
        let (out, _) = run_numbers(vec![2, 7, 4], Limits::new(3));
        assert_eq!(out, ["2 ok", "7 panicked", "4 ok"]);
    }

    #[test]
    fn a_failed_canary_starts_nothing_else() {
        let limits = Limits {
            canary: 2,
            ..Limits::new(4)
        };
        let (out, started) = run_numbers(vec![2, 3, 4, 6], limits);
        assert_eq!(
            out,
            [
                "2 ok",
                "3 failed",
                "4 skipped: canary failed",
                "6 skipped: canary failed"
            ]
        );
        assert_eq!(started.len(), 2);
    }

    #[test]
    fn the_breaker_counts_failures_in_start_order() {
        let limits = Limits {
            max_failures: FailureLimit::Count(1),
            ..Limits::new(1)
        };
        let (out, _) = run_numbers(vec![1, 2, 3, 4], limits);
        assert_eq!(
            out,
            [
                "1 failed",
                "2 ok",
                "3 failed",
                "4 skipped: failure limit reached"
            ]
        );
    }

    #[test]
    fn a_stop_set_before_the_start_starts_nothing() {
        let limits = Limits::new(2);
        limits.stop.store(true, Ordering::SeqCst);
        let (out, started) = run_numbers(vec![2, 4], limits);
        assert_eq!(out, ["2 skipped: interrupted", "4 skipped: interrupted"]);
        assert!(started.is_empty());
    }
}
