//! The identity graph: identifiers are nodes, each event is evidence linking the identifiers it
//! carries, and a profile is a group of nodes formed under the merge rules.
//!
//! **Canonical result.** For a set of evidence, [`partition`] processes it in *event order*
//! (event time, then message id hash), not arrival order, with [`apply_evidence`] per event.
//! That partition is a function of the set alone.
//!
//! **Incremental result.** Ingestion cannot recompute everything per event. [`resolve`] looks at
//! the profiles an event touches: if the event is not older than any evidence in them, applying
//! it on top of the current state is exactly what the canonical order would do, so it returns a
//! cheap [`Resolution::Incremental`]. Otherwise (a late event) it gathers the evidence component
//! around those profiles and returns its canonical [`partition`] ([`Resolution::Recompute`]).
//! Limits are monotone (a subset of an allowed group is allowed), which is what makes the cheap
//! path exact; `tests/order_independence.rs` checks the whole by feeding the same events in
//! random orders.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cdp_core::IdentifierType;

use crate::IdentityRules;

/// When evidence happened: event time in microseconds, then a hash of the message id to break
/// ties the same way on every run.
pub type OrderKey = (i64, [u8; 16]);

/// An identifier in the graph: its type and an opaque key (a blind index in the engine).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node<K> {
    pub kind: IdentifierType,
    pub key: K,
}

/// One event's identifiers (all of them, including ones the rules dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence<K, E> {
    pub id: E,
    pub order: OrderKey,
    pub nodes: Vec<Node<K>>,
}

/// The identifiers of each type a group holds, as the event time (µs) each was linked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeCounts(BTreeMap<IdentifierType, Vec<i64>>);

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl TypeCounts {
    pub fn add(&mut self, kind: &IdentifierType, linked_at: i64) {
        self.0.entry(kind.clone()).or_default().push(linked_at);
    }

    /// How many identifiers of `kind` count against its limit for an event at `at`: all of
    /// them, or those linked within the type's window.
    pub fn count_at(&self, kind: &IdentifierType, at: i64, rules: &IdentityRules) -> usize {
        let Some(linked) = self.0.get(kind) else {
            return 0;
        };
        match rules.rule(kind).window_days {
            None => linked.len(),
            Some(days) => {
                let since = at.saturating_sub(i64::from(days).saturating_mul(MICROS_PER_DAY));
                linked.iter().filter(|t| **t > since).count()
            }
        }
    }

    pub fn absorb(&mut self, other: &TypeCounts) {
        for (kind, linked) in &other.0 {
            self.0.entry(kind.clone()).or_default().extend(linked);
        }
    }

    /// Whether the union of two disjoint groups respects every limit for an event at `at`.
    pub fn fits_with(&self, other: &TypeCounts, at: i64, rules: &IdentityRules) -> bool {
        other.0.keys().all(|kind| {
            self.count_at(kind, at, rules) + other.count_at(kind, at, rules)
                <= rules.rule(kind).limit
        })
    }
}

/// Groups of nodes being formed: the in-memory union-find of [`partition`], or the engine's
/// view of stored profiles.
pub trait GroupState<K> {
    type Group: Copy + Eq;
    fn group_of(&self, node: &Node<K>) -> Option<Self::Group>;
    fn counts(&self, group: Self::Group) -> TypeCounts;
    /// A new group holding `node`, linked at event time `at`.
    fn create(&mut self, node: &Node<K>, at: i64) -> Self::Group;
    fn attach(&mut self, group: Self::Group, node: &Node<K>, at: i64);
    /// Merges two groups; returns the survivor.
    fn merge(&mut self, a: Self::Group, b: Self::Group) -> Self::Group;
}

/// Why an identifier of an event was not linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Linking it would merge two profiles beyond a type limit (merge protection).
    MergeWouldExceedLimit,
    /// The anchor's profile already holds the limit of this type.
    TypeLimitReached,
}

/// The result of one event on the groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome<K, G> {
    /// The group the event belongs to (its anchor's).
    pub group: G,
    pub dropped: Vec<(Node<K>, DropReason)>,
}

/// Sorts an event's nodes strongest first (priority, then type, then key) without duplicates.
pub fn ordered_nodes<K: Clone + Ord>(nodes: &[Node<K>], rules: &IdentityRules) -> Vec<Node<K>> {
    let mut sorted: Vec<Node<K>> = nodes.to_vec();
    sorted.sort_by(|a, b| {
        (rules.rule(&a.kind).priority, &a.kind, &a.key).cmp(&(
            rules.rule(&b.kind).priority,
            &b.kind,
            &b.key,
        ))
    });
    sorted.dedup();
    sorted
}

/// Applies one event: the strongest identifier is the anchor; each weaker one joins the
/// anchor's group (attaching a new identifier or merging its group) unless that breaks a limit,
/// in which case it is dropped for this event.
pub fn apply_evidence<K: Clone + Ord, S: GroupState<K>>(
    state: &mut S,
    nodes: &[Node<K>],
    at: i64,
    rules: &IdentityRules,
) -> Option<StepOutcome<K, S::Group>> {
    let nodes = ordered_nodes(nodes, rules);
    let (anchor, rest) = nodes.split_first()?;
    let mut group = match state.group_of(anchor) {
        Some(group) => group,
        None => state.create(anchor, at),
    };
    let mut dropped = Vec::new();
    for node in rest {
        match state.group_of(node) {
            Some(other) if other == group => {}
            Some(other) => {
                if state
                    .counts(group)
                    .fits_with(&state.counts(other), at, rules)
                {
                    group = state.merge(group, other);
                } else {
                    dropped.push((node.clone(), DropReason::MergeWouldExceedLimit));
                }
            }
            None => {
                if state.counts(group).count_at(&node.kind, at, rules)
                    < rules.rule(&node.kind).limit
                {
                    state.attach(group, node, at);
                } else {
                    dropped.push((node.clone(), DropReason::TypeLimitReached));
                }
            }
        }
    }
    Some(StepOutcome { group, dropped })
}

/// One group of the canonical partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionGroup<K, E> {
    pub nodes: BTreeSet<Node<K>>,
    /// When each node was linked (event time, µs).
    pub linked_at: BTreeMap<Node<K>, i64>,
    /// Evidence anchored in this group, in event order.
    pub evidence: Vec<E>,
    pub first_order: OrderKey,
    pub last_order: OrderKey,
}

/// The canonical partition of a set of evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition<K, E> {
    pub groups: Vec<PartitionGroup<K, E>>,
    /// Identifiers dropped per evidence.
    pub dropped: Vec<(E, Node<K>, DropReason)>,
}

struct UnionFind<K> {
    index: BTreeMap<Node<K>, usize>,
    parent: Vec<usize>,
    counts: Vec<TypeCounts>,
    linked_at: Vec<i64>,
}

impl<K: Clone + Ord> UnionFind<K> {
    fn root(&self, mut at: usize) -> usize {
        while self.parent[at] != at {
            at = self.parent[at];
        }
        at
    }
}

impl<K: Clone + Ord> GroupState<K> for UnionFind<K> {
    type Group = usize;

    fn group_of(&self, node: &Node<K>) -> Option<usize> {
        self.index.get(node).map(|&at| self.root(at))
    }

    fn counts(&self, group: usize) -> TypeCounts {
        self.counts[group].clone()
    }

    fn create(&mut self, node: &Node<K>, at: i64) -> usize {
        let slot = self.parent.len();
        self.parent.push(slot);
        let mut counts = TypeCounts::default();
        counts.add(&node.kind, at);
        self.counts.push(counts);
        self.linked_at.push(at);
        self.index.insert(node.clone(), slot);
        slot
    }

    fn attach(&mut self, group: usize, node: &Node<K>, at: i64) {
        let slot = self.parent.len();
        self.parent.push(group);
        self.counts.push(TypeCounts::default());
        self.counts[group].add(&node.kind, at);
        self.linked_at.push(at);
        self.index.insert(node.clone(), slot);
    }

    fn merge(&mut self, a: usize, b: usize) -> usize {
        // The group created first survives: deterministic, since creation follows event order.
        let (survivor, absorbed) = if a < b { (a, b) } else { (b, a) };
        self.parent[absorbed] = survivor;
        let moved = std::mem::take(&mut self.counts[absorbed]);
        self.counts[survivor].absorb(&moved);
        survivor
    }
}

/// The canonical partition: evidence in event order, [`apply_evidence`] each. Groups that no
/// evidence anchors (identifiers only ever dropped) are not profiles and are left out.
pub fn partition<K: Clone + Ord, E: Clone + Ord>(
    evidence: &[Evidence<K, E>],
    rules: &IdentityRules,
) -> Partition<K, E> {
    let mut sorted: Vec<&Evidence<K, E>> = evidence.iter().collect();
    sorted.sort_by(|a, b| (a.order, &a.id).cmp(&(b.order, &b.id)));
    let mut state = UnionFind {
        index: BTreeMap::new(),
        parent: Vec::new(),
        counts: Vec::new(),
        linked_at: Vec::new(),
    };
    let mut anchored: Vec<(usize, &Evidence<K, E>)> = Vec::new();
    let mut dropped = Vec::new();
    for item in sorted {
        let Some(outcome) = apply_evidence(&mut state, &item.nodes, item.order.0, rules) else {
            continue;
        };
        for (node, reason) in outcome.dropped {
            dropped.push((item.id.clone(), node, reason));
        }
        anchored.push((outcome.group, item));
    }
    let mut groups: BTreeMap<usize, PartitionGroup<K, E>> = BTreeMap::new();
    for (group, item) in anchored {
        let root = state.root(group);
        let entry = groups.entry(root).or_insert_with(|| PartitionGroup {
            nodes: BTreeSet::new(),
            linked_at: BTreeMap::new(),
            evidence: Vec::new(),
            first_order: item.order,
            last_order: item.order,
        });
        entry.evidence.push(item.id.clone());
        entry.first_order = entry.first_order.min(item.order);
        entry.last_order = entry.last_order.max(item.order);
    }
    for (node, &slot) in &state.index {
        if let Some(group) = groups.get_mut(&state.root(slot)) {
            group.nodes.insert(node.clone());
            group.linked_at.insert(node.clone(), state.linked_at[slot]);
        }
    }
    Partition {
        groups: groups.into_values().collect(),
        dropped,
    }
}

/// What a stored profile looks like to the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSummary {
    pub counts: TypeCounts,
    /// Event order of its oldest and newest evidence.
    pub first_order: OrderKey,
    pub last_order: OrderKey,
}

/// Read access to the stored graph.
pub trait GraphView<K, E> {
    type Profile: Copy + Ord + std::fmt::Debug;
    type Error;
    /// The profile an identifier belongs to, if any.
    fn profile_of(&mut self, node: &Node<K>) -> Result<Option<Self::Profile>, Self::Error>;
    fn summary(&mut self, profile: Self::Profile) -> Result<ProfileSummary, Self::Error>;
    /// At least the newest evidence that mentions `node` and is anchored outside the node's
    /// profile (dropped there, or the node has none); it may be newer, up to the newest
    /// mention of all. Evidence anchored in the node's profile is covered by the profile's
    /// `last_order`, which [`resolve`] checks too, so a store need not rewrite a node for it.
    fn last_mention(&mut self, node: &Node<K>) -> Result<Option<OrderKey>, Self::Error>;
    /// Every evidence that mentions `node`.
    fn evidence_of_node(&mut self, node: &Node<K>) -> Result<Vec<Evidence<K, E>>, Self::Error>;
}

/// What to change in the stored graph for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<K, E, P> {
    /// Apply on top of the current state.
    Incremental {
        /// The profile the event belongs to; `None`: a new profile.
        target: Option<P>,
        /// Profiles merged into the target (the target survives: it is the oldest).
        merged: Vec<P>,
        /// New identifiers of the target.
        attached: Vec<Node<K>>,
        dropped: Vec<(Node<K>, DropReason)>,
    },
    /// Replace these profiles by the canonical partition of the evidence component (which
    /// includes the event).
    Recompute {
        profiles: Vec<P>,
        partition: Partition<K, E>,
        /// The evidence component was larger than the limit and was cut there.
        truncated: bool,
    },
}

/// Largest evidence component [`resolve`] recomputes at once.
pub const MAX_RECOMPUTE_EVIDENCE: usize = 50_000;

/// Decides how one event changes the stored graph (see the module documentation).
///
/// The cheap incremental step is exact when nothing already stored comes after the event in
/// event order *and could be affected by it*: evidence anchored in the profiles it touches
/// (their `last_order`), and evidence anchored anywhere else that mentions one of its
/// identifiers ([`GraphView::last_mention`]). Otherwise the evidence component
/// (everything linked through shared identifiers, in either direction) is recomputed.
pub fn resolve<K, E, V>(
    view: &mut V,
    event: &Evidence<K, E>,
    rules: &IdentityRules,
) -> Result<Resolution<K, E, V::Profile>, V::Error>
where
    K: Clone + Ord,
    E: Clone + Ord,
    V: GraphView<K, E>,
{
    let mut involved = BTreeMap::new();
    let mut late = false;
    for node in &event.nodes {
        if let Some(profile) = view.profile_of(node)?
            && !involved.contains_key(&profile)
        {
            let summary = view.summary(profile)?;
            late |= summary.last_order > event.order;
            involved.insert(profile, summary);
        }
        late |= view
            .last_mention(node)?
            .is_some_and(|order| order > event.order);
    }
    if !late {
        let mut state = ViewState::new(view, &involved, &event.nodes)?;
        let outcome = apply_evidence(&mut state, &event.nodes, event.order.0, rules);
        let Some(outcome) = outcome else {
            return Ok(Resolution::Incremental {
                target: None,
                merged: Vec::new(),
                attached: Vec::new(),
                dropped: Vec::new(),
            });
        };
        return Ok(state.into_resolution(outcome));
    }
    // A late event: recompute its evidence component canonically.
    let (profiles, partition, truncated) = recompute(view, &event.nodes, Some(event), rules)?;
    Ok(Resolution::Recompute {
        profiles,
        partition,
        truncated,
    })
}

/// The canonical partition of the evidence component around `start` (everything linked to it
/// through shared identifiers, in either direction), with `extra` evidence added (it wins over
/// a stored evidence with the same id), and the stored profiles that component covers. Used for
/// late events and for splits.
#[allow(clippy::type_complexity)]
pub fn recompute<K, E, V>(
    view: &mut V,
    start: &[Node<K>],
    extra: Option<&Evidence<K, E>>,
    rules: &IdentityRules,
) -> Result<(Vec<V::Profile>, Partition<K, E>, bool), V::Error>
where
    K: Clone + Ord,
    E: Clone + Ord,
    V: GraphView<K, E>,
{
    let mut seen_nodes: BTreeSet<Node<K>> = BTreeSet::new();
    let mut queue: VecDeque<Node<K>> = start.iter().cloned().collect();
    let mut evidence: BTreeMap<E, Evidence<K, E>> = BTreeMap::new();
    if let Some(extra) = extra {
        queue.extend(extra.nodes.iter().cloned());
        evidence.insert(extra.id.clone(), extra.clone());
    }
    let mut profiles = BTreeSet::new();
    let mut truncated = false;
    while let Some(node) = queue.pop_front() {
        if !seen_nodes.insert(node.clone()) {
            continue;
        }
        if let Some(profile) = view.profile_of(&node)? {
            profiles.insert(profile);
        }
        if evidence.len() >= MAX_RECOMPUTE_EVIDENCE {
            truncated = true;
            continue;
        }
        for item in view.evidence_of_node(&node)? {
            if !evidence.contains_key(&item.id) {
                queue.extend(item.nodes.iter().cloned());
                evidence.insert(item.id.clone(), item);
            }
        }
    }
    let evidence: Vec<Evidence<K, E>> = evidence.into_values().collect();
    Ok((
        profiles.into_iter().collect(),
        partition(&evidence, rules),
        truncated,
    ))
}

/// [`GroupState`] over the profiles an event touches, recording what the step decides.
struct ViewState<K, P> {
    groups: Vec<ViewGroup<P>>,
    node_group: BTreeMap<Node<K>, usize>,
    attached: Vec<(usize, Node<K>)>,
}

struct ViewGroup<P> {
    profile: Option<P>,
    first_order: Option<OrderKey>,
    counts: TypeCounts,
    merged_into: Option<usize>,
    absorbed: Vec<P>,
}

impl<K: Clone + Ord, P: Copy + Ord> ViewState<K, P> {
    fn new<E, V: GraphView<K, E, Profile = P>>(
        view: &mut V,
        involved: &BTreeMap<P, ProfileSummary>,
        nodes: &[Node<K>],
    ) -> Result<Self, V::Error> {
        let mut state = Self {
            groups: Vec::new(),
            node_group: BTreeMap::new(),
            attached: Vec::new(),
        };
        let mut profile_group = BTreeMap::new();
        for (profile, summary) in involved {
            profile_group.insert(*profile, state.groups.len());
            state.groups.push(ViewGroup {
                profile: Some(*profile),
                first_order: Some(summary.first_order),
                counts: summary.counts.clone(),
                merged_into: None,
                absorbed: Vec::new(),
            });
        }
        for node in nodes {
            if let Some(profile) = view.profile_of(node)?
                && let Some(&group) = profile_group.get(&profile)
            {
                state.node_group.insert(node.clone(), group);
            }
        }
        Ok(state)
    }

    fn root(&self, mut group: usize) -> usize {
        while let Some(next) = self.groups[group].merged_into {
            group = next;
        }
        group
    }

    fn into_resolution<E>(self, outcome: StepOutcome<K, usize>) -> Resolution<K, E, P> {
        let target = self.root(outcome.group);
        let attached = self
            .attached
            .iter()
            .filter(|(group, _)| self.root(*group) == target)
            .map(|(_, node)| node.clone())
            .collect();
        let group = &self.groups[target];
        Resolution::Incremental {
            target: group.profile,
            merged: group.absorbed.clone(),
            attached,
            dropped: outcome.dropped,
        }
    }
}

impl<K: Clone + Ord, P: Copy + Ord> GroupState<K> for ViewState<K, P> {
    type Group = usize;

    fn group_of(&self, node: &Node<K>) -> Option<usize> {
        self.node_group.get(node).map(|&group| self.root(group))
    }

    fn counts(&self, group: usize) -> TypeCounts {
        self.groups[group].counts.clone()
    }

    fn create(&mut self, node: &Node<K>, at: i64) -> usize {
        let group = self.groups.len();
        let mut counts = TypeCounts::default();
        counts.add(&node.kind, at);
        self.groups.push(ViewGroup {
            profile: None,
            first_order: None,
            counts,
            merged_into: None,
            absorbed: Vec::new(),
        });
        self.node_group.insert(node.clone(), group);
        self.attached.push((group, node.clone()));
        group
    }

    fn attach(&mut self, group: usize, node: &Node<K>, at: i64) {
        self.groups[group].counts.add(&node.kind, at);
        self.node_group.insert(node.clone(), group);
        self.attached.push((group, node.clone()));
    }

    fn merge(&mut self, a: usize, b: usize) -> usize {
        // The older profile survives (stable ids); a new group never outlives a stored one.
        let key = |group: &ViewGroup<P>| {
            (
                group.first_order.is_none(),
                group.first_order,
                group.profile,
            )
        };
        let (survivor, absorbed) = if key(&self.groups[a]) <= key(&self.groups[b]) {
            (a, b)
        } else {
            (b, a)
        };
        let moved = std::mem::take(&mut self.groups[absorbed].counts);
        let mut moved_profiles = std::mem::take(&mut self.groups[absorbed].absorbed);
        if let Some(profile) = self.groups[absorbed].profile {
            moved_profiles.push(profile);
        }
        self.groups[absorbed].merged_into = Some(survivor);
        let survivor_group = &mut self.groups[survivor];
        survivor_group.counts.absorb(&moved);
        survivor_group.absorbed.extend(moved_profiles);
        survivor
    }
}
