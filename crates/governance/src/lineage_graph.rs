//! Lineage graphs: the tables and sources around one table, built from the
//! recorded [`LineageFact`]s, and their renderings as an indented text tree,
//! Graphviz DOT and a Mermaid flowchart.
//!
//! A fact says that a run of a job read its inputs and wrote its outputs; every
//! (input, output) pair of a fact is an edge `input -> output` labelled with
//! the job. Edges repeat across runs and are kept once. A table that a run
//! reads and writes (`input == output`) gives no edge.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::LineageFact;

/// The zones whose `zone/dataset` names are tables; anything else is a source.
const ZONES: [&str; 4] = ["raw", "cleansed", "curated", "consumption"];

/// Which way to walk from the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards what the root is built from.
    Upstream,
    /// Towards what is built from the root.
    Downstream,
    /// Both ways.
    Both,
}

/// A table or source in a lineage graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageNode {
    /// `zone/dataset`, or a source URI such as `file:///data/day1/a.csv`.
    pub id: String,
    /// `"table"` for `zone/dataset` with zone `raw`, `cleansed`, `curated` or
    /// `consumption`; `"source"` for anything else.
    pub kind: String,
    /// The newest version seen in the facts.
    pub version: Option<i64>,
}

/// A job that read `from` and wrote `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageEdge {
    /// The table or source read.
    pub from: String,
    /// The table written.
    pub to: String,
    /// The job, e.g. `cleanse:user_events`.
    pub job: String,
}

/// An output column computed from an input column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnEdge {
    /// The input column, e.g. `raw/user_events.email`.
    pub from: String,
    /// The output column, e.g. `cleansed/user_events.email`.
    pub to: String,
    /// How: `identity` or `transformation`.
    pub kind: String,
}

/// The lineage around one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageGraph {
    /// The table the graph was built around.
    pub root: String,
    /// Every node reached, the root included, sorted by id.
    pub nodes: Vec<LineageNode>,
    /// The edges walked, sorted by (from, to, job).
    pub edges: Vec<LineageEdge>,
    /// Column edges between nodes of the graph, sorted by (to, from, kind).
    pub columns: Vec<ColumnEdge>,
    /// The direction walked (chooses the sections of [`LineageGraph::to_text`]).
    #[serde(skip)]
    direction: Direction,
}

/// A table-level edge: (from, to, job).
type Edge<'a> = (&'a str, &'a str, &'a str);

impl LineageGraph {
    /// Builds the graph around `root` (`zone/dataset`) from every fact, walking
    /// `direction` up to `depth` hops (`None`: no limit). Edges are kept once
    /// however many runs recorded them, a node's version is the newest seen,
    /// and column edges are kept only between nodes of the graph. Cycles are
    /// walked once. A root that appears in no fact gives a graph of the root
    /// alone.
    pub fn build(
        facts: &[LineageFact],
        root: &str,
        direction: Direction,
        depth: Option<usize>,
    ) -> Self {
        let mut all_edges: BTreeSet<Edge> = BTreeSet::new();
        let mut versions: HashMap<&str, i64> = HashMap::new();
        for fact in facts {
            for table in fact.inputs.iter().chain(&fact.outputs) {
                if let Some(version) = table.version {
                    versions
                        .entry(table.table.as_str())
                        .and_modify(|newest| *newest = (*newest).max(version))
                        .or_insert(version);
                }
            }
            for input in &fact.inputs {
                for output in &fact.outputs {
                    if input.table != output.table {
                        all_edges.insert((
                            input.table.as_str(),
                            output.table.as_str(),
                            fact.job.as_str(),
                        ));
                    }
                }
            }
        }

        let mut reached: BTreeSet<&str> = BTreeSet::from([root]);
        let mut kept: BTreeSet<Edge> = BTreeSet::new();
        if matches!(direction, Direction::Upstream | Direction::Both) {
            walk(&all_edges, root, depth, true, &mut reached, &mut kept);
        }
        if matches!(direction, Direction::Downstream | Direction::Both) {
            walk(&all_edges, root, depth, false, &mut reached, &mut kept);
        }

        let mut columns: BTreeSet<(String, &str, &str)> = BTreeSet::new();
        for fact in facts {
            let Some(output) = fact.outputs.first() else {
                continue;
            };
            if !reached.contains(output.table.as_str()) {
                continue;
            }
            for column in &fact.columns {
                for input in &column.inputs {
                    if reached.contains(split_column_ref(input).0) {
                        let to = format!("{}.{}", output.table, column.column);
                        columns.insert((to, input.as_str(), column.kind.as_str()));
                    }
                }
            }
        }

        LineageGraph {
            root: root.to_string(),
            nodes: reached
                .iter()
                .map(|id| LineageNode {
                    id: (*id).to_string(),
                    kind: if is_table(id) { "table" } else { "source" }.to_string(),
                    version: versions.get(id).copied(),
                })
                .collect(),
            edges: kept
                .into_iter()
                .map(|(from, to, job)| LineageEdge {
                    from: from.to_string(),
                    to: to.to_string(),
                    job: job.to_string(),
                })
                .collect(),
            columns: columns
                .into_iter()
                .map(|(to, from, kind)| ColumnEdge {
                    from: from.to_string(),
                    to,
                    kind: kind.to_string(),
                })
                .collect(),
            direction,
        }
    }

    /// The graph as an indented tree, e.g. upstream:
    ///
    /// ```text
    /// consumption/daily_purchases
    ///   <- curated/user_events  (consume:daily_purchases)
    ///     <- cleansed/user_events  (curate:user_events)
    /// ```
    ///
    /// Downstream uses `->`; a graph walked both ways has an `upstream:` and a
    /// `downstream:` section (`  (none)` when empty). Several jobs between the same two nodes share a
    /// line (`(job1, job2)`); a node met again is marked `(cycle)` when it is
    /// its own ancestor and `(see above)` when its subtree was already printed.
    /// A `columns:` section follows when there are column edges: per output
    /// table, `to <- from1, from2 (kind)`. Everything is sorted.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.root);
        let sections: &[(bool, &str)] = match self.direction {
            Direction::Upstream => &[(true, "")],
            Direction::Downstream => &[(false, "")],
            Direction::Both => &[(true, "upstream:\n"), (false, "downstream:\n")],
        };
        for &(upstream, header) in sections {
            out.push_str(header);
            let before = out.len();
            self.write_tree(&mut out, upstream);
            if !header.is_empty() && out.len() == before {
                out.push_str("  (none)\n");
            }
        }
        self.write_columns(&mut out);
        out
    }

    /// The graph in Graphviz DOT: tables as boxes, sources as notes, the root
    /// bold, labels with `@vN` when the version is known, edges labelled with
    /// the job.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph lineage {\n  rankdir=LR;\n");
        for node in &self.nodes {
            let id = dot_escape(&node.id);
            let label = dot_escape(&node_label(node));
            let shape = if node.kind == "source" { "note" } else { "box" };
            let bold = if node.id == self.root {
                ", style=bold"
            } else {
                ""
            };
            let _ = writeln!(out, "  \"{id}\" [label=\"{label}\", shape={shape}{bold}];");
        }
        for edge in &self.edges {
            let from = dot_escape(&edge.from);
            let to = dot_escape(&edge.to);
            let job = dot_escape(&edge.job);
            let _ = writeln!(out, "  \"{from}\" -> \"{to}\" [label=\"{job}\"];");
        }
        out.push_str("}\n");
        out
    }

    /// The graph as a Mermaid `flowchart LR`: nodes `n0`, `n1`, ... in node
    /// order with quoted labels (sources as parallelograms), edges
    /// `n0 -->|job| n1`, the root drawn with a thick border.
    pub fn to_mermaid(&self) -> String {
        let ids: HashMap<&str, String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.id.as_str(), format!("n{i}")))
            .collect();
        let mut out = String::from("flowchart LR\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let label = mermaid_escape(&node_label(node));
            let (open, close) = if node.kind == "source" {
                ("[/\"", "\"/]")
            } else {
                ("[\"", "\"]")
            };
            let _ = writeln!(out, "  n{i}{open}{label}{close}");
        }
        for edge in &self.edges {
            let (Some(from), Some(to)) = (ids.get(edge.from.as_str()), ids.get(edge.to.as_str()))
            else {
                continue;
            };
            let job = mermaid_escape(&edge.job);
            let _ = writeln!(out, "  {from} -->|{job}| {to}");
        }
        if let Some(root) = ids.get(self.root.as_str()) {
            let _ = writeln!(out, "  style {root} stroke-width:3px");
        }
        out
    }

    /// Writes the tree below the root, following edges against their
    /// direction (`upstream`) or along it.
    fn write_tree(&self, out: &mut String, upstream: bool) {
        let mut children: Children = BTreeMap::new();
        for edge in &self.edges {
            let (parent, child) = if upstream {
                (edge.to.as_str(), edge.from.as_str())
            } else {
                (edge.from.as_str(), edge.to.as_str())
            };
            children
                .entry(parent)
                .or_default()
                .entry(child)
                .or_default()
                .push(edge.job.as_str());
        }
        let mut tree = Tree {
            children: &children,
            arrow: if upstream { "<-" } else { "->" },
            path: vec![self.root.as_str()],
            expanded: HashSet::from([self.root.as_str()]),
        };
        tree.write(out, self.root.as_str(), 1);
    }

    /// Writes the `columns:` section, if any.
    fn write_columns(&self, out: &mut String) {
        if self.columns.is_empty() {
            return;
        }
        let mut by_table: BTreeMap<&str, BTreeMap<(&str, &str), Vec<&str>>> = BTreeMap::new();
        for column in &self.columns {
            by_table
                .entry(split_column_ref(&column.to).0)
                .or_default()
                .entry((column.to.as_str(), column.kind.as_str()))
                .or_default()
                .push(column.from.as_str());
        }
        out.push_str("columns:\n");
        for (table, lines) in by_table {
            let _ = writeln!(out, "  {table}");
            for ((to, kind), froms) in lines {
                let froms = froms.join(", ");
                let _ = writeln!(out, "    {to} <- {froms} ({kind})");
            }
        }
    }
}

/// Per node, its neighbours in the walked direction and the jobs linking them.
type Children<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a str>>>;

/// The state of printing one tree.
struct Tree<'g, 'a> {
    children: &'g Children<'a>,
    arrow: &'static str,
    /// The nodes from the root down to the one being printed.
    path: Vec<&'a str>,
    /// The nodes whose subtree was printed.
    expanded: HashSet<&'a str>,
}

impl<'a> Tree<'_, 'a> {
    /// Writes the subtree below `node`, `level` steps deep.
    fn write(&mut self, out: &mut String, node: &'a str, level: usize) {
        let children = self.children;
        let Some(neighbours) = children.get(node) else {
            return;
        };
        let pad = "  ".repeat(level);
        for (&child, jobs) in neighbours {
            let on_path = self.path.contains(&child);
            let note = if on_path {
                "  (cycle)"
            } else if self.expanded.contains(child) && children.contains_key(child) {
                "  (see above)"
            } else {
                ""
            };
            let arrow = self.arrow;
            let jobs = jobs.join(", ");
            let _ = writeln!(out, "{pad}{arrow} {child}  ({jobs}){note}");
            if !on_path && self.expanded.insert(child) {
                self.path.push(child);
                self.write(out, child, level + 1);
                self.path.pop();
            }
        }
    }
}

/// Walks from `root` along (`upstream == false`) or against the edges, at
/// most `depth` hops, adding the nodes reached and the edges followed.
fn walk<'a>(
    edges: &BTreeSet<Edge<'a>>,
    root: &'a str,
    depth: Option<usize>,
    upstream: bool,
    reached: &mut BTreeSet<&'a str>,
    kept: &mut BTreeSet<Edge<'a>>,
) {
    let mut next: HashMap<&str, Vec<Edge<'a>>> = HashMap::new();
    for &edge in edges {
        let (from, to, _) = edge;
        next.entry(if upstream { to } else { from })
            .or_default()
            .push(edge);
    }
    let mut seen: HashSet<&str> = HashSet::from([root]);
    let mut queue = VecDeque::from([(root, 0_usize)]);
    while let Some((node, distance)) = queue.pop_front() {
        if depth.is_some_and(|depth| distance >= depth) {
            continue;
        }
        for &edge in next.get(node).into_iter().flatten() {
            let (from, to, _) = edge;
            let neighbour = if upstream { from } else { to };
            kept.insert(edge);
            reached.insert(neighbour);
            if seen.insert(neighbour) {
                queue.push_back((neighbour, distance + 1));
            }
        }
    }
}

/// Whether `id` is a `zone/dataset` table of one of tarn's zones.
fn is_table(id: &str) -> bool {
    id.split_once('/').is_some_and(|(zone, dataset)| {
        ZONES.contains(&zone) && !dataset.is_empty() && !dataset.contains('/')
    })
}

/// Splits `zone/dataset.column` into the table (`zone/dataset`) and the
/// column: at the first `.` after the last `/`, so column names may hold dots.
/// A reference without a `.` there is all table.
fn split_column_ref(reference: &str) -> (&str, &str) {
    let start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[start..].find('.') {
        Some(dot) => (&reference[..start + dot], &reference[start + dot + 1..]),
        None => (reference, ""),
    }
}

/// A node's id, with `@vN` when its version is known.
fn node_label(node: &LineageNode) -> String {
    match node.version {
        Some(version) => format!("{}@v{version}", node.id),
        None => node.id.clone(),
    }
}

/// Escapes a DOT double-quoted string.
fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes a Mermaid label (node text in quotes, edge text between pipes).
fn mermaid_escape(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('|', "#124;")
        .replace('\n', " ")
}
