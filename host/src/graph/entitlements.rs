//! What the user lets a build's RUN steps have, decided on the command line before any step
//! runs: the entitlements (`--allow network.host`, `--allow security.insecure`, as buildx), the
//! network of every RUN that does not choose one (`--network`, as `docker build --network`: a
//! RUN's own `--network=none|host` wins, `--network=default` takes the command line's), and the
//! `--add-host` entries of every RUN's /etc/hosts. A graph asking for more than the user allowed
//! is refused with the file, line and column of each RUN that does, and the flag that allows it.

use std::net::IpAddr;

use anyhow::{Result, bail};

use super::reachable;
use crate::frontend::Diagnostic;
use crate::ir::{Graph, Network, Op, Security};

/// What `--allow` granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `network.host`: RUN may share the host's network namespace.
    pub network_host: bool,
    /// `security.insecure`: RUN may run privileged.
    pub security_insecure: bool,
}

impl Entitlements {
    /// `--allow` values, each one entitlement or several separated by commas.
    pub fn parse(values: &[String]) -> Result<Self> {
        let mut e = Entitlements::default();
        for v in values.iter().flat_map(|v| v.split(',')) {
            match v.trim() {
                "network.host" => e.network_host = true,
                "security.insecure" => e.security_insecure = true,
                other => bail!(
                    "--allow {other:?}: unknown entitlement; wbuild knows network.host and \
                     security.insecure"
                ),
            }
        }
        Ok(e)
    }
}

/// `--network default|none|host`.
pub fn parse_network(text: &str) -> Result<Network> {
    Ok(match text {
        "default" => Network::Default,
        "none" => Network::None,
        "host" => Network::Host,
        other => bail!("--network {other:?}: use default, none or host"),
    })
}

/// The network a RUN gets when the command line says `cli`.
pub fn effective(run: Network, cli: Network) -> Network {
    match run {
        Network::Default => cli,
        explicit => explicit,
    }
}

/// One diagnostic per RUN of the stages the target needs that asks for something `allowed`
/// does not grant; `cli` is the `--network` of the command line.
pub fn refused(graph: &Graph, file: &str, cli: Network, allowed: Entitlements) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for i in reachable(graph) {
        for node in &graph.stages[i as usize].ops {
            let Op::Run(run) = &node.op else { continue };
            // A RUN from an included fragment is reported in the fragment, with its chain.
            let fragment = node.span.file.and_then(|f| graph.files.get(f as usize));
            let mut refuse = |message: String| {
                out.push(Diagnostic {
                    file: fragment.map_or_else(|| file.to_string(), |f| f.name.clone()),
                    line: node.span.line,
                    column: node.span.column,
                    message,
                    text: node.text.clone(),
                    included_from: fragment
                        .map(|f| f.included_from.clone())
                        .unwrap_or_default(),
                })
            };
            if effective(run.network, cli) == Network::Host && !allowed.network_host {
                let why = if run.network == Network::Host {
                    "RUN --network=host"
                } else {
                    "`--network host` on the command line"
                };
                refuse(format!(
                    "{why} gives this step the host's network, which needs the user's consent: \
                     add `--allow network.host` to the command line (`{}`)",
                    node.text
                ));
            }
            if run.security == Security::Insecure && !allowed.security_insecure {
                refuse(format!(
                    "RUN --security=insecure runs this step privileged (all capabilities, the \
                     host's devices), which needs the user's consent: add \
                     `--allow security.insecure` to the command line (`{}`)",
                    node.text
                ));
            }
        }
    }
    out
}

/// Gives every RUN that asks for the default network the command line's `cli` (no change
/// when that is `default` too), so the plan, the cache key and the sandbox see the mode the
/// step really gets. A RUN's own `none` or `host` is kept.
pub fn apply_default_network(graph: &mut Graph, cli: Network) {
    for stage in &mut graph.stages {
        for node in &mut stage.ops {
            if let Op::Run(run) = &mut node.op {
                run.network = effective(run.network, cli);
            }
        }
    }
}

/// Whether a RUN of the stages the target needs uses the default network (and so the helper).
pub fn needs_user_network(graph: &Graph) -> bool {
    reachable(graph).into_iter().any(|i| {
        graph.stages[i as usize]
            .ops
            .iter()
            .any(|n| matches!(&n.op, Op::Run(r) if r.network == Network::Default))
    })
}

/// `--add-host NAME:IP` (or `NAME=IP`; an IPv6 address may be in brackets), as docker build.
pub fn parse_add_host(spec: &str) -> Result<(String, IpAddr)> {
    let (name, ip) = match spec.split_once('=') {
        Some(p) => p,
        None => spec.split_once(':').ok_or_else(|| {
            anyhow::anyhow!("--add-host {spec:?}: expected NAME:IP, e.g. db.internal:10.0.0.5")
        })?,
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        bail!("--add-host {spec:?}: {name:?} is not a host name");
    }
    if ip == "host-gateway" {
        bail!(
            "--add-host {spec:?}: host-gateway is a Docker daemon setting wbuild does not have; \
             give an IP address"
        );
    }
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| anyhow::anyhow!("--add-host {spec:?}: {ip:?} is not an IP address"))?;
    Ok((name.to_string(), ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::testing::{span, stage};
    use crate::ir::{OpNode, RunOp};

    fn run_graph(runs: &[(Network, Security)]) -> Graph {
        let mut s = stage(crate::graph::testing::image(), &[]);
        for (i, (network, security)) in runs.iter().enumerate() {
            s.ops.push(OpNode {
                op: Op::Run(RunOp {
                    args: vec!["true".into()],
                    extra_env: vec![],
                    network: *network,
                    security: *security,
                    mounts: vec![],
                }),
                span: span(i as u32 + 2),
                text: format!("RUN step{i}"),
            });
        }
        Graph {
            stages: vec![s],
            target: 0,
            files: vec![],
        }
    }

    #[test]
    fn host_network_and_insecure_need_their_entitlement() {
        let g = run_graph(&[
            (Network::Default, Security::Sandbox),
            (Network::Host, Security::Sandbox),
            (Network::None, Security::Insecure),
        ]);
        let none = Entitlements::default();
        let d = refused(&g, "Dockerfile", Network::Default, none);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].line, d[0].text.as_str()), (3, "RUN step1"));
        assert!(
            d[0].message.contains("--allow network.host"),
            "{}",
            d[0].message
        );
        assert_eq!(d[1].line, 4);
        assert!(d[1].message.contains("--allow security.insecure"));
        let all = Entitlements::parse(&["network.host,security.insecure".into()]).unwrap();
        assert!(refused(&g, "Dockerfile", Network::Default, all).is_empty());
        // `--network host` reaches the default RUN but not the one that chose none.
        let d = refused(&g, "Dockerfile", Network::Host, none);
        assert_eq!(
            d.iter()
                .filter(|d| d.message.contains("`--network host` on the command line"))
                .count(),
            1
        );
        assert!(Entitlements::parse(&["network.bridge".into()]).is_err());
    }

    #[test]
    fn the_command_line_network_replaces_only_default() {
        let mut g = run_graph(&[
            (Network::Default, Security::Sandbox),
            (Network::Host, Security::Sandbox),
        ]);
        assert!(needs_user_network(&g));
        apply_default_network(&mut g, Network::None);
        let nets: Vec<Network> = g.stages[0]
            .ops
            .iter()
            .filter_map(|n| match &n.op {
                Op::Run(r) => Some(r.network),
                _ => None,
            })
            .collect();
        assert_eq!(nets, [Network::None, Network::Host]);
        assert!(!needs_user_network(&g));
        assert!(parse_network("bridge").is_err());
    }

    #[test]
    fn add_host_parses_like_docker() {
        let v4 = parse_add_host("db:10.0.0.5").unwrap();
        assert_eq!(v4, ("db".to_string(), "10.0.0.5".parse().unwrap()));
        assert_eq!(
            parse_add_host("v6:::1").unwrap().1,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            parse_add_host("v6=[2001:db8::33]").unwrap().1,
            "2001:db8::33".parse::<IpAddr>().unwrap()
        );
        for bad in [
            "nocolon",
            ":1.2.3.4",
            "a b:1.2.3.4",
            "x:notanip",
            "x:host-gateway",
        ] {
            assert!(parse_add_host(bad).is_err(), "{bad}");
        }
    }
}
