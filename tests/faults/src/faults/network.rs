//! F8 network partition and F9 slow, lossy link, made on this machine only: one service process
//! runs in a network namespace the fault creates, joined to the root namespace by a veth pair in a
//! private /30. Inside, forwarders listen on the namespace's own 127.0.0.1 at the servers' ports
//! and send through the veth to forwarders on the host-side address, which reach the servers on
//! 127.0.0.1: the service keeps its ordinary configuration (Kafka advertises 127.0.0.1, which a
//! plain address change would break), and every byte it exchanges with PostgreSQL, Kafka, the
//! registry and Neo4j crosses the veth, where the fault cuts it (link down) or slows it (a `tc` qdisc) without touching anyone
//! else's traffic. Its HTTP ports (public and admin) are forwarded back the same way, so the runner
//! still probes it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use eventfold_tests::Stack;

use super::{PROCESS_BOUND, Run, env};
use crate::FaultError;
use crate::procs::Proc;
use crate::rig::RigOptions;
use crate::verdict::{Verdict, lag};

/// How long the link is cut or slowed under load.
const FAULTED: Duration = Duration::from_secs(20);

/// A network namespace with a veth pair, and the forwarders (socat) started for it. Dropping it
/// removes them all: forwarder process groups by pid, the veth pair and the namespace by name.
struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    host_ip: String,
    ns_ip: String,
    /// Pids of the forwarders; each leads its own process group (its per-connection children).
    forwarders: Vec<tokio::process::Child>,
}

/// Runs `program args`, failing with its stderr.
async fn sh(program: &str, args: &[&str]) -> Result<(), FaultError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FaultError::Setup(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The port of each server address in `urls` (`scheme://user@host:port/path` or `host:port`
/// lists as in Kafka's bootstrap servers).
fn ports(urls: &[&str]) -> Result<Vec<u16>, FaultError> {
    let mut out = Vec::new();
    for url in urls {
        for part in url.split(',') {
            let rest = part.split_once("://").map_or(part, |(_, r)| r);
            let authority = rest.split('/').next().unwrap_or(rest);
            let hostport = authority.rsplit('@').next().unwrap_or(authority);
            let port = hostport
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .ok_or_else(|| FaultError::Setup(format!("no port in server address {part}")))?;
            if !out.contains(&port) {
                out.push(port);
            }
        }
    }
    Ok(out)
}

impl Netns {
    /// Creates namespace `ef-<tag>` with veth `efh<tag>` (host side, `host_ip`/30) and `efn<tag>`
    /// (inside, `ns_ip`/30), and forwards each of `ports` from the namespace's 127.0.0.1 to the
    /// host's. Leftovers of an earlier run of the same fault are removed first.
    async fn create(
        tag: &str,
        host_ip: &str,
        ns_ip: &str,
        ports: &[u16],
    ) -> Result<Self, FaultError> {
        let name = format!("ef-{tag}");
        let host_if = format!("efh{tag}");
        let ns_if = format!("efn{tag}");
        remove_by_name(&name, &host_if);
        let mut net = Self {
            name,
            host_if,
            ns_if,
            host_ip: host_ip.into(),
            ns_ip: ns_ip.into(),
            forwarders: Vec::new(),
        };
        let (n, h, i) = (&net.name, &net.host_if, &net.ns_if);
        sh("ip", &["netns", "add", n]).await?;
        sh(
            "ip",
            &[
                "link", "add", h, "type", "veth", "peer", "name", i, "netns", n,
            ],
        )
        .await?;
        sh(
            "ip",
            &["addr", "add", &format!("{}/30", net.host_ip), "dev", h],
        )
        .await?;
        sh("ip", &["link", "set", h, "up"]).await?;
        let ns_addr = format!("{}/30", net.ns_ip);
        for args in [
            vec!["addr", "add", ns_addr.as_str(), "dev", i],
            vec!["link", "set", i, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", n, "ip"];
            full.extend(args);
            sh("ip", &full).await?;
        }
        for port in ports {
            let host_ip = net.host_ip.clone();
            net.forward(
                false,
                &format!("TCP-LISTEN:{port},bind={host_ip},reuseaddr,fork"),
                &format!("TCP:127.0.0.1:{port}"),
            )?;
            net.forward(
                true,
                &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
                &format!("TCP:{host_ip}:{port}"),
            )?;
        }
        net.settle().await?;
        Ok(net)
    }

    /// Starts one socat, inside the namespace when `inside`, in a process group of its own.
    fn forward(&mut self, inside: bool, listen: &str, connect: &str) -> Result<(), FaultError> {
        let mut cmd = if inside {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", &self.name, "socat"]);
            c
        } else {
            tokio::process::Command::new("socat")
        };
        let child = cmd
            .args([listen, connect])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                FaultError::Setup(format!("socat ({e}): scripts/faults.sh installs it"))
            })?;
        self.forwarders.push(child);
        Ok(())
    }

    /// Gives the forwarders a moment to bind, and fails when one has exited (port taken).
    async fn settle(&mut self) -> Result<(), FaultError> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for f in &mut self.forwarders {
            if let Some(status) = f.try_wait()? {
                return Err(FaultError::Setup(format!(
                    "a socat forwarder of {} exited: {status}",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// Moves `proc` into the namespace: killed, its HTTP ports (public and admin) forwarded from
    /// the host's 127.0.0.1 into the namespace, restarted there and waited for.
    async fn adopt(&mut self, proc: &mut Proc, http: &reqwest::Client) -> Result<(), FaultError> {
        let port_of = |url: &str| {
            url.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .ok_or_else(|| FaultError::Setup(format!("no port in {url}")))
        };
        let ports = [port_of(&proc.url)?, port_of(&proc.admin_url)?];
        proc.kill9().await?;
        let ns_ip = self.ns_ip.clone();
        for port in ports {
            self.forward(
                false,
                &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
                &format!("TCP:{ns_ip}:{port}"),
            )?;
            self.forward(
                true,
                &format!("TCP-LISTEN:{port},bind={ns_ip},reuseaddr,fork"),
                &format!("TCP:127.0.0.1:{port}"),
            )?;
        }
        self.settle().await?;
        proc.wrap(&["ip", "netns", "exec", &self.name]);
        proc.restart()?;
        proc.ready(http, Duration::from_secs(30)).await
    }

    /// Cuts the link: the host end goes down, the inside end loses its carrier, and every
    /// packet either way is dropped until [`Netns::uncut`].
    async fn cut(&self) -> Result<(), FaultError> {
        sh("ip", &["link", "set", &self.host_if, "down"]).await
    }

    /// Brings the host end back up.
    async fn uncut(&self) -> Result<(), FaultError> {
        sh("ip", &["link", "set", &self.host_if, "up"]).await
    }

    /// Puts the root qdisc `qdisc` (kind and arguments) on both ends of the veth (a qdisc shapes
    /// what a device sends).
    async fn shape(&self, qdisc: &[&str]) -> Result<(), FaultError> {
        let mut host = vec!["qdisc", "add", "dev", &self.host_if, "root"];
        host.extend_from_slice(qdisc);
        sh("tc", &host).await?;
        let (name, ns_if) = (self.name.as_str(), self.ns_if.as_str());
        let mut inside = vec![
            "netns", "exec", name, "tc", "qdisc", "add", "dev", ns_if, "root",
        ];
        inside.extend_from_slice(qdisc);
        sh("ip", &inside).await
    }

    /// Removes the qdiscs of both ends.
    async fn unshape(&self) -> Result<(), FaultError> {
        sh("tc", &["qdisc", "del", "dev", &self.host_if, "root"]).await?;
        sh(
            "ip",
            &[
                "netns",
                "exec",
                &self.name,
                "tc",
                "qdisc",
                "del",
                "dev",
                &self.ns_if,
                "root",
            ],
        )
        .await
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for f in &self.forwarders {
            if let Some(pid) = f.id() {
                // The whole group: socat's per-connection children outlive their parent.
                let _ = std::process::Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        remove_by_name(&self.name, &self.host_if);
    }
}

/// Deletes veth `host_if` (its peer and qdiscs go with it) and namespace `name`, if they exist.
fn remove_by_name(name: &str, host_if: &str) {
    for args in [
        ["link", "del", host_if].as_slice(),
        ["netns", "del", name].as_slice(),
    ] {
        let _ = std::process::Command::new("ip")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Every server port the services use.
fn server_ports(stack: &Stack) -> Result<Vec<u16>, FaultError> {
    ports(&[
        &stack.database.url,
        &stack.kafka.bootstrap_servers,
        &stack.registry.url,
        &stack.neo4j.uri,
    ])
}

/// The slow link of F9: 1 Mbit/s each way (less than the pipeline's traffic at the load's rate), a
/// packet queued longer than 500 ms is dropped. This kernel has no `sch_netem`
/// (CONFIG_NET_SCH_NETEM unset: "Specified qdisc kind is unknown"), so delay and loss come from a
/// token bucket's queue and tail drops instead of netem's fixed delay and random loss.
const SLOW_LINK: [&str; 7] = ["tbf", "rate", "1mbit", "burst", "16kb", "latency", "500ms"];

/// F8: one of two relays (lease 2 s) is cut off from PostgreSQL, Kafka and the registry for 20 s
/// under load (the veth's host end set down); the other must take its shards over, and after the
/// heal the cut-off one must find it lost them (fencing) and nothing may be lost or doubled.
pub async fn f8(stack: &Stack) -> Result<Verdict, FaultError> {
    let ports = server_ports(stack)?;
    // Declared before the run, so that on an early return the services go first.
    let mut net = Netns::create("f8", "10.213.0.1", "10.213.0.2", &ports).await?;
    let options = RigOptions {
        relays: 2,
        relay_env: env(&[("RELAY_LEASE_MS", "2000")]),
        ..RigOptions::default()
    };
    let mut run = Run::start(stack, "F8", options).await?;
    let http = run.rig.http.clone();
    net.adopt(&mut run.rig.relays[0], &http).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cut, other) = (&run.rig.relays[0], &run.rig.relays[1]);
    let lost_before = cut
        .metric(&http, "eventfold_relay_shard_lost_total")
        .await?;
    let acquired_before = other
        .metric(&http, "eventfold_relay_shard_acquired_total")
        .await?;
    let acked_before = run.load.acked();
    net.cut().await?;
    tokio::time::sleep(FAULTED).await;
    let acked_cut = run.load.acked() - acked_before;
    net.uncut().await?;
    let healed = Instant::now();
    // The cut-off relay learns of its loss when its lock connection answers again (PostgreSQL
    // ended that session after the lease): wait for it, and say how long it took.
    let (cut, other) = (&run.rig.relays[0], &run.rig.relays[1]);
    let mut lost = 0.0;
    while healed.elapsed() < Duration::from_secs(30) {
        if let Ok(n) = cut.metric(&http, "eventfold_relay_shard_lost_total").await {
            lost = n - lost_before;
            if lost > 0.0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let fenced_after = healed.elapsed();
    let rejections = cut
        .metric(&http, "eventfold_relay_epoch_rejections_total")
        .await?;
    let acquired = other
        .metric(&http, "eventfold_relay_shard_acquired_total")
        .await?
        - acquired_before;
    let (mut v, rig) = run.finish("F8", healed, PROCESS_BOUND, Vec::new()).await?;
    v.notes.push(format!(
        "{acked_cut} commands acknowledged during the 20 s cut; the cut-off relay lost {lost} \
         shards {:.1} s after the heal, {rejections} epoch rejections; the other relay took {acquired} shards",
        fenced_after.as_secs_f64()
    ));
    v.check(acked_cut > 0, "no command acknowledged during the cut");
    v.check(
        lost > 0.0,
        "the cut-off relay never found its shards lost after the heal",
    );
    v.check(
        acquired > 0.0,
        "the other relay never took the cut-off relay's shards",
    );
    rig.finish(&mut v).await?;
    drop(net);
    Ok(v)
}

/// F9: the relay and the projector behind a slow, lossy link ([`SLOW_LINK`] both ways) for 20 s
/// under load: the lag grows, nothing is lost or doubled, and it drains after the heal.
pub async fn f9(stack: &Stack) -> Result<Verdict, FaultError> {
    let ports = server_ports(stack)?;
    // A /30 of its own (10.213.0.4/30), apart from F8's.
    let mut net = Netns::create("f9", "10.213.0.5", "10.213.0.6", &ports).await?;
    let mut run = Run::start(stack, "F9", RigOptions::default()).await?;
    let http = run.rig.http.clone();
    net.adopt(&mut run.rig.relays[0], &http).await?;
    net.adopt(&mut run.rig.projectors[0], &http).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lag_before = lag(&run.rig).await?;
    let acked_before = run.load.acked();
    net.shape(&SLOW_LINK).await?;
    tokio::time::sleep(FAULTED).await;
    let lag_slow = lag(&run.rig).await?;
    let acked_slow = run.load.acked() - acked_before;
    net.unshape().await?;
    let healed = Instant::now();
    let (mut v, rig) = run.finish("F9", healed, PROCESS_BOUND, Vec::new()).await?;
    v.notes.push(format!(
        "lag {lag_before} before, {lag_slow} after 20 s of the slow link; \
         {acked_slow} commands acknowledged meanwhile"
    ));
    v.check(
        acked_slow > 0,
        "no command acknowledged during the slow link",
    );
    v.check(
        lag_slow > lag_before,
        "the lag did not grow behind the slow link: the qdisc did not take effect",
    );
    rig.finish(&mut v).await?;
    drop(net);
    Ok(v)
}
