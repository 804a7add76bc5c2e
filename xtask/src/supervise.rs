//! Child processes started in their own process groups, so that stopping one also stops
//! everything it started (Envoy's workers, shells), and nothing outlives `cargo xtask demo`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A started service: its name for messages and its child, the leader of its process group.
pub struct Service {
    pub name: &'static str,
    child: Child,
}

/// The services of one run; dropping it stops them all (SIGTERM to each group, then SIGKILL).
#[derive(Default)]
pub struct Supervisor {
    services: Vec<Service>,
}

impl Supervisor {
    /// Starts `command` in a new process group, stdout and stderr appended to `log`.
    pub fn start(
        &mut self,
        name: &'static str,
        command: &mut Command,
        log: &Path,
    ) -> Result<(), String> {
        let out = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        self.spawn(name, command, out, log)
    }

    /// Replaces the exited service `name` by `command`, started like [`Supervisor::start`] but
    /// with its output appended to `log`, after what the exited one wrote.
    pub fn restart(
        &mut self,
        name: &'static str,
        command: &mut Command,
        log: &Path,
    ) -> Result<(), String> {
        self.services.retain_mut(|service| {
            service.name != name || !matches!(service.child.try_wait(), Ok(Some(_)))
        });
        let out = File::options()
            .append(true)
            .create(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        self.spawn(name, command, out, log)
    }

    fn spawn(
        &mut self,
        name: &'static str,
        command: &mut Command,
        out: File,
        log: &Path,
    ) -> Result<(), String> {
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot reopen {}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}"))?;
        self.services.push(Service { name, child });
        Ok(())
    }

    /// The name and exit status of a service that has exited, if any.
    pub fn exited(&mut self) -> Option<(&'static str, String)> {
        self.services
            .iter_mut()
            .find_map(|service| match service.child.try_wait() {
                Ok(Some(status)) => Some((service.name, status.to_string())),
                Ok(None) => None,
                Err(error) => Some((service.name, error.to_string())),
            })
    }

    /// Stops every service: SIGTERM to each process group, up to 5 s grace, then SIGKILL.
    pub fn stop_all(&mut self) {
        for service in &self.services {
            signal_group(&service.child, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for service in &mut self.services {
            while Instant::now() < deadline {
                if matches!(service.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                sleep(Duration::from_millis(50));
            }
            // The leader may be gone while other members of its group are not.
            signal_group(&service.child, libc::SIGKILL);
            let _ = service.child.wait();
        }
        self.services.clear();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn signal_group(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the process group the child leads; it has no
    // memory-safety preconditions. Errors (ESRCH: already gone) are irrelevant here.
    unsafe {
        libc::kill(-pid, signal);
    }
}

/// Set when SIGINT or SIGTERM arrives.
pub fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone())
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    Ok(flag)
}

pub fn stopped(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// Status code of `GET path` on `addr`, with a `Host` header of `host`.
pub fn http_get_status(addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(head.get(..read)?).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Waits until `GET path` answers 200, a service exits, or a signal arrives.
pub fn wait_ready(
    supervisor: &mut Supervisor,
    stop: &AtomicBool,
    what: &str,
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if http_get_status(addr, host, path) == Some(200) {
            return Ok(());
        }
        if let Some((name, status)) = supervisor.exited() {
            return Err(format!("{name} exited ({status}) while waiting for {what}"));
        }
        if stopped(stop) {
            return Err("interrupted".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not answer 200 on http://{addr}{path} within {}s",
                timeout.as_secs()
            ));
        }
        sleep(Duration::from_millis(200));
    }
}
