//! The dependency graph of a plan and its stable topological order.
//!
//! Nodes are draft actions, edges go from a prerequisite to the action that needs it. The
//! order is Kahn's algorithm with a min-heap keyed by (address, kind, creation sequence),
//! so that among the actions that are ready the smallest address always goes first: the
//! same inputs always give the same order. A cycle is reported as a path of addresses.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::domain::op::ActionKind;
use crate::plan::action::Action;

/// What the graph needs to know of an action.
pub(crate) trait Node {
    fn address(&self) -> &str;
    fn kind(&self) -> ActionKind;
    fn deps(&self) -> &[usize];
}

impl Node for Action {
    fn address(&self) -> &str {
        &self.address
    }
    fn kind(&self) -> ActionKind {
        self.kind
    }
    fn deps(&self) -> &[usize] {
        &self.depends_on
    }
}

/// Build the petgraph graph of `nodes` (node index = position in `nodes`).
pub(crate) fn build<N: Node>(nodes: &[N]) -> DiGraph<(), ()> {
    let edges: usize = nodes.iter().map(|n| n.deps().len()).sum();
    let mut g = DiGraph::with_capacity(nodes.len(), edges);
    for _ in nodes {
        g.add_node(());
    }
    for (i, n) in nodes.iter().enumerate() {
        for &d in n.deps() {
            g.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
        }
    }
    g
}

/// A cycle found while ordering: a best-effort order (the acyclic prefix, then the rest by
/// address) and the cycle as node indices (first == last).
#[derive(Debug)]
pub(crate) struct Cycle {
    pub order: Vec<usize>,
    pub path: Vec<usize>,
}

/// The nodes that are ready (every prerequisite done) and not yet taken, in the order
/// Kahn's algorithm takes them.
trait Ready {
    fn push(&mut self, node: usize);
    fn pop(&mut self) -> Option<usize>;
}

/// Any order: a stack.
impl Ready for Vec<usize> {
    fn push(&mut self, node: usize) {
        Vec::push(self, node);
    }
    fn pop(&mut self) -> Option<usize> {
        Vec::pop(self)
    }
}

/// The smallest rank first: a min-heap of ranks (`by_key[rank]` is the node).
struct ByRank {
    heap: BinaryHeap<Reverse<u32>>,
    rank: Vec<u32>,
    by_key: Vec<u32>,
}

impl Ready for ByRank {
    fn push(&mut self, node: usize) {
        self.heap.push(Reverse(self.rank[node]));
    }
    fn pop(&mut self) -> Option<usize> {
        self.heap
            .pop()
            .map(|Reverse(r)| self.by_key[r as usize] as usize)
    }
}

/// Kahn's algorithm, the one in the crate: take a ready node from `ready`, `visit` it,
/// and release the nodes that depend on it, until none is ready. `indeg` holds each node's
/// number of prerequisites not yet visited; afterwards, the nodes left with `indeg > 0`
/// are those on a cycle or after one.
fn kahn(
    g: &DiGraph<(), ()>,
    indeg: &mut [usize],
    ready: &mut impl Ready,
    mut visit: impl FnMut(usize),
) {
    while let Some(i) = ready.pop() {
        visit(i);
        for next in g.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
            let j = next.index();
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.push(j);
            }
        }
    }
}

/// Whether every node becomes ready eventually: no dependency cycle. Every dependency
/// must be the index of a node (apply's preflight checks a plan's ids first).
pub(crate) fn is_acyclic<N: Node>(nodes: &[N]) -> bool {
    let g = build(nodes);
    let mut indeg: Vec<usize> = nodes.iter().map(|n| n.deps().len()).collect();
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut seen = 0;
    kahn(&g, &mut indeg, &mut ready, |_| seen += 1);
    seen == nodes.len()
}

/// A stable topological order of `nodes`, or a cycle.
pub(crate) fn topo_order<N: Node + Sync>(nodes: &[N]) -> Result<Vec<usize>, Cycle> {
    let g = build(nodes);
    // One edge per dependency entry, so the in-degree is the length of the list.
    let mut indeg: Vec<usize> = nodes.iter().map(|n| n.deps().len()).collect();
    // The tie-break key (address, kind, index) as one integer: the node's rank in that
    // order. A stable sort by (address, kind) keeps the index order among equals, and
    // runs of already sorted nodes (the diff emits most of them in address order) make it
    // close to linear. The heap then compares integers, not strings. (rayon's sort is
    // stable and uses both cores on a large plan.)
    use rayon::slice::ParallelSliceMut as _;
    let mut by_key: Vec<u32> = (0..nodes.len() as u32).collect();
    by_key.par_sort_by(|&a, &b| {
        let (a, b) = (&nodes[a as usize], &nodes[b as usize]);
        (a.address(), a.kind()).cmp(&(b.address(), b.kind()))
    });
    let mut rank = vec![0u32; nodes.len()];
    for (r, &i) in by_key.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    let heap: BinaryHeap<Reverse<u32>> = (0..nodes.len())
        .filter(|&i| indeg[i] == 0)
        .map(|i| Reverse(rank[i]))
        .collect();
    let mut ready = ByRank { heap, rank, by_key };
    let mut order = Vec::with_capacity(nodes.len());
    kahn(&g, &mut indeg, &mut ready, |i| order.push(i));
    if order.len() == nodes.len() {
        return Ok(order);
    }
    let path = find_cycle(&g, &indeg);
    let mut rest: Vec<usize> = (0..nodes.len()).filter(|&i| indeg[i] > 0).collect();
    rest.sort_by_key(|&i| (nodes[i].address(), nodes[i].kind(), i));
    order.extend(rest);
    Err(Cycle { order, path })
}

/// Walk backwards from a node left with predecessors until a node repeats.
fn find_cycle(g: &DiGraph<(), ()>, indeg: &[usize]) -> Vec<usize> {
    let start = indeg.iter().position(|&d| d > 0).expect("a node is left");
    let mut seen = vec![usize::MAX; indeg.len()];
    let mut walk = vec![start];
    seen[start] = 0;
    let mut v = start;
    loop {
        let pred = g
            .neighbors_directed(NodeIndex::new(v), Direction::Incoming)
            .map(|p| p.index())
            .filter(|&p| indeg[p] > 0)
            .min()
            .expect("a node left in Kahn's algorithm has a predecessor left");
        if seen[pred] != usize::MAX {
            // walk[seen[pred]..] = pred <- ... <- v; forward: pred -> ... -> v -> pred.
            let mut cycle: Vec<usize> = walk[seen[pred]..].iter().rev().copied().collect();
            cycle.rotate_right(1); // start at pred
            cycle.push(pred);
            return cycle;
        }
        seen[pred] = walk.len();
        walk.push(pred);
        v = pred;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct N(&'static str, Vec<usize>);
    impl Node for N {
        fn address(&self) -> &str {
            self.0
        }
        fn kind(&self) -> ActionKind {
            ActionKind::UpdateUser
        }
        fn deps(&self) -> &[usize] {
            &self.1
        }
    }

    #[test]
    fn ties_are_broken_by_address() {
        let nodes = vec![N("c", vec![]), N("a", vec![0]), N("b", vec![])];
        assert_eq!(topo_order(&nodes).unwrap(), vec![2, 0, 1]);
    }

    #[test]
    fn cycle_is_a_path() {
        let nodes = vec![N("x", vec![]), N("a", vec![2]), N("b", vec![1])];
        let c = topo_order(&nodes).err().unwrap().path;
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 3);
        let mut inner = c[..2].to_vec();
        inner.sort();
        assert_eq!(inner, vec![1, 2]);
        // every consecutive pair is an edge a -> b (b depends on a)
        for w in c.windows(2) {
            assert!(nodes[w[1]].1.contains(&w[0]));
        }
    }

    // Issue 11 item 1: the one Kahn's algorithm answers apply's "every action becomes
    // ready eventually" as well as the planner's order.
    #[test]
    fn acyclic_exactly_when_an_order_exists() {
        let cases: Vec<(&str, Vec<N>, bool)> = vec![
            ("empty", vec![], true),
            (
                "chain",
                vec![N("a", vec![]), N("b", vec![0]), N("c", vec![1])],
                true,
            ),
            (
                "diamond",
                vec![
                    N("a", vec![]),
                    N("b", vec![0]),
                    N("c", vec![0]),
                    N("d", vec![1, 2]),
                ],
                true,
            ),
            (
                "repeated dependency",
                vec![N("a", vec![]), N("b", vec![0, 0])],
                true,
            ),
            ("two-cycle", vec![N("a", vec![1]), N("b", vec![0])], false),
            (
                "cycle after a ready node",
                vec![N("x", vec![]), N("a", vec![0, 2]), N("b", vec![1])],
                false,
            ),
            ("self loop", vec![N("a", vec![0])], false),
        ];
        for (what, nodes, acyclic) in cases {
            assert_eq!(is_acyclic(&nodes), acyclic, "{what}");
            assert_eq!(topo_order(&nodes).is_ok(), acyclic, "{what}");
        }
    }
}
