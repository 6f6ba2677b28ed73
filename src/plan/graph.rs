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
    let mut heap: BinaryHeap<Reverse<u32>> = (0..nodes.len())
        .filter(|&i| indeg[i] == 0)
        .map(|i| Reverse(rank[i]))
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(r)) = heap.pop() {
        let i = by_key[r as usize] as usize;
        order.push(i);
        for next in g.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
            let j = next.index();
            indeg[j] -= 1;
            if indeg[j] == 0 {
                heap.push(Reverse(rank[j]));
            }
        }
    }
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
}
