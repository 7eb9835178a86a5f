//! The arithmetic of a rollout: how many Pods each ReplicaSet should have next.
//!
//! These are kube's `deployment/rolling.go` and `recreate.go` over plain numbers, so each rule
//! is testable on its own. A [`Sets`] holds the new ReplicaSet and the old ones (oldest first)
//! as `(spec.replicas, status.availableReplicas)`; each step returns the new `spec.replicas`
//! for the sets it changes.

use proxylab_apimachinery::intstr;
use serde_json::Value;

/// One ReplicaSet as the rollout sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `spec.replicas`: what it has been asked for.
    pub replicas: i64,
    /// `status.availableReplicas`: Pods ready for `minReadySeconds`.
    pub available: i64,
}

/// The surge and unavailability a RollingUpdate allows (kube's `ResolveFenceposts`):
/// `maxSurge` rounds up, `maxUnavailable` rounds down, and if both come out 0 one Pod may be
/// unavailable — else a rollout could never start.
pub fn fenceposts(rolling_update: Option<&Value>, replicas: i64) -> (i64, i64) {
    let surge = intstr::scaled_or(
        rolling_update.and_then(|r| r.get("maxSurge")),
        "25%",
        replicas,
        true,
    );
    let unavailable = intstr::scaled_or(
        rolling_update.and_then(|r| r.get("maxUnavailable")),
        "25%",
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// `MaxUnavailable(deployment)`: never more than the replicas.
pub fn max_unavailable(unavailable: i64, replicas: i64) -> i64 {
    unavailable.min(replicas).max(0)
}

/// `NewRSNewReplicas` for a RollingUpdate: grow the new set as far as the surge allows.
pub fn new_replicas(replicas: i64, max_surge: i64, new: Counts, old: &[Counts]) -> i64 {
    if new.replicas >= replicas {
        // Scaled down (or already there): straight to the target.
        return replicas;
    }
    let current: i64 = new.replicas + old.iter().map(|c| c.replicas).sum::<i64>();
    let max_total = replicas + max_surge;
    if current >= max_total {
        return new.replicas;
    }
    let up = (max_total - current).min(replicas - new.replicas);
    new.replicas + up
}

/// `reconcileOldReplicaSets`: how far each old set may shrink without the available Pods
/// falling below `replicas - max_unavailable`. First the old sets' *unhealthy* Pods go (they
/// serve nobody), then available ones, oldest set first. Returns the new `spec.replicas` per
/// old set (same order).
pub fn scale_down_old(
    replicas: i64,
    max_unavailable: i64,
    new: Counts,
    old: &[Counts],
) -> Vec<i64> {
    let mut next: Vec<i64> = old.iter().map(|c| c.replicas).collect();
    let old_total: i64 = next.iter().sum();
    if old_total == 0 {
        return next;
    }
    let all_total = old_total + new.replicas;
    let min_available = replicas - max_unavailable;
    let new_unavailable = (new.replicas - new.available).max(0);
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return next;
    }
    // cleanupUnhealthyReplicas
    let mut cleaned = 0;
    for (i, c) in old.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (next[i] - c.available).max(0);
        if next[i] == 0 || unhealthy == 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        next[i] -= down;
        cleaned += down;
    }
    // scaleDownOldReplicaSetsForRollingUpdate
    let available: i64 = new.available + old.iter().map(|c| c.available).sum::<i64>();
    if available <= min_available {
        return next;
    }
    let total_down = available - min_available;
    let mut done = 0;
    for n in next.iter_mut() {
        if done >= total_down {
            break;
        }
        if *n == 0 {
            continue;
        }
        let down = (*n).min(total_down - done);
        *n -= down;
        done += down;
    }
    next
}

/// An active ReplicaSet as proportional scaling sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sized {
    /// `spec.replicas`.
    pub replicas: i64,
    /// Its `deployment.kubernetes.io/max-replicas` annotation: the Deployment's
    /// `replicas + maxSurge` when the set was last scaled.
    pub annotated_max: Option<i64>,
}

/// kube's proportional scaling (`scale` in `deployment/sync.go`): when `spec.replicas` changes
/// while several ReplicaSets have Pods, the difference is shared out in proportion to each set's
/// size, so a half-done rollout stays half done at the new size. `sets` are the active sets,
/// oldest first; `status_replicas` stands in for a missing annotation. Returns each set's new
/// `spec.replicas` (same order); any rounding leftover goes to the largest set.
pub fn proportional(
    replicas: i64,
    max_surge: i64,
    status_replicas: i64,
    sets: &[Sized],
) -> Vec<i64> {
    let mut sizes: Vec<i64> = sets.iter().map(|s| s.replicas).collect();
    let allowed = if replicas > 0 {
        replicas + max_surge
    } else {
        0
    };
    let to_add = allowed - sizes.iter().sum::<i64>();
    if to_add == 0 || sets.is_empty() {
        return sizes;
    }
    // Largest first; among equals the newest when growing, the oldest when shrinking.
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by(|a, b| {
        let by_size = sets[*b].replicas.cmp(&sets[*a].replicas);
        if to_add > 0 {
            by_size.then(b.cmp(a))
        } else {
            by_size.then(a.cmp(b))
        }
    });
    let mut added = 0;
    for &i in &order {
        let s = sets[i];
        if s.replicas == 0 || added == to_add {
            continue;
        }
        let fraction = if replicas == 0 {
            -s.replicas
        } else {
            let annotated = s.annotated_max.unwrap_or(status_replicas);
            if annotated <= 0 {
                continue;
            }
            // Go's integer.RoundToInt32: half away from zero, as f64::round.
            ((s.replicas * (replicas + max_surge)) as f64 / annotated as f64).round() as i64
                - s.replicas
        };
        let left = to_add - added;
        let p = if to_add > 0 {
            fraction.min(left)
        } else {
            fraction.max(left)
        };
        sizes[i] += p;
        added += p;
    }
    let first = order[0];
    sizes[first] = (sizes[first] + to_add - added).max(0);
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(replicas: i64, available: i64) -> Counts {
        Counts {
            replicas,
            available,
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailability_down() {
        assert_eq!(fenceposts(None, 3), (1, 0));
        assert_eq!(fenceposts(None, 4), (1, 1));
        assert_eq!(
            fenceposts(Some(&json!({"maxSurge": 0, "maxUnavailable": "10%"})), 3),
            (0, 1)
        );
        assert_eq!(
            fenceposts(Some(&json!({"maxSurge": 2, "maxUnavailable": 1})), 3),
            (2, 1)
        );
    }

    /// A whole rollout of 3 replicas with surge 1 and unavailability 0, every new Pod
    /// becoming available before the next step: never fewer than 3 available, never more
    /// than 4 Pods.
    #[test]
    fn a_rollout_keeps_within_its_fenceposts() {
        let (surge, unavail) = fenceposts(None, 3);
        let (mut new, mut old) = (c(0, 0), vec![c(3, 3)]);
        let mut steps = 0;
        while old[0].replicas > 0 || new.replicas < 3 {
            new.replicas = new_replicas(3, surge, new, &old);
            assert!(new.replicas + old[0].replicas <= 3 + surge);
            new.available = new.replicas; // the Pods come up
            let next = scale_down_old(3, unavail, new, &old);
            old[0] = c(next[0], next[0]);
            assert!(new.available + old[0].available >= 3);
            steps += 1;
            assert!(steps < 10, "the rollout makes progress");
        }
        assert_eq!((new, old[0]), (c(3, 3), c(0, 0)));
    }

    #[test]
    fn unready_new_pods_hold_the_old_ones() {
        // The new Pod is not available: the old set may not shrink below 3 available.
        assert_eq!(scale_down_old(3, 0, c(1, 0), &[c(3, 3)]), [3]);
        // Old unhealthy Pods go first, even before the new one is up.
        assert_eq!(scale_down_old(3, 1, c(1, 0), &[c(3, 1)]), [2]);
    }

    #[test]
    fn scaling_with_no_old_sets() {
        assert_eq!(new_replicas(5, 1, c(3, 3), &[]), 5);
        assert_eq!(new_replicas(2, 1, c(3, 3), &[]), 2);
        assert_eq!(scale_down_old(5, 1, c(5, 5), &[]), Vec::<i64>::new());
    }

    #[test]
    fn proportional_scaling_keeps_the_split() {
        let sized = |replicas, max| Sized {
            replicas,
            annotated_max: Some(max),
        };
        // 3 old + 1 new (surge 1) of 3, scaled to 6: 7 allowed, shared 5 + 2.
        assert_eq!(proportional(6, 1, 4, &[sized(3, 4), sized(1, 4)]), [5, 2]);
        // Back down to 3: 4 allowed again.
        assert_eq!(proportional(3, 1, 7, &[sized(5, 7), sized(2, 7)]), [3, 1]);
        // To zero: everything goes.
        assert_eq!(proportional(0, 1, 4, &[sized(3, 4), sized(1, 4)]), [0, 0]);
    }
}
