//! The stage graph: petgraph nodes are stages, edges carry the input role.
//!
//! Built only after every reference resolved, so node and edge lookups here
//! cannot fail on user input. Offers a deterministic topological order (ties
//! broken by position in the file), cycle discovery that returns the cycle as
//! a path, and renderings for `tailor dag` (text, Mermaid, Graphviz dot).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

/// A directed acyclic graph of stage names.
#[derive(Debug, Clone, Default)]
pub struct Dag {
    graph: DiGraph<String, String>,
    index: BTreeMap<String, NodeIndex>,
}

impl Dag {
    /// Nodes in the given order (their file order).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut dag = Dag::default();
        for n in names {
            let i = dag.graph.add_node(n.to_string());
            dag.index.insert(n.to_string(), i);
        }
        dag
    }

    /// Add `from → to`, labelled with the consumer's input role.
    pub fn edge(&mut self, from: &str, to: &str, label: &str) {
        if let (Some(&a), Some(&b)) = (self.index.get(from), self.index.get(to)) {
            self.graph.add_edge(a, b, label.to_string());
        }
    }

    /// A cycle, as the list of stages along it (first repeated at the end),
    /// or `None` when the graph is acyclic.
    pub fn find_cycle(&self) -> Option<Vec<String>> {
        for scc in tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.find_edge(scc[0], scc[0]).is_some();
            if scc.len() < 2 && !self_loop {
                continue;
            }
            // Walk inside the component from its first-declared node until
            // we return to it.
            let start = *scc.iter().min().unwrap_or(&scc[0]);
            let mut path = vec![start];
            let mut cur = start;
            loop {
                let next = self
                    .graph
                    .neighbors_directed(cur, Direction::Outgoing)
                    .filter(|n| scc.contains(n))
                    .min_by_key(|n| (path.contains(n) && *n != start, n.index()));
                let Some(next) = next else { break };
                if next == start || path.contains(&next) {
                    path.push(next);
                    break;
                }
                path.push(next);
                cur = next;
            }
            return Some(path.into_iter().map(|i| self.graph[i].clone()).collect());
        }
        None
    }

    /// Topological order, ties broken by file order.
    pub fn order(&self) -> Vec<String> {
        let mut indeg: Vec<usize> = self.graph.node_indices().map(|n| self.graph.neighbors_directed(n, Direction::Incoming).count()).collect();
        let mut ready: std::collections::BTreeSet<NodeIndex> = self.graph.node_indices().filter(|n| indeg[n.index()] == 0).collect();
        let mut out = Vec::new();
        while let Some(n) = ready.pop_first() {
            out.push(self.graph[n].clone());
            for m in self.graph.neighbors_directed(n, Direction::Outgoing) {
                indeg[m.index()] -= 1;
                if indeg[m.index()] == 0 {
                    ready.insert(m);
                }
            }
        }
        out
    }

    /// Direct upstream stages of `name`.
    pub fn parents(&self, name: &str) -> Vec<String> {
        self.neighbors(name, Direction::Incoming)
    }

    /// Direct downstream stages of `name`.
    pub fn children(&self, name: &str) -> Vec<String> {
        self.neighbors(name, Direction::Outgoing)
    }

    fn neighbors(&self, name: &str, dir: Direction) -> Vec<String> {
        let Some(&i) = self.index.get(name) else { return Vec::new() };
        let mut v: Vec<String> = self.graph.neighbors_directed(i, dir).map(|n| self.graph[n].clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// `name` and everything upstream of it.
    pub fn ancestors_of(&self, name: &str) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            if seen.insert(n.clone()) {
                stack.extend(self.parents(&n));
            }
        }
        seen.into_iter().collect()
    }

    /// Render as indented text, one line per stage in topological order.
    pub fn render_text(&self, kinds: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for name in self.order() {
            let kind = kinds.get(&name).map(String::as_str).unwrap_or("?");
            let parents = self.parents(&name);
            if parents.is_empty() {
                let _ = writeln!(out, "{name} ({kind})");
            } else {
                let _ = writeln!(out, "{name} ({kind}) <- {}", parents.join(", "));
            }
        }
        out
    }

    /// Render as a Mermaid flowchart.
    pub fn render_mermaid(&self, kinds: &BTreeMap<String, String>) -> String {
        let mut out = String::from("flowchart LR\n");
        for name in self.order() {
            let kind = kinds.get(&name).map(String::as_str).unwrap_or("?");
            let _ = writeln!(out, "    {}[\"{name}<br/><i>{kind}</i>\"]", mermaid_id(&name));
        }
        for e in self.graph.edge_references() {
            let _ = writeln!(out, "    {} -->|{}| {}", mermaid_id(&self.graph[e.source()]), e.weight(), mermaid_id(&self.graph[e.target()]));
        }
        out
    }

    /// Render as an SVG picture (for reports): stages in columns by depth
    /// (longest path from a source), edges as curves from left to right.
    /// `status` colours a stage (`ran`, `cached`, `failed`, …) when given.
    pub fn render_svg(&self, kinds: &BTreeMap<String, String>, status: &BTreeMap<String, String>) -> String {
        let order = self.order();
        let mut depth: BTreeMap<String, usize> = BTreeMap::new();
        for n in &order {
            let d = self.parents(n).iter().filter_map(|p| depth.get(p)).map(|d| d + 1).max().unwrap_or(0);
            depth.insert(n.clone(), d);
        }
        let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
        let mut pos: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let (w, h, gx, gy) = (150.0, 44.0, 60.0, 18.0);
        for n in &order {
            let d = depth[n];
            let r = rows.entry(d).or_insert(0);
            pos.insert(n.clone(), (10.0 + d as f64 * (w + gx), 10.0 + *r as f64 * (h + gy)));
            *r += 1;
        }
        let width = 20.0 + (depth.values().max().copied().unwrap_or(0) + 1) as f64 * (w + gx) - gx;
        let height = 20.0 + rows.values().max().copied().unwrap_or(1) as f64 * (h + gy) - gy;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n"
        );
        for e in self.graph.edge_references() {
            let (a, b) = (&pos[&self.graph[e.source()]], &pos[&self.graph[e.target()]]);
            let (x1, y1, x2, y2) = (a.0 + w, a.1 + h / 2.0, b.0, b.1 + h / 2.0);
            let dash = if e.weight() == "after" { " stroke-dasharray=\"4 3\"" } else { "" };
            let _ = writeln!(
                out,
                "<path d=\"M{x1:.0},{y1:.0} C{:.0},{y1:.0} {:.0},{y2:.0} {x2:.0},{y2:.0}\" fill=\"none\" stroke=\"#888\"{dash}><title>{}</title></path>",
                x1 + gx / 2.0,
                x2 - gx / 2.0,
                xml(e.weight())
            );
        }
        for n in &order {
            let (x, y) = pos[n];
            let kind = kinds.get(n).map(String::as_str).unwrap_or("?");
            let fill = match status.get(n).map(String::as_str) {
                Some("ran") => "#dff3e4",
                Some("cached") => "#e8eef8",
                Some("failed") => "#fbe0dc",
                Some("skipped" | "not-needed") => "#eeeeee",
                _ => "#ffffff",
            };
            let _ = writeln!(
                out,
                "<g><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{w:.0}\" height=\"{h:.0}\" rx=\"8\" fill=\"{fill}\" stroke=\"#555\"/><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\" fill=\"#555\">{}</text></g>",
                x + w / 2.0,
                y + 18.0,
                xml(n),
                x + w / 2.0,
                y + 34.0,
                xml(kind)
            );
        }
        out.push_str("</svg>\n");
        out
    }

    /// Render as Graphviz dot.
    pub fn render_dot(&self, kinds: &BTreeMap<String, String>) -> String {
        let mut out = String::from("digraph pipeline {\n    rankdir=LR;\n    node [shape=box, style=rounded];\n");
        for name in self.order() {
            let kind = kinds.get(&name).map(String::as_str).unwrap_or("?");
            let _ = writeln!(out, "    \"{name}\" [label=\"{name}\\n({kind})\"];");
        }
        for e in self.graph.edge_references() {
            let _ = writeln!(out, "    \"{}\" -> \"{}\" [label=\"{}\"];", self.graph[e.source()], self.graph[e.target()], e.weight());
        }
        out.push_str("}\n");
        out
    }
}

fn mermaid_id(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_cycles() {
        let mut d = Dag::new(["c", "a", "b"]);
        d.edge("a", "b", "input");
        d.edge("b", "c", "input");
        assert_eq!(d.order(), vec!["a", "b", "c"]);
        assert!(d.find_cycle().is_none());
        d.edge("c", "a", "input");
        let cyc = d.find_cycle().unwrap();
        assert_eq!(cyc.first(), cyc.last());
        assert_eq!(cyc.len(), 4);
        let mut s = Dag::new(["x"]);
        s.edge("x", "x", "input");
        assert_eq!(s.find_cycle().unwrap(), vec!["x", "x"]);
    }
}
