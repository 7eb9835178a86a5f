//! Moving load back to a backend that recovered, in both modes.
//!
//! The complaint (kubernetes#76145, kube-vip#895's 22/0/0): an apiserver restarts, every client
//! that was on it reconnects to the others, and nothing ever moves back — watches and HTTP/2
//! connections live for hours, so the restarted apiserver stays idle while the others carry
//! everything. A balancer only places *new* connections; HAProxy, nginx and the k3s agent leave
//! established ones alone. kube-apiserver's own remedy, `--goaway-chance`, needs HTTP/2 frames a
//! TLS-passthrough balancer cannot send.
//!
//! So when a backend comes back up ([`crate::pool::Pool`] wakes this task), a round starts:
//!
//! 1. wait one `rebalance.interval`, drawn uniformly from ½ to 1½ of it — the jitter keeps several
//!    balancers (one per node, as k3s and KubePrism run them) from closing in step, and the first
//!    wait gives the recovered backend a moment before load arrives;
//! 2. among the backends that are up, if the busiest has more than one connection more than the
//!    idlest, close up to `rebalance.batch` of its **oldest** connections (the longest-lived ones
//!    are the watches that piled up during the outage), at most down to the even share, and only
//!    connections open at least `rebalance.minAge` (5 s): a short request ends by itself, and
//!    closing it mid-way would only make it fail;
//! 3. repeat until the counts are even — or until as many connections have been closed as were
//!    open when the round began (a budget for clients that come straight back to the busiest
//!    backend), or until [`IDLE_STEPS`] steps in a row found nothing old enough to close (the
//!    unevenness is short-lived traffic, which evens itself out).
//!
//! The policy picks connections; what "move" does to one is the mode's (see `crate::pool`'s
//! `Stopper`). In `tcp` mode a connection is closed with a FIN both ways (hop outcome
//! `rebalanced`); its client reconnects through the balancer. In `http` mode it is sent an HTTP/2
//! GOAWAY (HTTP/1: closed after the response in flight): requests in flight finish, the client
//! opens a new connection for its next one, and streams still open after `rebalance.goawayGrace`
//! (a watch) are closed — client-go resumes them on the new connection. Such a connection stays
//! counted on its backend until it has gone, and no step is taken meanwhile, so the counts a step
//! reads always include the moves under way. Both are counted in
//! `proxylab_ha_connections_rebalanced_total`. While a
//! round runs, new connections go to the backend with the fewest connections whatever the
//! configured algorithm (hop reason `least-conn (rebalancing)`), so each close moves exactly one
//! connection to where connections are missing; under `round-robin` alone a reconnect could land
//! back on a busy backend and a round would close about twice as many connections as there are.
//! Under `source-hash` a client always comes back to the same backend, so nothing is closed. The
//! cost: a request in flight on a closed connection fails and its client retries it (a watch
//! resumes from its resourceVersion); the rate bound keeps that to `batch` connections per
//! interval.

use std::sync::Arc;
use std::time::Duration;

use proxylab_core::balance::Algorithm;
use proxylab_core::l4::tcp::Interrupt;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// Steps in a row with nothing old enough to close that end a round.
pub const IDLE_STEPS: u32 = 10;

/// Runs rounds after every recovery until `stop`.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.pool.recovered.notified() => {}
        }
        shared.pool.set_rebalancing(true);
        round(&shared, &stop).await;
        shared.pool.set_rebalancing(false);
    }
}

async fn round(shared: &Shared, stop: &CancellationToken) {
    let mut budget: usize = shared.pool.backends().iter().map(|b| b.active()).sum();
    let mut moved = 0usize;
    let mut idle = 0u32;
    loop {
        let config = shared.config.load_full();
        let r = &config.rebalance;
        if !r.enabled || config.algorithm == Algorithm::SourceHash {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(jittered(r.interval)) => {}
        }
        let up: Vec<_> = shared
            .pool
            .backends()
            .iter()
            .filter(|b| b.is_up())
            .cloned()
            .collect();
        // http mode: a connection sent GOAWAY stays until its streams end (or its grace runs
        // out), and its client reconnects only then. Until it has gone, the counts do not show
        // the move, and another step would move one connection too many.
        if up.iter().any(|b| b.moving() > 0) {
            continue;
        }
        let counts: Vec<usize> = up.iter().map(|b| b.active()).collect();
        let Some((i, n)) = step(&counts, r.batch as usize) else {
            if moved > 0 {
                tracing::info!(moved, ?counts, "rebalanced: connection counts are even");
            }
            return;
        };
        let n = n.min(budget);
        if n == 0 {
            tracing::info!(
                moved,
                ?counts,
                "rebalancing stops: every connection open at the start could have moved"
            );
            return;
        }
        let closed = up[i].interrupt_oldest(n, r.min_age, Interrupt::Close);
        if closed == 0 {
            idle += 1;
            if idle >= IDLE_STEPS {
                tracing::info!(
                    moved,
                    ?counts,
                    "rebalancing stops: what is uneven is short-lived connections"
                );
                return;
            }
            continue;
        }
        idle = 0;
        budget -= closed;
        moved += closed;
        shared.pool.rebalanced(&up[i], closed);
        tracing::info!(backend = %up[i].name(), closed, ?counts, "rebalancing: closed the oldest connections of the busiest backend");
    }
}

/// One step's work for these connection counts (of the backends that are up): the busiest
/// backend's index and how many of its connections to close — at most `batch`, and no more than
/// it has above the even share — or `None` when the counts are even (they differ by at most one).
pub(crate) fn step(counts: &[usize], batch: usize) -> Option<(usize, usize)> {
    if counts.len() < 2 {
        return None;
    }
    let (busiest, &max) = counts.iter().enumerate().max_by_key(|&(_, c)| *c)?;
    let min = *counts.iter().min()?;
    if max - min <= 1 {
        return None;
    }
    let share = counts.iter().sum::<usize>().div_ceil(counts.len());
    Some((busiest, (max - share).clamp(1, batch.max(1))))
}

/// `interval` scaled by a factor drawn uniformly from [0.5, 1.5).
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_takes_from_the_busiest_down_to_the_even_share_at_most_batch() {
        // The recovered backend is empty: take from the busiest, one per step.
        assert_eq!(step(&[5, 4, 0], 1), Some((0, 1)));
        // A bigger batch still stops at the even share (9 / 3 = 3).
        assert_eq!(step(&[5, 4, 0], 10), Some((0, 2)));
        assert_eq!(step(&[10, 0], 3), Some((0, 3)));
        assert_eq!(step(&[0, 7], 100), Some((1, 3)));
        // Even: counts differ by at most one.
        assert_eq!(step(&[3, 3, 3], 1), None);
        assert_eq!(step(&[4, 3, 3], 1), None);
        assert_eq!(step(&[1, 0], 1), None);
        // Uneven by two but already at the share: still one moves.
        assert_eq!(step(&[4, 3, 2], 5), Some((0, 1)));
        // Nothing to balance with one backend up, or none.
        assert_eq!(step(&[9], 1), None);
        assert_eq!(step(&[], 1), None);
    }

    #[test]
    fn the_jitter_stays_within_half_and_one_and_a_half_intervals() {
        let i = Duration::from_millis(1000);
        for _ in 0..1000 {
            let d = jittered(i);
            assert!(d >= Duration::from_millis(500) && d < Duration::from_millis(1500));
        }
    }
}
