//! Service processes the runner starts itself (command-service, outbox-relay, projector), so that a
//! fault can kill -9 or SIGSTOP exactly them, by pid.

use std::path::PathBuf;
use std::time::Duration;

use crate::FaultError;

/// One running service process.
pub struct Proc {
    /// Binary name, e.g. `outbox-relay`.
    pub binary: &'static str,
    /// Instance name in logs, e.g. `relay-a`.
    pub id: String,
    /// `http://127.0.0.1:<port>` of its public listener (API and `/healthz`).
    pub url: String,
    /// `http://127.0.0.1:<port>` of its admin listener (`/readyz`, `/metrics`, admin API).
    pub admin_url: String,
    /// The `HTTP_ADDR` it listens on (kept across restarts).
    addr: String,
    /// The `ADMIN_ADDR` it listens on (kept across restarts).
    admin_addr: String,
    env: Vec<(String, String)>,
    /// A command it runs under (e.g. `faketime -f +2h`), empty for none.
    wrapper: Vec<String>,
    /// Whether the running child was started under a wrapper, in a process group of its own: a
    /// wrapper such as faketime forks the service and waits, so signals go to the whole group.
    grouped: bool,
    child: tokio::process::Child,
    log: PathBuf,
}

/// Two distinct free ports on 127.0.0.1 (both bound at once, so not the same one twice).
fn two_free_ports() -> Result<(u16, u16), FaultError> {
    let a = std::net::TcpListener::bind("127.0.0.1:0")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// The service binary `name` of this build: beside the runner's own binary.
pub fn service_binary(name: &str) -> Result<PathBuf, FaultError> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(FaultError::Setup(format!(
            "{} not found (build it: cargo build -p {name})",
            path.display()
        )))
    }
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to `pid`.
pub fn signal_pid(pid: u32, signal: &str) -> Result<(), FaultError> {
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(FaultError::Setup(format!("kill -s {signal} {pid} failed")))
    }
}

/// Sends `signal` to the process group `pgid`.
fn signal_group(pgid: u32, signal: &str) -> Result<(), FaultError> {
    let status = std::process::Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(FaultError::Setup(format!(
            "kill -s {signal} -- -{pgid} failed"
        )))
    }
}

/// Whether any process of group `pgid` is left.
fn group_alive(pgid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Proc {
    /// Starts `binary` as instance `id` with `env` on a free port.
    pub fn start(
        binary: &'static str,
        id: &str,
        logs: &std::path::Path,
        env: Vec<(String, String)>,
    ) -> Result<Self, FaultError> {
        let (port, admin_port) = two_free_ports()?;
        let addr = format!("127.0.0.1:{port}");
        let admin_addr = format!("127.0.0.1:{admin_port}");
        let log = logs.join(format!("{binary}-{id}.log"));
        let child = spawn(binary, &[], [&addr, &admin_addr], &env, &log)?;
        Ok(Self {
            binary,
            id: id.into(),
            url: format!("http://{addr}"),
            admin_url: format!("http://{admin_addr}"),
            addr,
            admin_addr,
            env,
            wrapper: Vec::new(),
            grouped: false,
            child,
            log,
        })
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Result<u32, FaultError> {
        self.child
            .id()
            .ok_or_else(|| FaultError::Setup(format!("{} has exited", self.id)))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: &str) -> Result<(), FaultError> {
        if self.grouped {
            signal_group(self.pid()?, signal)
        } else {
            signal_pid(self.pid()?, signal)
        }
    }

    /// kill -9, and waits until the process is gone.
    pub async fn kill9(&mut self) -> Result<(), FaultError> {
        let pid = self.pid()?;
        self.signal("KILL")?;
        self.child.wait().await?;
        if self.grouped {
            // The service under the wrapper dies a moment after it: its port must be free before
            // a restart binds it again.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while group_alive(pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Starts the same binary again with the same environment and addresses.
    pub fn restart(&mut self) -> Result<(), FaultError> {
        let addrs = [self.addr.as_str(), self.admin_addr.as_str()];
        self.child = spawn(self.binary, &self.wrapper, addrs, &self.env, &self.log)?;
        self.grouped = !self.wrapper.is_empty();
        Ok(())
    }

    /// Runs it under `wrapper` (a program and its arguments, e.g. `faketime -f +2h`; empty: none)
    /// from the next [`Proc::restart`] on.
    pub fn wrap(&mut self, wrapper: &[&str]) {
        self.wrapper = wrapper.iter().map(|s| (*s).to_string()).collect();
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self, http: &reqwest::Client, timeout: Duration) -> Result<(), FaultError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ok = http
                .get(format!("{}/readyz", self.admin_url))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(FaultError::Setup(format!(
                    "{} not ready within {timeout:?} (log {})",
                    self.id,
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The value of the Prometheus metric `name` (summed over its label sets), 0 when absent.
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> Result<f64, FaultError> {
        let text = http
            .get(format!("{}/metrics", self.admin_url))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .text()
            .await?;
        Ok(metric_sum(&text, name))
    }

    /// [`Proc::metric`] over the samples whose labels contain `label` (e.g. `outcome="skipped"`).
    pub async fn metric_where(
        &self,
        http: &reqwest::Client,
        name: &str,
        label: &str,
    ) -> Result<f64, FaultError> {
        let text = http
            .get(format!("{}/metrics", self.admin_url))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .text()
            .await?;
        let lines: String = text
            .lines()
            .filter(|l| l.contains(label))
            .map(|l| format!("{l}\n"))
            .collect();
        Ok(metric_sum(&lines, name))
    }

    /// SIGTERM, then SIGKILL after 20 s; a process killed before is fine.
    pub async fn stop(mut self) -> Result<(), FaultError> {
        if self.child.id().is_none() {
            return Ok(());
        }
        let _ = self.signal("CONT");
        let _ = self.signal("TERM");
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.signal("KILL");
            self.child.wait().await?;
        }
        Ok(())
    }
}

/// Starts `binary` listening on `[HTTP_ADDR, ADMIN_ADDR]`.
fn spawn(
    binary: &str,
    wrapper: &[String],
    [addr, admin_addr]: [&str; 2],
    env: &[(String, String)],
    log: &std::path::Path,
) -> Result<tokio::process::Child, FaultError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let path = service_binary(binary)?;
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(args).arg(path).process_group(0);
            c
        }
        None => tokio::process::Command::new(path),
    };
    let child = cmd
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HTTP_ADDR", addr)
        .env("ADMIN_ADDR", admin_addr)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stdout(out.try_clone()?)
        .stderr(out)
        // A runner that dies must not leave services behind that keep writing.
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

/// The sum of every sample of metric `name` in Prometheus text (0 when absent).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = if let Some(labels) = rest.strip_prefix('{') {
                labels.split_once("} ")?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn sums_a_metric_over_its_labels_and_ignores_longer_names() {
        let text = "# HELP x\nrelay_parked_total{reason=\"encode\"} 2\n\
                    relay_parked_total{reason=\"too_large\"} 3\nrelay_parked_total_other 9\n\
                    relay_published_total 7\n";
        assert_eq!(metric_sum(text, "relay_parked_total"), 5.0);
        assert_eq!(metric_sum(text, "relay_published_total"), 7.0);
        assert_eq!(metric_sum(text, "missing"), 0.0);
    }
}
