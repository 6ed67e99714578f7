//! The port rules compiled for the fast path.
//!
//! [`RuleTable::compile`] turns the configured `[[rule]]` list into one
//! 64 KiB lookup table per protocol, indexed by destination port, whose bytes
//! index a short array of verdicts. [`RuleTable::classify`] is then two loads,
//! whatever the number of rules: no branching over rules, no allocation.
//!
//! The table is immutable; a rules reload compiles a new one and hands it to
//! each worker, which keeps its own copy (nothing shared on the fast path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Action, DefaultAction, Protocol, Rule, MAX_RULES};

/// The outcome of classifying one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// What to do with the packet.
    pub action: Action,
    /// The hit-counter slot of the matching rule (its index in the configured
    /// list unless the table was compiled with [`RuleTable::compile_with_slots`]);
    /// `None` when no rule matched and the default action applies.
    pub rule: Option<u8>,
}

/// Entries in one per-protocol lookup table: one per port.
const PORTS: usize = 1 << 16;

/// Compiled rules: per protocol, destination port -> verdict, first match
/// wins. Cheap to clone (two 64 KiB tables) so each worker can own one.
#[derive(Clone)]
pub struct RuleTable {
    /// `[udp, tcp]`: port -> index into `verdicts`.
    by_port: [Box<[u8; PORTS]>; 2],
    /// One verdict per rule, then the default's at index `names.len()`.
    verdicts: Vec<Verdict>,
    /// The rules as configured.
    rules: Vec<Rule>,
    /// Rule names, parallel to `rules` (for metrics labels).
    names: Vec<String>,
    /// Hit-counter slots, parallel to `rules`.
    slots: Vec<u8>,
    /// The default action.
    default: DefaultAction,
}

fn table_index(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Udp => 0,
        Protocol::Tcp => 1,
    }
}

fn filled(value: u8) -> Box<[u8; PORTS]> {
    vec![value; PORTS]
        .into_boxed_slice()
        .try_into()
        .expect("length is PORTS")
}

impl RuleTable {
    /// Compiles `rules` (in priority order: the first matching rule wins) and
    /// the default action.
    ///
    /// # Panics
    /// If there are more than [`MAX_RULES`] rules; a validated
    /// [`Config`](crate::config::Config) never has.
    pub fn compile(rules: &[Rule], default: DefaultAction) -> RuleTable {
        let slots: Vec<u8> = (0..rules.len()).map(|i| i as u8).collect();
        RuleTable::compile_with_slots(rules, default, &slots)
    }

    /// Like [`RuleTable::compile`], but rule `i` counts its hits in counter
    /// slot `slots[i]` (see [`RuleSlots`]: a rule keeps its slot across
    /// reloads, so its counter never goes back).
    ///
    /// # Panics
    /// If there are more than [`MAX_RULES`] rules, or `slots` is not as long
    /// as `rules`, or a slot is out of range or used twice.
    pub fn compile_with_slots(rules: &[Rule], default: DefaultAction, slots: &[u8]) -> RuleTable {
        assert!(
            rules.len() <= MAX_RULES,
            "{} rules, at most {MAX_RULES} can be compiled",
            rules.len()
        );
        assert_eq!(slots.len(), rules.len(), "one slot per rule");
        let mut seen = [false; MAX_RULES];
        for &slot in slots {
            let slot = usize::from(slot);
            assert!(
                slot < MAX_RULES && !seen[slot],
                "slot {slot} reused or out of range"
            );
            seen[slot] = true;
        }
        let default_index = rules.len() as u8;
        let mut by_port = [filled(default_index), filled(default_index)];
        // Fill from the last rule to the first so that earlier rules
        // overwrite later ones: the first match wins.
        for (i, rule) in rules.iter().enumerate().rev() {
            let table = &mut by_port[table_index(rule.protocol)];
            for range in &rule.ports {
                table[usize::from(*range.start())..=usize::from(*range.end())].fill(i as u8);
            }
        }
        let mut verdicts: Vec<Verdict> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Verdict {
                action: r.action,
                rule: Some(slots[i]),
            })
            .collect();
        verdicts.push(Verdict {
            action: default.into(),
            rule: None,
        });
        RuleTable {
            by_port,
            verdicts,
            rules: rules.to_vec(),
            names: rules.iter().map(|r| r.name.clone()).collect(),
            slots: slots.to_vec(),
            default,
        }
    }

    /// The hit-counter slot of each rule, in configured order.
    pub fn slots(&self) -> &[u8] {
        &self.slots
    }

    /// The verdict for a packet of `protocol` to `dst_port`.
    #[inline]
    pub fn classify(&self, protocol: Protocol, dst_port: u16) -> Verdict {
        let index = self.by_port[table_index(protocol)][usize::from(dst_port)];
        // Every stored index is < verdicts.len() by construction.
        self.verdicts[usize::from(index)]
    }

    /// The rule names in configured order: `rule_names()[i]` is the name of
    /// the rule a verdict with `rule == Some(i)` came from.
    pub fn rule_names(&self) -> &[String] {
        &self.names
    }

    /// The rules as compiled, in configured order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The action for packets no rule claims.
    pub fn default_action(&self) -> DefaultAction {
        self.default
    }

    /// The number of rules (not counting the default).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no rules (everything gets the default action).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The rules in force, published by the control thread to every worker.
///
/// The control thread stores a new table, then bumps the generation. A worker
/// compares the generation with the one it applied every few poll rounds (one
/// load) and only when it changed takes the table ([`ArcSwap`]: no lock, and
/// the worker keeps its own `Arc`, so the fast path reads nothing shared
/// that anyone writes).
#[derive(Debug)]
pub struct SharedRules {
    table: ArcSwap<RuleTable>,
    generation: AtomicU64,
}

impl SharedRules {
    /// Rules in force from the start: generation 1.
    pub fn new(table: Arc<RuleTable>) -> SharedRules {
        SharedRules {
            table: ArcSwap::new(table),
            generation: AtomicU64::new(1),
        }
    }

    /// Put `table` in force; returns its generation. Only the control thread
    /// calls this (one writer).
    pub fn publish(&self, table: Arc<RuleTable>) -> u64 {
        self.table.store(table);
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        self.generation.store(generation, Ordering::Release);
        generation
    }

    /// The generation in force.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The table in force (at least as new as the last [`Self::generation`]
    /// read by the caller).
    pub fn table(&self) -> Arc<RuleTable> {
        self.table.load_full()
    }
}

/// Assigns rules their hit-counter slots across reloads.
///
/// Workers count rule hits in a fixed array of [`MAX_RULES`] counters
/// (`WorkerCounters::rule_hits`), which only they write. A counter must never
/// go back while its series lives, so a rule keeps its slot by name across
/// reloads, a new name takes a slot never used, and only when none is left
/// does it take the slot of a rule no longer configured, whose count so far
/// becomes the new rule's zero (its `base`). Hits the workers still count
/// for the old rule before they see the new table (at most a few poll
/// rounds) go to the new one.
#[derive(Debug, Clone)]
pub struct RuleSlots {
    /// The rule name that owns each slot (or owned it last); `None` = unused.
    owner: Vec<Option<String>>,
    /// The count of each slot that stands for zero.
    base: Vec<u64>,
}

impl Default for RuleSlots {
    fn default() -> Self {
        RuleSlots {
            owner: vec![None; MAX_RULES],
            base: vec![0; MAX_RULES],
        }
    }
}

impl RuleSlots {
    /// Slots for `rules` (names unique, at most [`MAX_RULES`] of them).
    /// `count(slot)` reads a slot's counter summed over the workers.
    pub fn assign(&mut self, rules: &[Rule], count: impl Fn(usize) -> u64) -> Vec<u8> {
        let mut slots: Vec<Option<u8>> = rules
            .iter()
            .map(|r| {
                self.owner
                    .iter()
                    .position(|o| o.as_deref() == Some(r.name.as_str()))
                    .map(|s| s as u8)
            })
            .collect();
        let mut taken = vec![false; MAX_RULES];
        for slot in slots.iter().flatten() {
            taken[usize::from(*slot)] = true;
        }
        for (i, rule) in rules.iter().enumerate() {
            if slots[i].is_some() {
                continue;
            }
            let fresh = (0..MAX_RULES).find(|&s| !taken[s] && self.owner[s].is_none());
            let slot = fresh
                .or_else(|| (0..MAX_RULES).find(|&s| !taken[s]))
                .expect("at most MAX_RULES rules");
            if self.owner[slot].is_some() {
                self.base[slot] = count(slot);
            }
            self.owner[slot] = Some(rule.name.clone());
            taken[slot] = true;
            slots[i] = Some(slot as u8);
        }
        slots.into_iter().map(|s| s.expect("assigned")).collect()
    }

    /// The hits of the rule in `slot` given the slot's summed counter.
    pub fn hits(&self, slot: u8, count: u64) -> u64 {
        count.saturating_sub(self.base[usize::from(slot)])
    }
}

impl std::fmt::Debug for RuleTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleTable")
            .field("rules", &self.rules)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceId;
    use proptest::prelude::*;
    use std::ops::RangeInclusive;

    fn rule(name: &str, protocol: Protocol, ports: &[RangeInclusive<u16>], action: Action) -> Rule {
        Rule {
            name: name.to_owned(),
            protocol,
            ports: ports.to_vec(),
            action,
        }
    }

    const ECHO: Action = Action::Service(ServiceId::ECHO);
    const DISCARD: Action = Action::Service(ServiceId::DISCARD);
    const HTTP: Action = Action::Service(ServiceId::HTTP);

    /// The obvious implementation: scan the rules in order.
    fn naive(rules: &[Rule], default: DefaultAction, p: Protocol, port: u16) -> Verdict {
        rules.iter().position(|r| r.matches(p, port)).map_or(
            Verdict {
                action: default.into(),
                rule: None,
            },
            |i| Verdict {
                action: rules[i].action,
                rule: Some(i as u8),
            },
        )
    }

    #[test]
    fn rules_keep_their_slots_across_reloads_and_counts_never_go_back() {
        let r = |name: &str| rule(name, Protocol::Udp, &[7..=7], ECHO);
        let mut slots = RuleSlots::default();
        let mut counts = vec![0u64; MAX_RULES];
        assert_eq!(slots.assign(&[r("a"), r("b")], |s| counts[s]), [0, 1]);
        counts[0] = 10;
        counts[1] = 20;
        // Reordered, one removed, one added: names keep their slots and the
        // new one takes a slot never used.
        assert_eq!(slots.assign(&[r("c"), r("b")], |s| counts[s]), [2, 1]);
        assert_eq!(slots.hits(1, counts[1]), 20);
        assert_eq!(slots.hits(2, counts[2]), 0);
        // "a" comes back: its old slot and count are still there.
        assert_eq!(
            slots.assign(&[r("a"), r("b"), r("c")], |s| counts[s]),
            [0, 1, 2]
        );
        assert_eq!(slots.hits(0, counts[0]), 10);
        // Fill every slot with other names; then a new name must reuse a
        // slot, and starts from zero there.
        let many: Vec<Rule> = (0..MAX_RULES).map(|i| r(&format!("n{i}"))).collect();
        let assigned = slots.assign(&many, |s| counts[s]);
        let mut sorted = assigned.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), MAX_RULES);
        let reused = assigned[0];
        assert_eq!(slots.hits(reused, counts[usize::from(reused)]), 0);
        counts[usize::from(reused)] += 3;
        assert_eq!(slots.hits(reused, counts[usize::from(reused)]), 3);
        let t = RuleTable::compile_with_slots(&many, DefaultAction::Drop, &assigned);
        assert_eq!(t.classify(Protocol::Udp, 7).rule, Some(assigned[0]));
    }

    #[test]
    fn first_match_wins_across_overlaps() {
        let rules = [
            rule("narrow", Protocol::Udp, &[8050..=8060], DISCARD),
            rule("wide", Protocol::Udp, &[8000..=8100], ECHO),
            rule("drop-all", Protocol::Udp, &[0..=65535], Action::Drop),
        ];
        let t = RuleTable::compile(&rules, DefaultAction::Kernel);
        let v = |port| t.classify(Protocol::Udp, port);
        assert_eq!(
            v(8055),
            Verdict {
                action: DISCARD,
                rule: Some(0)
            }
        );
        assert_eq!(v(8050).rule, Some(0));
        assert_eq!(v(8060).rule, Some(0));
        assert_eq!(
            v(8049),
            Verdict {
                action: ECHO,
                rule: Some(1)
            }
        );
        assert_eq!(v(8061).rule, Some(1));
        assert_eq!(v(8000).rule, Some(1));
        assert_eq!(v(8100).rule, Some(1));
        assert_eq!(
            v(7999),
            Verdict {
                action: Action::Drop,
                rule: Some(2)
            }
        );
        assert_eq!(v(0).rule, Some(2));
        assert_eq!(v(65535).rule, Some(2));
        // The other protocol is untouched.
        assert_eq!(
            t.classify(Protocol::Tcp, 8055),
            Verdict {
                action: Action::Kernel,
                rule: None
            }
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t.rule_names(), ["narrow", "wide", "drop-all"]);
    }

    #[test]
    fn later_rule_cannot_override_earlier() {
        let rules = [
            rule("a", Protocol::Tcp, &[80..=80], HTTP),
            rule("b", Protocol::Tcp, &[80..=80, 443..=443], Action::Drop),
        ];
        let t = RuleTable::compile(&rules, DefaultAction::Drop);
        assert_eq!(t.classify(Protocol::Tcp, 80).rule, Some(0));
        assert_eq!(t.classify(Protocol::Tcp, 443).rule, Some(1));
        assert_eq!(
            t.classify(Protocol::Tcp, 81),
            Verdict {
                action: Action::Drop,
                rule: None
            }
        );
    }

    #[test]
    fn defaults_and_no_rules() {
        for default in [DefaultAction::Kernel, DefaultAction::Drop] {
            let t = RuleTable::compile(&[], default);
            assert!(t.is_empty());
            assert_eq!(t.default_action(), default);
            for p in [Protocol::Udp, Protocol::Tcp] {
                for port in [0, 1, 7, 65534, 65535] {
                    assert_eq!(
                        t.classify(p, port),
                        Verdict {
                            action: default.into(),
                            rule: None
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn both_protocols_and_port_edges() {
        let rules = [
            rule("udp0", Protocol::Udp, &[0..=0], ECHO),
            rule("tcpmax", Protocol::Tcp, &[65535..=65535], DISCARD),
            rule("udpmax", Protocol::Udp, &[65535..=65535], Action::Kernel),
            rule("tcp0", Protocol::Tcp, &[0..=0], Action::Drop),
        ];
        let t = RuleTable::compile(&rules, DefaultAction::Drop);
        assert_eq!(t.classify(Protocol::Udp, 0).rule, Some(0));
        assert_eq!(t.classify(Protocol::Tcp, 65535).rule, Some(1));
        assert_eq!(t.classify(Protocol::Udp, 65535).rule, Some(2));
        assert_eq!(t.classify(Protocol::Tcp, 0).rule, Some(3));
        assert_eq!(t.classify(Protocol::Udp, 1).rule, None);
        assert_eq!(t.classify(Protocol::Tcp, 65534).rule, None);
    }

    #[test]
    fn max_rules_fit() {
        let rules: Vec<Rule> = (0..MAX_RULES)
            .map(|i| {
                rule(
                    &format!("r{i}"),
                    Protocol::Udp,
                    &[i as u16..=i as u16],
                    ECHO,
                )
            })
            .collect();
        let t = RuleTable::compile(&rules, DefaultAction::Kernel);
        assert_eq!(t.classify(Protocol::Udp, 254).rule, Some(254));
        assert_eq!(t.classify(Protocol::Udp, 255).rule, None);
        assert_eq!(t.classify(Protocol::Udp, 255).action, Action::Kernel);
    }

    #[test]
    #[should_panic(expected = "at most 255")]
    fn too_many_rules_panic() {
        let rules = vec![rule("x", Protocol::Udp, &[1..=1], ECHO); MAX_RULES + 1];
        RuleTable::compile(&rules, DefaultAction::Kernel);
    }

    fn arb_range() -> impl Strategy<Value = RangeInclusive<u16>> {
        prop_oneof![
            any::<u16>().prop_map(|p| p..=p),
            (any::<u16>(), any::<u16>()).prop_map(|(a, b)| a.min(b)..=a.max(b)),
            // Clustered near the edges and each other, so ranges overlap.
            (0u16..64, 0u16..64).prop_map(|(a, b)| a.min(b)..=a.max(b)),
            (65472u16..=65535, 65472u16..=65535).prop_map(|(a, b)| a.min(b)..=a.max(b)),
        ]
    }

    fn arb_action() -> impl Strategy<Value = Action> {
        prop_oneof![
            Just(ECHO),
            Just(DISCARD),
            Just(HTTP),
            Just(Action::Kernel),
            Just(Action::Drop)
        ]
    }

    fn arb_protocol() -> impl Strategy<Value = Protocol> {
        prop_oneof![Just(Protocol::Udp), Just(Protocol::Tcp)]
    }

    fn arb_rules() -> impl Strategy<Value = Vec<Rule>> {
        prop::collection::vec(
            (
                arb_protocol(),
                prop::collection::vec(arb_range(), 1..4),
                arb_action(),
            ),
            0..12,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (p, ports, a))| rule(&format!("r{i}"), p, &ports, a))
                .collect()
        })
    }

    fn arb_port() -> impl Strategy<Value = u16> {
        prop_oneof![any::<u16>(), 0u16..70, 65466u16..=65535]
    }

    proptest! {
        #[test]
        fn classify_matches_linear_scan(
            rules in arb_rules(),
            drop_default in any::<bool>(),
            probes in prop::collection::vec((arb_protocol(), arb_port()), 64),
        ) {
            let default = if drop_default { DefaultAction::Drop } else { DefaultAction::Kernel };
            let t = RuleTable::compile(&rules, default);
            for (p, port) in probes {
                prop_assert_eq!(t.classify(p, port), naive(&rules, default, p, port));
            }
            // The boundaries of every range, and one past them.
            for r in &rules {
                for range in &r.ports {
                    for port in [
                        *range.start(),
                        *range.end(),
                        range.start().wrapping_sub(1),
                        range.end().wrapping_add(1),
                    ] {
                        for p in [Protocol::Udp, Protocol::Tcp] {
                            prop_assert_eq!(t.classify(p, port), naive(&rules, default, p, port));
                        }
                    }
                }
            }
        }
    }
}
