//! The dependency graph over a plan's operations (petgraph), for the executor and
//! `flotilla graph`.
//!
//! A change becomes one operation, except a replace, which becomes two — destroy, then create —
//! so that a replaced node's volume can be detached before and attached after, and dependents
//! are destroyed before what they depend on. An edge `a -> b` means `a` runs before `b`:
//! - a create, update or kept resource comes after the creates and updates of what it depends
//!   on (an instance after its volumes, a gateway after its targets);
//! - a destroy comes before the destroys of what it depended on (a gateway before its targets,
//!   an instance before its volumes);
//! - a replace's destroy comes before its create;
//! - a gateway update that drops a target comes before that target's destroy;
//! - a network's destroy comes after every other destroy: whatever ran in it is gone first,
//!   also a node that failed over into its region and so never named it in the plan.
//!
//! A cycle is reported with the full cycle, so the user can see which references form it.

use super::{Action, Plan, PlanError};
use crate::state::ResourceKind;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// What an operation does to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Make it (a create, or the second half of a replace).
    Create,
    /// Change it in place.
    Update,
    /// Destroy it (a delete, or the first half of a replace).
    Destroy,
    /// Nothing: it stays as it is (kept so the graph shows the whole fleet).
    Keep,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Update => "update",
            Step::Destroy => "destroy",
            Step::Keep => "keep",
        }
    }
}

/// One operation of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The resource's address.
    pub address: String,
    /// What it is.
    pub kind: ResourceKind,
    /// What this operation does.
    pub step: Step,
    /// Whether it is half of a replace.
    pub replace: bool,
}

impl Operation {
    /// `create fleet.train[0]`, `destroy fleet.train[0] (replace)`.
    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.step.as_str(), self.address);
        if self.replace {
            s.push_str(" (replace)");
        }
        s
    }
}

/// The operations of a plan and the order they must run in.
#[derive(Debug, Clone, Default)]
pub struct OperationGraph {
    /// Edge `a -> b`: `a` runs before `b`.
    pub graph: DiGraph<Operation, ()>,
}

/// Builds the graph of `plan`'s operations; a cycle is an error naming it.
pub fn build(plan: &Plan) -> Result<OperationGraph, PlanError> {
    let mut graph: DiGraph<Operation, ()> =
        DiGraph::with_capacity(plan.changes.len(), plan.changes.len());
    // address -> (the node that makes or keeps it, the node that destroys it)
    let mut up: HashMap<&str, NodeIndex> = HashMap::with_capacity(plan.changes.len());
    let mut down: HashMap<&str, NodeIndex> = HashMap::new();
    for c in &plan.changes {
        let op = |step, replace| Operation {
            address: c.address.clone(),
            kind: c.kind,
            step,
            replace,
        };
        match c.action {
            Action::Create => {
                up.insert(&c.address, graph.add_node(op(Step::Create, false)));
            }
            Action::Update => {
                up.insert(&c.address, graph.add_node(op(Step::Update, false)));
            }
            Action::NoOp => {
                up.insert(&c.address, graph.add_node(op(Step::Keep, false)));
            }
            Action::Delete => {
                down.insert(&c.address, graph.add_node(op(Step::Destroy, false)));
            }
            Action::Replace => {
                let d = graph.add_node(op(Step::Destroy, true));
                let u = graph.add_node(op(Step::Create, true));
                graph.add_edge(d, u, ());
                down.insert(&c.address, d);
                up.insert(&c.address, u);
            }
        }
    }
    for c in &plan.changes {
        for dep in &c.depends_on {
            if let (Some(&a), Some(&b)) = (up.get(dep.as_str()), up.get(c.address.as_str())) {
                graph.add_edge(a, b, ());
            }
            if let (Some(&a), Some(&b)) = (down.get(c.address.as_str()), down.get(dep.as_str())) {
                graph.add_edge(a, b, ());
            }
        }
    }
    // A gateway update that drops targets deregisters them before they are destroyed: a
    // load balancer refuses to deregister an instance that is already gone.
    for c in &plan.changes {
        if c.action != Action::Update || c.kind != ResourceKind::Gateway {
            continue;
        }
        let Some(&update) = up.get(c.address.as_str()) else {
            continue;
        };
        let old_targets = c
            .before
            .as_ref()
            .and_then(|b| b.get("targets"))
            .and_then(serde_json::Value::as_array);
        for target in old_targets.into_iter().flatten().filter_map(|t| t.as_str()) {
            if c.depends_on.iter().any(|d| d == target) {
                continue;
            }
            if let Some(&destroy) = down.get(target) {
                graph.add_edge(update, destroy, ());
            }
        }
    }
    // Networks go last: a subnet still in use cannot be deleted.
    let network_destroys: Vec<NodeIndex> = graph
        .node_indices()
        .filter(|&n| graph[n].kind == ResourceKind::Network && graph[n].step == Step::Destroy)
        .collect();
    if !network_destroys.is_empty() {
        let others: Vec<NodeIndex> = graph
            .node_indices()
            .filter(|&n| graph[n].kind != ResourceKind::Network && graph[n].step == Step::Destroy)
            .collect();
        for &net in &network_destroys {
            for &other in &others {
                graph.add_edge(other, net, ());
            }
        }
    }
    let g = OperationGraph { graph };
    if let Some(cycle) = g.find_cycle() {
        return Err(PlanError::Cycle(cycle));
    }
    Ok(g)
}

impl OperationGraph {
    /// A cycle, as `a -> b -> a`, if there is one (tarjan's strongly connected components).
    pub fn find_cycle(&self) -> Option<String> {
        let sccs = petgraph::algo::tarjan_scc(&self.graph);
        let scc = sccs
            .into_iter()
            .find(|s| s.len() > 1 || s.first().is_some_and(|n| self.graph.contains_edge(*n, *n)))?;
        // Walk the component from its smallest node to print the cycle in order.
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        let start = *members.iter().next()?;
        let mut path = vec![start];
        let mut seen = BTreeSet::from([start]);
        let mut cur = start;
        loop {
            let next = self
                .graph
                .neighbors(cur)
                .filter(|n| members.contains(n))
                .min_by_key(|n| (usize::from(*n != start), n.index()))?;
            if next == start || seen.contains(&next) {
                path.push(next);
                break;
            }
            seen.insert(next);
            path.push(next);
            cur = next;
        }
        Some(
            path.iter()
                .map(|n| self.graph[*n].label())
                .collect::<Vec<_>>()
                .join(" -> "),
        )
    }

    /// The operations in an order that respects every edge; ties by plan order, so it is
    /// deterministic.
    pub fn order(&self) -> Vec<&Operation> {
        let mut indegree: Vec<usize> = vec![0; self.graph.node_count()];
        for e in self.graph.edge_indices() {
            if let Some((_, b)) = self.graph.edge_endpoints(e) {
                indegree[b.index()] += 1;
            }
        }
        let mut ready: BTreeSet<usize> =
            (0..indegree.len()).filter(|i| indegree[*i] == 0).collect();
        let mut out = Vec::with_capacity(indegree.len());
        while let Some(i) = ready.pop_first() {
            let n = NodeIndex::new(i);
            out.push(&self.graph[n]);
            for m in self.graph.neighbors(n) {
                indegree[m.index()] -= 1;
                if indegree[m.index()] == 0 {
                    ready.insert(m.index());
                }
            }
        }
        out
    }

    /// Graphviz DOT, nodes in plan order.
    pub fn to_dot(&self) -> String {
        let mut s =
            String::from("digraph flotilla {\n  rankdir = \"LR\";\n  node [shape = box];\n");
        for n in self.graph.node_indices() {
            let op = &self.graph[n];
            let _ = writeln!(
                s,
                "  n{} [label = \"{}\"{}];",
                n.index(),
                op.label(),
                dot_style(op)
            );
        }
        for e in self.sorted_edges() {
            let _ = writeln!(s, "  n{} -> n{};", e.0, e.1);
        }
        s.push_str("}\n");
        s
    }

    /// A Mermaid flowchart (renders in GitHub markdown).
    pub fn to_mermaid(&self) -> String {
        let mut s = String::from("flowchart LR\n");
        for n in self.graph.node_indices() {
            let _ = writeln!(s, "  n{}[\"{}\"]", n.index(), self.graph[n].label());
        }
        for e in self.sorted_edges() {
            let _ = writeln!(s, "  n{} --> n{}", e.0, e.1);
        }
        s
    }

    fn sorted_edges(&self) -> Vec<(usize, usize)> {
        let mut edges: Vec<(usize, usize)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (a.index(), b.index()))
            .collect();
        edges.sort_unstable();
        edges.dedup();
        edges
    }
}

fn dot_style(op: &Operation) -> &'static str {
    match op.step {
        Step::Create => ", color = \"darkgreen\"",
        Step::Update => ", color = \"goldenrod\"",
        Step::Destroy => ", color = \"red\"",
        Step::Keep => ", style = \"dashed\"",
    }
}
