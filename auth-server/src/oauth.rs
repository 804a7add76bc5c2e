//! The OAuth vocabulary this server supports: grant types and client authentication methods.
//! The handlers match these enums and the metadata document lists [`GrantType::ALL`] and
//! [`AuthMethod::ALL`], so a value accepted by one is advertised by the other.

/// The only response type `/authorize` accepts.
pub const RESPONSE_TYPE_CODE: &str = "code";

/// A grant the token endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
}

impl GrantType {
    /// Every grant type, in the order the metadata lists them. Parsing goes through this list,
    /// so a grant that is missing here is refused everywhere rather than served unadvertised.
    pub const ALL: [GrantType; 2] = [GrantType::AuthorizationCode, GrantType::RefreshToken];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == name)
    }
}

/// How a client authenticates at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with one of the client's keys (RFC 7523 §2.2).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// Every method, in the order the metadata lists them; parsing goes through this list.
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::None,
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// What kind of application a client is (OpenID Connect Dynamic Client Registration §2): it
/// decides which redirect URIs the client may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationType {
    /// Runs on a web server: https redirect URIs only.
    Web,
    /// Runs on the user's device: loopback http, private-use schemes, or claimed https.
    Native,
}

impl ApplicationType {
    pub const ALL: [ApplicationType; 2] = [ApplicationType::Web, ApplicationType::Native];

    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationType::Web => "web",
            ApplicationType::Native => "native",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grant_type_and_method_parses_from_its_own_name() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        for m in AuthMethod::ALL {
            assert_eq!(AuthMethod::parse(m.as_str()), Some(m));
        }
        for a in ApplicationType::ALL {
            assert_eq!(ApplicationType::parse(a.as_str()), Some(a));
        }
        assert_eq!(GrantType::parse("password"), None);
        assert_eq!(AuthMethod::parse("client_secret_jwt"), None);
    }
}
