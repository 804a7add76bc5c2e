//! `npm ci` for the workspace's Node.js tool directories (each with its own `package.json` and
//! `package-lock.json`): installs the pinned versions into the directory's `node_modules`, and
//! does nothing when that lock file is the one last installed.

use std::path::Path;
use std::process::Command;

use crate::run;

const LOCK: &str = "package-lock.json";
/// Copy of the lock file as last installed; equal content means nothing to do.
const INSTALLED_MARKER: &str = "node_modules/.lock.installed";

/// Installs `dir` (relative to the workspace `root`) with `npm ci`; `needed_for` says in the
/// error what a missing npm stops.
pub fn ci(root: &Path, dir: &str, needed_for: &str) -> Result<(), String> {
    let path = root.join(dir);
    let lock = std::fs::read_to_string(path.join(LOCK))
        .map_err(|e| format!("cannot read {dir}/{LOCK}: {e}"))?;
    let marker = path.join(INSTALLED_MARKER);
    if std::fs::read_to_string(&marker).unwrap_or_default() == lock {
        eprintln!("xtask: {dir}/node_modules is up to date with {LOCK}");
        return Ok(());
    }
    // `run` works in the workspace root; `--prefix` points npm at the directory.
    run(Command::new("npm").args([
        "ci",
        "--prefix",
        dir,
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]))
    .map_err(|e| {
        format!(
            "{e}\nxtask: {needed_for} needs Node.js 20 or later with npm \
             (Debian/Ubuntu: sudo apt-get install nodejs npm)"
        )
    })?;
    std::fs::write(&marker, lock).map_err(|e| format!("cannot write {}: {e}", marker.display()))
}
