//! The Node.js test tools in `tests/oidc-provider`: the local OpenID provider of the
//! upstream-login tests and `demo --upstream-idp` (node-oidc-provider), and playwright-core for
//! the browser test of the pages, at the versions pinned in its `package-lock.json`, installed
//! with `npm ci` into that directory's `node_modules`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

pub const DIR: &str = "tests/oidc-provider";
const LOCK: &str = "package-lock.json";
/// Copy of the lock file as last installed; equal content means nothing to do.
const INSTALLED_MARKER: &str = "node_modules/.lock.installed";

/// The provider's server script, with its dependencies installed.
pub fn ensure(root: &Path) -> Result<PathBuf, String> {
    let dir = root.join(DIR);
    let lock = std::fs::read_to_string(dir.join(LOCK))
        .map_err(|e| format!("cannot read {DIR}/{LOCK}: {e}"))?;
    let marker = dir.join(INSTALLED_MARKER);
    if std::fs::read_to_string(&marker).unwrap_or_default() == lock {
        eprintln!("xtask: {DIR}/node_modules is up to date with {LOCK}");
    } else {
        // `run` works in the workspace root; `--prefix` points npm at the provider's directory.
        run(Command::new("npm").args([
            "ci",
            "--prefix",
            DIR,
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]))
        .map_err(|e| {
            format!(
                "{e}\nxtask: the local OpenID provider needs Node.js 20 or later with npm \
                 (Debian/Ubuntu: sudo apt-get install nodejs npm)"
            )
        })?;
        std::fs::write(&marker, lock)
            .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    }
    Ok(dir.join("server.mjs"))
}
