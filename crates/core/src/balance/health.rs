//! A backend's health from its check results: `rise`/`fall` counting, as HAProxy does it.
//!
//! A balancer that checks its backends (HAProxy's `check inter 2s fall 3 rise 2`) must not flap on one
//! lost probe, nor keep sending to a backend that stopped answering. So a backend that is **up** goes
//! **down** after `fall` consecutive failures, and one that is down comes back after `rise`
//! consecutive successes; a single result against the trend only resets the count.
//!
//! The state is nothing but the current verdict and the length of the current streak against it.
//! That is deliberate: a state machine that remembers more (which backend failed before, a list
//! trimmed while some were down, a "preferred" server) is how balancers get stuck when backends go
//! down in turn (k3s#11349). Here the verdict on each backend depends only on its own last few
//! results, whatever happened to the others and in whatever order.
//!
//! A backend's first verdict is optimistic but on probation ([`HealthState::starting`]): it takes
//! traffic at once, and its first failure marks it down without waiting for `fall` — HAProxy starts
//! a server the same way, so a balancer started while a backend is dead does not send it `fall`
//! checks' worth of connections first.

/// How many consecutive results change a verdict. Both are at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiseFall {
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
}

impl Default for RiseFall {
    /// HAProxy's defaults, which the kubeadm recipe keeps: rise 2, fall 3.
    fn default() -> Self {
        Self { rise: 2, fall: 3 }
    }
}

/// The verdict on a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend's verdict and the streak of results against it. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    health: Health,
    /// Consecutive results that contradict `health`.
    against: u32,
    /// Up without a single result yet: the first failure is enough to go down.
    probation: bool,
}

impl HealthState {
    /// A backend known to be in `health` (e.g. restored from a previous run).
    pub fn new(health: Health) -> Self {
        Self {
            health,
            against: 0,
            probation: false,
        }
    }

    /// A backend never checked yet: up, but its first failure takes it down.
    pub fn starting() -> Self {
        Self {
            health: Health::Up,
            against: 0,
            probation: true,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn is_up(&self) -> bool {
        self.health == Health::Up
    }

    /// Consecutive results so far against the current verdict (failures while up, successes while
    /// down): how close the backend is to changing state.
    pub fn streak(&self) -> u32 {
        self.against
    }

    /// Counts one result. Returns the new verdict when this result changed it.
    pub fn observe(&mut self, ok: bool, limits: RiseFall) -> Option<Health> {
        let needed = match (self.health, ok) {
            // A result that agrees with the verdict breaks any streak against it.
            (Health::Up, true) | (Health::Down, false) => {
                self.against = 0;
                self.probation = false;
                return None;
            }
            (Health::Up, false) if self.probation => 1,
            (Health::Up, false) => limits.fall.max(1),
            (Health::Down, true) => limits.rise.max(1),
        };
        self.against += 1;
        if self.against < needed {
            return None;
        }
        self.health = match self.health {
            Health::Up => Health::Down,
            Health::Down => Health::Up,
        };
        self.against = 0;
        self.probation = false;
        Some(self.health)
    }

    /// Marks the backend down at once, whatever its streak (an operator's `disable`, or a passive
    /// signal trusted as final). Returns `Some(Down)` when it was up.
    pub fn force_down(&mut self) -> Option<Health> {
        self.against = 0;
        self.probation = false;
        if self.health == Health::Down {
            return None;
        }
        self.health = Health::Down;
        Some(Health::Down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RF: RiseFall = RiseFall { rise: 2, fall: 3 };

    fn run(state: &mut HealthState, results: &str) -> Vec<Option<Health>> {
        results
            .chars()
            .map(|c| state.observe(c == '+', RF))
            .collect()
    }

    #[test]
    fn fall_consecutive_failures_take_it_down_and_rise_successes_bring_it_back() {
        let mut s = HealthState::new(Health::Up);
        // Two failures, a success: the streak resets, still up.
        assert_eq!(run(&mut s, "--+--"), vec![None; 5]);
        assert!(s.is_up());
        assert_eq!(s.streak(), 2);
        assert_eq!(s.observe(false, RF), Some(Health::Down));
        // One success then a failure: still down; two in a row: up.
        assert_eq!(run(&mut s, "+-+"), vec![None; 3]);
        assert_eq!(s.observe(true, RF), Some(Health::Up));
        assert_eq!(s.streak(), 0);
    }

    #[test]
    fn a_starting_backend_goes_down_on_its_first_failure_only() {
        let mut s = HealthState::starting();
        assert!(s.is_up());
        assert_eq!(s.observe(false, RF), Some(Health::Down));
        let mut s = HealthState::starting();
        assert_eq!(s.observe(true, RF), None);
        // Past probation, fall applies.
        assert_eq!(run(&mut s, "--"), vec![None, None]);
        assert_eq!(s.observe(false, RF), Some(Health::Down));
    }

    #[test]
    fn force_down_reports_only_a_change() {
        let mut s = HealthState::new(Health::Up);
        assert_eq!(s.force_down(), Some(Health::Down));
        assert_eq!(s.force_down(), None);
        assert_eq!(run(&mut s, "++"), vec![None, Some(Health::Up)]);
    }

    /// Backends going down in turn, in any order and for any length: each verdict follows that
    /// backend's own results only, so whenever a backend has answered `rise` times in a row it is up.
    #[test]
    fn verdicts_never_stick_whatever_the_order_of_outages() {
        let mut states = [HealthState::starting(); 3];
        // Outages in turn: 0 down, then 1 down while 0 is back, then 2, then 0 again...
        let schedule: Vec<[bool; 3]> = (0..60)
            .map(|t| {
                let down = (t / 5) % 3;
                let mut alive = [true; 3];
                alive[down] = false;
                alive
            })
            .collect();
        for (t, alive) in schedule.iter().enumerate() {
            for (i, st) in states.iter_mut().enumerate() {
                st.observe(alive[i], RF);
            }
            if t % 5 >= 2 {
                // Two ticks after a change every live backend has answered `rise` times in a row.
                for (i, st) in states.iter().enumerate() {
                    if alive[i] {
                        assert!(st.is_up(), "tick {t}: backend {i} is alive but judged down");
                    }
                }
            }
        }
    }
}
