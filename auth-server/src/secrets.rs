//! Random tokens, one-way hashes of stored secrets, password hashing.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh 256-bit random value, base64url without padding (43 characters).
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a high-entropy secret (code, refresh token, session id, generated client
/// secret): hex SHA-256. These values carry 256 random bits, so a fast hash is sufficient.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Argon2id hash in PHC string form, for user passwords and operator-chosen client secrets.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

pub fn verify_password(phc_hash: &str, password: &str) -> bool {
    match PasswordHash::new(phc_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a throwaway password made with the algorithm, version and cost parameters of
/// `model` (argon2id defaults without one). Verifying a password for an unknown user against it
/// costs what verifying a real user's password costs, so timing does not reveal which
/// usernames exist.
pub fn dummy_hash_like(model: Option<&str>) -> Result<String, argon2::password_hash::Error> {
    let hasher = match model.map(PasswordHash::new).transpose()? {
        Some(parsed) => Argon2::new(
            Algorithm::new(parsed.algorithm.as_str())?,
            parsed
                .version
                .map(Version::try_from)
                .transpose()?
                .unwrap_or_default(),
            Params::try_from(&parsed)?,
        ),
        None => Argon2::default(),
    };
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher
        .hash_password(b"not the password of any user", &salt)?
        .to_string())
}

/// The most expensive of the configured password hashes (memory times iterations): the model
/// for [`dummy_hash_like`].
pub fn costliest_hash<'a>(hashes: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    hashes
        .filter_map(|h| {
            let parsed = PasswordHash::new(h).ok()?;
            let params = Params::try_from(&parsed).ok()?;
            Some((
                u64::from(params.m_cost()) * u64::from(params.t_cost()),
                h.as_str(),
            ))
        })
        .max_by_key(|(cost, _)| *cost)
        .map(|(_, h)| h)
}

/// Checks that a configured hash is an Argon2 PHC string (never a plain-text password).
pub fn check_password_hash_format(phc_hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc_hash).map_err(|e| {
        format!("not a PHC password hash string ({e}); use `mcp-auth-server hash-password`")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm `{}` is not supported; use argon2id",
            parsed.algorithm
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip() {
        let hash = hash_password("demo").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "demo"));
        assert!(!verify_password(&hash, "Demo"));
        assert!(!verify_password("garbage", "demo"));
        assert!(check_password_hash_format(&hash).is_ok());
        assert!(check_password_hash_format("demo").is_err());
    }

    #[test]
    fn the_dummy_hash_costs_what_the_costliest_user_hash_costs() {
        let cheap = "$argon2id$v=19$m=8192,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$4W8n2Ohd9cLW4QpBg7AVvk3C0cMdPYJm0X2lRJ1nK5E".to_string();
        let dear = "$argon2i$v=19$m=16384,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$4W8n2Ohd9cLW4QpBg7AVvk3C0cMdPYJm0X2lRJ1nK5E".to_string();
        let configured = [cheap, dear.clone()];
        let model = costliest_hash(configured.iter()).unwrap();
        assert_eq!(model, dear);
        let dummy = dummy_hash_like(Some(model)).unwrap();
        assert!(
            dummy.starts_with("$argon2i$v=19$m=16384,t=3,p=1$"),
            "{dummy}"
        );
        assert!(!verify_password(&dummy, "demo"));
        let default = dummy_hash_like(None).unwrap();
        assert!(
            default.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{default}"
        );
    }

    #[test]
    fn random_tokens_differ_and_hash_is_stable() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert_eq!(token_hash("abc").len(), 64);
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
