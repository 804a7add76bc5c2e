//! Restarts (same SQLite file), key rotation by the CLI while the server runs, other algorithms.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use std::process::Command;

use common::*;
use reqwest::StatusCode;

fn cli(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-auth-server"))
        .arg("--config")
        .arg(&server.config_path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn restart_between_authorize_and_token_and_between_token_and_refresh() {
    let mut server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    server.restart().await;
    let (status, t) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    server.restart().await;
    verify_with_jwks(&server, &access)
        .await
        .expect("same key after restart");
    let (status, t2) =
        json(refresh(&server, t["refresh_token"].as_str().unwrap(), &[]).await).await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    // The login session and the remembered consent survived too.
    let again = b
        .get(authorize_url(&server, &standard_params(&p, "st")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    // Registered clients survive.
    let reg = register_client(
        &server,
        serde_json::json!({"redirect_uris": [PUBLIC_REDIRECT], "token_endpoint_auth_method": "none"}),
    )
    .await;
    server.restart().await;
    let mut params = standard_params(&p, "st");
    params.retain(|(k, _)| *k != "client_id");
    let id = reg["client_id"].as_str().unwrap();
    params.push(("client_id", id));
    let resp = b.get(authorize_url(&server, &params)).send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "registered client known after restart"
    );
}

#[tokio::test]
async fn rotation_publishes_the_new_key_first_and_old_tokens_stay_verifiable() {
    let server = TestServer::start().await;
    let old = tokens(&server).await;
    let old_access = old["access_token"].as_str().unwrap().to_string();
    let old_kid = header(&old_access)["kid"].as_str().unwrap().to_string();

    let rotated_at = std::time::Instant::now();
    let out = cli(&server, &["keys", "rotate", "--publish-delay-secs", "4"]);
    assert!(out.contains("published now"), "{out}");
    let jwks = jwks(&server).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "the new key is published before it signs");
    let new_kid = kids.iter().find(|k| **k != old_kid).unwrap().to_string();
    // During the publish delay the old key still signs (a refresh is quick enough to be
    // sure it happens inside the delay).
    let (status, during) =
        json(refresh(&server, old["refresh_token"].as_str().unwrap(), &[]).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        rotated_at.elapsed() < std::time::Duration::from_secs(4),
        "test too slow to observe the delay"
    );
    assert_eq!(
        header(during["access_token"].as_str().unwrap())["kid"],
        old_kid.as_str()
    );
    let listing = cli(&server, &["keys", "list"]);
    assert!(listing.contains("pending"), "{listing}");

    tokio::time::sleep_until((rotated_at + std::time::Duration::from_millis(5100)).into()).await;
    // The running server picked up the rotation from the database without a restart.
    let after = tokens(&server).await;
    let after_access = after["access_token"].as_str().unwrap();
    assert_eq!(header(after_access)["kid"], new_kid.as_str());
    verify_with_jwks(&server, after_access).await.unwrap();
    // Tokens signed with the old key still verify through the JWKS until they expire.
    verify_with_jwks(&server, &old_access).await.unwrap();
    let listing = cli(&server, &["keys", "list"]);
    assert!(listing.contains("retiring"), "{listing}");
}

/// A server configured with `signing_algorithm = alg` issues tokens with that `alg` that
/// verify through its JWKS.
async fn assert_tokens_are_signed_with(alg: &str) {
    let server = TestServer::start_with(&format!("signing_algorithm = \"{alg}\""), "").await;
    let t = tokens(&server).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(header(access)["alg"], alg);
    verify_with_jwks(&server, access).await.unwrap();
}

#[tokio::test]
async fn es256_signing_is_selectable() {
    assert_tokens_are_signed_with("ES256").await;
}

#[tokio::test]
async fn rs256_signing_is_selectable() {
    assert_tokens_are_signed_with("RS256").await;
}

#[tokio::test]
async fn storage_file_is_private_and_holds_no_plain_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = TestServer::start().await;
    let t = tokens(&server).await;
    server.stop().await;
    let meta = std::fs::metadata(server.db_path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut bytes = std::fs::read(server.db_path()).unwrap();
    bytes.extend(std::fs::read(server.db_path().with_extension("sqlite-wal")).unwrap_or_default());
    let refresh = t["refresh_token"].as_str().unwrap().as_bytes();
    assert!(
        !bytes.windows(refresh.len()).any(|w| w == refresh),
        "refresh tokens are stored hashed"
    );
}

#[test]
fn hash_password_prints_an_argon2id_hash_and_config_errors_name_the_field() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-auth-server"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"));
    assert!(mcp_auth_server::secrets::verify_password(
        hash.trim(),
        "s3cret"
    ));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "issuer = \"http://localhost:9000/\"\n[[resources]]\nurl = \"http://r/mcp\"\nscopes = [\"a\"]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-auth-server"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`issuer`"), "{err}");
}

#[tokio::test]
async fn removing_a_user_ends_their_session_and_refresh_tokens() {
    let mut server = TestServer::start().await;
    let b = browser();
    let p = pkce();
    let code = get_code(&b, &server, &p).await;
    let (status, t) = json(redeem(&server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let p2 = pkce();
    let pending_code = get_code(&b, &server, &p2).await;
    let text = std::fs::read_to_string(&server.config_path).unwrap();
    std::fs::write(
        &server.config_path,
        text.replace("username = \"demo\"", "username = \"someone-else\""),
    )
    .unwrap();
    server.restart().await;

    let (status, body) =
        json(refresh(&server, t["refresh_token"].as_str().unwrap(), &[]).await).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = json(redeem(&server, &pending_code, &p2.verifier).await).await;
    assert_eq!(body["error"], "invalid_grant", "{status} {body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{body}"
    );
    // The old session cookie no longer signs anyone in: the login page comes back.
    let resp = b
        .get(authorize_url(&server, &standard_params(&p, "st")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("name=\"password\""));
}

#[tokio::test]
async fn removing_a_resource_or_one_of_its_scopes_ends_the_grants_made_for_it() {
    for edit in [
        |t: String| t.replace(RESOURCE, "http://localhost:10001/other"),
        |t: String| {
            t.replace(
                "scopes = [\"mcp:tools\", \"mcp:admin\"]",
                "scopes = [\"mcp:admin\"]",
            )
            .replace(
                "default_scopes = [\"mcp:tools\"]",
                "default_scopes = [\"mcp:admin\"]",
            )
        },
    ] {
        let mut server = TestServer::start().await;
        let t = tokens(&server).await;
        let text = std::fs::read_to_string(&server.config_path).unwrap();
        std::fs::write(&server.config_path, edit(text)).unwrap();
        server.restart().await;
        let (status, body) =
            json(refresh(&server, t["refresh_token"].as_str().unwrap(), &[]).await).await;
        assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}
