//! The Node.js test tools in `tests/oidc-provider`: the local OpenID provider of the
//! upstream-login tests and `demo --upstream-idp` (node-oidc-provider), and playwright-core for
//! the browser test of the pages, at the versions pinned in its `package-lock.json`, installed
//! with `npm ci` into that directory's `node_modules`.

use std::path::{Path, PathBuf};

use crate::npm;

pub const DIR: &str = "tests/oidc-provider";

/// The provider's server script, with its dependencies installed.
pub fn ensure(root: &Path) -> Result<PathBuf, String> {
    npm::ci(root, DIR, "the local OpenID provider")?;
    Ok(root.join(DIR).join("server.mjs"))
}
