//! The `--on-alarm` commands of `csm usage agent`: started in a process group of their
//! own, without the agent's secrets, and stopped with everything they started when the
//! agent stops.

use crate::interrupt::Interrupt;
use std::time::{Duration, Instant};

/// How long `--on-alarm` commands still running get when the agent is asked to stop (a
/// container runtime's default stop timeout is 10 s).
const ALARM_GRACE: Duration = Duration::from_secs(5);

/// The `--on-alarm` commands started and not finished yet. Each runs in its own process
/// group, so that stopping it stops what it started too.
#[derive(Default)]
pub struct AlarmRuns {
    running: Vec<std::process::Child>,
}

impl AlarmRuns {
    /// Starts the command; its failure is reported, never fatal.
    pub fn start(&mut self, cmd: &str, reason: &str) {
        let mut command = std::process::Command::new("sh");
        // No CSM_* variable of the agent's: they may hold keys, the token or the journal's
        // password, and the command's output goes to the log.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CSM_") {
                command.env_remove(name);
            }
        }
        command
            .arg("-c")
            .arg(cmd)
            .env("CSM_ALARM_REASON", reason)
            .stdin(std::process::Stdio::null())
            // Its output goes to the log (stderr), never into a `--json` report on stdout.
            .stdout(std::io::stderr());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        match command.spawn() {
            Ok(child) => self.running.push(child),
            Err(e) => eprintln!("csm agent: --on-alarm: cannot run sh: {e}"),
        }
    }

    /// Forgets the commands that finished, saying which failed.
    pub fn reap(&mut self) {
        self.running.retain_mut(|child| match child.try_wait() {
            Ok(None) => true,
            Ok(Some(s)) => {
                if !s.success() {
                    eprintln!("csm agent: --on-alarm exited with {s}");
                }
                false
            }
            Err(e) => {
                eprintln!("csm agent: --on-alarm: {e}");
                false
            }
        });
    }

    /// Waits for the commands still running; once a stop is asked, for [`ALARM_GRACE`] at
    /// most, then stops them (none outlives the agent).
    pub fn finish(&mut self, stop: &Interrupt) {
        let mut deadline = None;
        loop {
            self.reap();
            if self.running.is_empty() {
                return;
            }
            if stop.asked() {
                let until = *deadline.get_or_insert_with(|| Instant::now() + ALARM_GRACE);
                if Instant::now() >= until {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for mut child in self.running.drain(..) {
            eprintln!(
                "csm agent: --on-alarm still running {} s after the stop: stopped",
                ALARM_GRACE.as_secs()
            );
            stop_group(&mut child);
        }
    }
}

/// Stops a command and its process group: SIGTERM, and SIGKILL to the group if any of it
/// is still there a second later. The leader is reaped only after the SIGKILL: until then
/// its pid, the group's id, cannot be reused, so no unrelated process is signalled.
fn stop_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        let pid = child.id();
        let group = |signal: &str| {
            // sh's own kill: the agent has no signal API of its own, and sh is there (it ran
            // the command).
            std::process::Command::new("sh")
                .args(["-c", "kill -s \"$1\" -- \"-$2\" 2>/dev/null", "sh"])
                .args([signal, &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        };
        group("TERM");
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until && group_alive(pid, || group("0")) {
            std::thread::sleep(Duration::from_millis(20));
        }
        group("KILL");
    }
    #[cfg(not(unix))]
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether a process of the group `pgid` other than a zombie is left. `kill -0` on the
/// group says yes as long as the unreaped leader is there, so on Linux /proc is read;
/// elsewhere `kill0` is all there is (and the whole second is waited).
#[cfg(unix)]
fn group_alive(pgid: u32, kill0: impl Fn() -> bool) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return kill0();
    };
    if !std::path::Path::new("/proc/self/stat").exists() {
        return kill0();
    }
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let (state, pgrp) = (f.next(), f.nth(1));
            !matches!(state, Some("Z" | "X")) && pgrp == Some(pgid.to_string().as_str())
        })
}
