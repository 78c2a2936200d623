//! Order independence (issue 3, item 6): the same events in any arrival order give the same
//! partition into people. An in-memory graph applies what `resolve` decides, exactly as the
//! engine applies it to the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use cdp_core::IdentifierType;
use cdp_identity::graph::{
    Evidence, GraphView, Node, OrderKey, ProfileSummary, Resolution, TypeCounts, resolve,
};
use cdp_identity::{IdentityRules, IdentityRulesFile};
use proptest::prelude::*;

type Ev = Evidence<String, u32>;

#[derive(Default)]
struct Profile {
    nodes: BTreeSet<Node<String>>,
    evidence: BTreeSet<u32>,
    /// When each node was linked (event time, µs): what windowed limits count.
    linked_at: BTreeMap<Node<String>, i64>,
}

/// The store, in memory: profiles, identifier index, evidence and who mentions what.
#[derive(Default)]
struct MemoryGraph {
    profiles: BTreeMap<u64, Profile>,
    index: BTreeMap<Node<String>, u64>,
    evidence: BTreeMap<u32, Ev>,
    mentions: BTreeMap<Node<String>, BTreeSet<u32>>,
    next: u64,
    recomputes: usize,
}

impl GraphView<String, u32> for MemoryGraph {
    type Profile = u64;
    type Error = Infallible;

    fn profile_of(&mut self, node: &Node<String>) -> Result<Option<u64>, Infallible> {
        Ok(self.index.get(node).copied())
    }

    fn summary(&mut self, profile: u64) -> Result<ProfileSummary, Infallible> {
        let p = &self.profiles[&profile];
        let orders = p.evidence.iter().map(|id| self.evidence[id].order);
        let mut counts = TypeCounts::default();
        for (node, at) in &p.linked_at {
            counts.add(&node.kind, *at);
        }
        Ok(ProfileSummary {
            counts,
            first_order: orders.clone().min().unwrap(),
            last_order: orders.max().unwrap(),
        })
    }

    fn last_mention(&mut self, node: &Node<String>) -> Result<Option<OrderKey>, Infallible> {
        Ok(self
            .mentions
            .get(node)
            .and_then(|ids| ids.iter().map(|id| self.evidence[id].order).max()))
    }

    fn evidence_of_node(&mut self, node: &Node<String>) -> Result<Vec<Ev>, Infallible> {
        Ok(self
            .mentions
            .get(node)
            .map(|ids| ids.iter().map(|id| self.evidence[id].clone()).collect())
            .unwrap_or_default())
    }
}

impl MemoryGraph {
    fn new_profile(&mut self) -> u64 {
        self.next += 1;
        self.profiles.insert(self.next, Profile::default());
        self.next
    }

    fn ingest(&mut self, event: &Ev, rules: &IdentityRules) {
        let resolution = resolve(self, event, rules).unwrap();
        self.evidence.insert(event.id, event.clone());
        for node in &event.nodes {
            self.mentions
                .entry(node.clone())
                .or_default()
                .insert(event.id);
        }
        match resolution {
            Resolution::Incremental {
                target,
                merged,
                attached,
                ..
            } => {
                let target = target.unwrap_or_else(|| self.new_profile());
                for absorbed in merged {
                    let gone = self.profiles.remove(&absorbed).unwrap();
                    for node in &gone.nodes {
                        self.index.insert(node.clone(), target);
                    }
                    let profile = self.profiles.get_mut(&target).unwrap();
                    profile.nodes.extend(gone.nodes);
                    profile.evidence.extend(gone.evidence);
                    profile.linked_at.extend(gone.linked_at);
                }
                for node in attached {
                    self.index.insert(node.clone(), target);
                    let profile = self.profiles.get_mut(&target).unwrap();
                    profile.linked_at.insert(node.clone(), event.order.0);
                    profile.nodes.insert(node);
                }
                self.profiles
                    .get_mut(&target)
                    .unwrap()
                    .evidence
                    .insert(event.id);
            }
            Resolution::Recompute {
                profiles,
                partition,
                truncated,
            } => {
                assert!(!truncated);
                self.recomputes += 1;
                for old in profiles {
                    let gone = self.profiles.remove(&old).unwrap();
                    for node in &gone.nodes {
                        self.index.remove(node);
                    }
                }
                for group in partition.groups {
                    let id = self.new_profile();
                    for node in &group.nodes {
                        self.index.insert(node.clone(), id);
                    }
                    let profile = self.profiles.get_mut(&id).unwrap();
                    profile.nodes = group.nodes;
                    profile.evidence = group.evidence.into_iter().collect();
                    profile.linked_at = group.linked_at;
                }
            }
        }
    }

    /// People as sets of identifiers and sets of events: what must not depend on order.
    fn people(&self) -> BTreeSet<(BTreeSet<Node<String>>, BTreeSet<u32>)> {
        self.profiles
            .values()
            .map(|p| (p.nodes.clone(), p.evidence.clone()))
            .collect()
    }
}

fn tight_rules() -> IdentityRules {
    // Small limits so that random events hit merge protection often.
    let file: IdentityRulesFile = toml::from_str(
        "[types.user_id]\nlimit = 1\npriority = 1\n\
         [types.email]\nlimit = 2\npriority = 10\n\
         [types.device_id]\nlimit = 2\npriority = 30\nwindow_days = 7\n\
         [types.anonymous_id]\nlimit = 3\npriority = 100\n",
    )
    .unwrap();
    IdentityRules::from_file(file).unwrap()
}

fn node_strategy() -> impl Strategy<Value = Node<String>> {
    prop_oneof![
        (0..4u8).prop_map(|i| Node {
            kind: IdentifierType::UserId,
            key: format!("u{i}")
        }),
        (0..5u8).prop_map(|i| Node {
            kind: IdentifierType::Email,
            key: format!("e{i}")
        }),
        (0..3u8).prop_map(|i| Node {
            kind: IdentifierType::DeviceId,
            key: format!("d{i}")
        }),
        (0..6u8).prop_map(|i| Node {
            kind: IdentifierType::AnonymousId,
            key: format!("a{i}")
        }),
    ]
}

fn events_strategy() -> impl Strategy<Value = Vec<Ev>> {
    proptest::collection::vec(proptest::collection::vec(node_strategy(), 1..5), 1..40).prop_map(
        |sets| {
            sets.into_iter()
                .enumerate()
                .map(|(index, nodes)| Evidence {
                    id: index as u32,
                    // Event time: distinct, unrelated to the arrival orders tried below.
                    order: (((index as i64) * 7919) % 1009, [index as u8; 16]),
                    nodes,
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn same_events_any_order_same_people(
        (events, shuffled) in events_strategy().prop_flat_map(|events| {
            let shuffled = Just(events.clone()).prop_shuffle();
            (Just(events), shuffled)
        })
    ) {
        let rules = tight_rules();
        let mut in_order = MemoryGraph::default();
        let mut sorted = events.clone();
        sorted.sort_by_key(|e| e.order);
        for event in &sorted {
            in_order.ingest(event, &rules);
        }
        prop_assert_eq!(in_order.recomputes, 0, "events in event order never need a recompute");
        let mut arrival = MemoryGraph::default();
        for event in &shuffled {
            arrival.ingest(event, &rules);
        }
        prop_assert_eq!(in_order.people(), arrival.people());
        // And the canonical partition of the whole set says the same.
        let canonical = cdp_identity::graph::partition(&events, &rules);
        let expected: BTreeSet<_> = canonical
            .groups
            .into_iter()
            .map(|g| (g.nodes, g.evidence.into_iter().collect::<BTreeSet<_>>()))
            .collect();
        prop_assert_eq!(arrival.people(), expected);
    }
}

#[test]
fn merge_protection_keeps_two_users_apart_and_drops_the_weaker_identifier() {
    let rules = tight_rules();
    let node = |kind, key: &str| Node {
        kind,
        key: key.to_string(),
    };
    let mut graph = MemoryGraph::default();
    let events = [
        vec![
            node(IdentifierType::UserId, "u1"),
            node(IdentifierType::Email, "shared"),
        ],
        vec![
            node(IdentifierType::UserId, "u2"),
            node(IdentifierType::Email, "shared"),
        ],
        vec![
            node(IdentifierType::AnonymousId, "a1"),
            node(IdentifierType::UserId, "u2"),
        ],
    ];
    for (index, nodes) in events.into_iter().enumerate() {
        graph.ingest(
            &Evidence {
                id: index as u32,
                order: (index as i64, [0; 16]),
                nodes,
            },
            &rules,
        );
    }
    let people = graph.people();
    assert_eq!(people.len(), 2, "{people:?}");
    let u2 = people
        .iter()
        .find(|(nodes, _)| nodes.contains(&node(IdentifierType::UserId, "u2")))
        .unwrap();
    // The shared e-mail stayed with u1; u2's events (1 and 2) are u2's.
    assert!(!u2.0.contains(&node(IdentifierType::Email, "shared")));
    assert_eq!(u2.1, BTreeSet::from([1, 2]));
}

#[test]
fn windowed_limits_count_only_recent_identifiers() {
    let file: IdentityRulesFile =
        toml::from_str("[types.device_id]\nlimit = 1\npriority = 30\nwindow_days = 7\n").unwrap();
    let rules = IdentityRules::from_file(file).unwrap();
    let day = 86_400_000_000i64;
    let node = |kind, key: &str| Node {
        kind,
        key: key.to_string(),
    };
    let mut graph = MemoryGraph::default();
    let events = [
        (0, "d1"),  // linked
        (2, "d2"),  // a second device within 7 days of d1: over the limit, dropped
        (10, "d3"), // d1 is older than 7 days now: d3 may join
    ];
    for (index, (days, device)) in events.iter().enumerate() {
        let nodes = vec![
            node(IdentifierType::UserId, "u1"),
            node(IdentifierType::DeviceId, device),
        ];
        graph.ingest(
            &Evidence {
                id: index as u32,
                order: (days * day, [0; 16]),
                nodes,
            },
            &rules,
        );
    }
    let people = graph.people();
    let u1 = people
        .iter()
        .find(|(nodes, _)| nodes.contains(&node(IdentifierType::UserId, "u1")))
        .unwrap();
    assert!(u1.0.contains(&node(IdentifierType::DeviceId, "d1")));
    assert!(
        !u1.0.contains(&node(IdentifierType::DeviceId, "d2")),
        "{people:?}"
    );
    assert!(
        u1.0.contains(&node(IdentifierType::DeviceId, "d3")),
        "{people:?}"
    );
}
