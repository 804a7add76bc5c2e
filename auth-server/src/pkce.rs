//! PKCE (RFC 7636), S256 only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// Checks the `code_challenge` / `code_challenge_method` pair of an authorization request.
pub fn validate_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), String> {
    let Some(challenge) = challenge else {
        return Err("code_challenge is required (PKCE)".into());
    };
    match method {
        Some("S256") => {}
        None => {
            return Err("code_challenge_method is required and must be S256".into());
        }
        Some(other) => {
            return Err(format!(
                "code_challenge_method `{other}` is not supported; use S256"
            ));
        }
    }
    // base64url of a SHA-256 digest: exactly 43 characters without padding.
    if challenge.len() != 43
        || !challenge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("code_challenge is not a base64url-encoded SHA-256 digest".into());
    }
    Ok(())
}

/// Does `verifier` hash to `challenge` under S256?
pub fn verify(challenge: &str, verifier: &str) -> Result<(), String> {
    if verifier.len() < 43 || verifier.len() > 128 || !verifier.chars().all(is_unreserved) {
        return Err("code_verifier must be 43 to 128 unreserved characters".into());
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if crate::secrets::constant_time_eq(&computed, challenge) {
        Ok(())
    } else {
        Err("code_verifier does not match the code_challenge".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_example_verifies() {
        assert!(validate_challenge(Some(CHALLENGE), Some("S256")).is_ok());
        assert!(verify(CHALLENGE, VERIFIER).is_ok());
    }

    #[test]
    fn plain_missing_and_unknown_methods_are_rejected() {
        assert!(validate_challenge(None, Some("S256")).is_err());
        assert!(validate_challenge(Some(CHALLENGE), None).is_err());
        assert!(validate_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(validate_challenge(Some(CHALLENGE), Some("S512")).is_err());
        assert!(validate_challenge(Some("short"), Some("S256")).is_err());
    }

    #[test]
    fn wrong_or_malformed_verifier_is_rejected() {
        assert!(verify(CHALLENGE, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX").is_err());
        assert!(verify(CHALLENGE, "short").is_err());
        assert!(verify(CHALLENGE, &"a b".repeat(20)).is_err());
        // The challenge itself is not a valid verifier for itself.
        assert!(verify(CHALLENGE, CHALLENGE).is_err());
    }
}
