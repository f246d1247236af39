//! Installing missing Debian packages on demand.

use std::io;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Process-wide state: serialises concurrent callers (apt holds a global
/// lock anyway) and remembers what is already known to be installed.
struct InstallState {
    apt_updated: bool,
    known_installed: Vec<String>,
}

static STATE: Mutex<InstallState> = Mutex::new(InstallState {
    apt_updated: false,
    known_installed: Vec::new(),
});

/// Makes sure each of the given Debian packages is installed.
///
/// For each name, `dpkg -s NAME` decides whether the package is installed.
/// If any is missing, `apt-get update` runs (at most once per process) and
/// then `apt-get install -y NAME` with `DEBIAN_FRONTEND=noninteractive`.
/// apt's output goes to this process's stderr so the user sees progress.
/// When not running as root, the apt commands are run through `sudo -n`.
///
/// Calls are serialised across threads; packages found installed are
/// remembered, so repeated calls are cheap.
///
/// # Errors
///
/// Fails if `dpkg` is unavailable (not a Debian-based system), or if
/// `apt-get` fails or the package is still not installed afterwards.
pub fn ensure_installed(packages: &[&str]) -> io::Result<()> {
    let mut state = STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for &name in packages {
        if state.known_installed.iter().any(|known| known == name) {
            continue;
        }
        if !is_installed(name)? {
            if !state.apt_updated {
                run_apt(&["update"])?;
                state.apt_updated = true;
            }
            run_apt(&["install", "-y", name])?;
            if !is_installed(name)? {
                return Err(io::Error::other(format!(
                    "apt-get install -y {name} succeeded but dpkg still reports {name} as not installed"
                )));
            }
        }
        state.known_installed.push(name.to_owned());
    }
    Ok(())
}

/// Whether `dpkg -s NAME` reports the package as installed.
fn is_installed(name: &str) -> io::Result<bool> {
    let output = Command::new("dpkg")
        .arg("-s")
        .arg(name)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "cannot run `dpkg -s {name}` ({err}); installing packages is only supported \
                     on Debian-based systems, install {name} manually"
                ),
            )
        })?;
    if !output.status.success() {
        return Ok(false);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout
        .lines()
        .any(|line| line.starts_with("Status:") && line.trim_end().ends_with(" installed")))
}

/// Whether this process runs as root (`id -u` prints 0).
pub(crate) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `apt-get ARGS` non-interactively, with its output on our stderr.
fn run_apt(args: &[&str]) -> io::Result<()> {
    let mut command = if running_as_root() {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        sudo
    };
    command
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .stderr(io::stderr());
    let shown = format!("apt-get {}", args.join(" "));
    let status = command
        .status()
        .map_err(|err| io::Error::new(err.kind(), format!("cannot run `{shown}`: {err}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{shown}` failed ({status}); install the package manually"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::{ensure_installed, is_installed};

    #[test]
    fn detects_installed_and_missing_packages() {
        assert!(is_installed("dpkg").unwrap());
        assert!(!is_installed("testkit-no-such-package-xyz").unwrap());
    }

    #[test]
    fn installed_packages_need_no_apt() {
        ensure_installed(&["dpkg", "zookeeper"]).unwrap();
        ensure_installed(&[]).unwrap();
    }
}
