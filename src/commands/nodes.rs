//! `kindload nodes`: one row per node with the facts loading depends on.

use super::Context;
use crate::error::Result;
use crate::request::cli::{NodesArgs, OutputFormat};
use crate::resolve::holdings::Depth;
use crate::resolve::node::Node;

pub fn nodes(ctx: &Context, args: NodesArgs) -> Result<i32> {
    let (_, _, nodes) = ctx.nodes(&args.cluster, Depth::Full, &[])?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&nodes).expect("nodes serialise")),
        OutputFormat::Human => print!("{}", table(&nodes)),
    }
    Ok(0)
}

fn table(rows: &[Node]) -> String {
    let header =
        ["NAME", "ROLE", "PROVIDER", "STATE", "CONTAINERD", "CONFIG", "SNAPSHOTTER", "CRICTL"].map(String::from);
    let dash = || "-".to_string();
    let mut lines = vec![header.to_vec()];
    for r in rows {
        lines.push(vec![
            r.name.clone(),
            r.role.clone(),
            r.provider.to_string(),
            r.state.clone(),
            r.containerd_version.clone().unwrap_or_else(dash),
            r.config_version.map(|v| v.to_string()).unwrap_or_else(dash),
            r.snapshotter.clone().unwrap_or_else(dash),
            if r.running { if r.crictl { "yes" } else { "no" }.to_string() } else { dash() },
        ]);
    }
    let widths: Vec<usize> = (0..header.len()).map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_dashes_unknowns() {
        let row = |name: &str, running: bool| Node {
            provider: "podman",
            running,
            state: if running { "running" } else { "exited" }.into(),
            containerd_version: running.then(|| "1.7.24~ds1".into()),
            config_version: running.then_some(2),
            snapshotter: running.then(|| "native".into()),
            config_path: None,
            ..Node::for_tests(name)
        };
        let text = table(&[row("dev-worker", true), row("dev-worker2", false)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME         ROLE"), "{text}");
        assert!(lines[1].contains("1.7.24~ds1  2       native       no"), "{text}");
        assert!(lines[2].contains("exited   -           -       -            -"), "{text}");
    }
}
