//! Who may sign in through an identity provider and which MCP scopes they may be granted,
//! decided from their upstream claims. Pure: no IO, unit-tested below.

use crate::identity::UpstreamIdentity;
use crate::idp::{IdentityProvider, ScopeRule};

/// Why a person may not sign in. The text is shown to them; it names no internal detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInRefusal {
    /// An email domain allow-list is configured and the provider sent no email.
    NoEmail,
    /// An email domain allow-list is configured and the provider did not verify the email.
    EmailNotVerified,
    EmailDomainNotAllowed {
        domain: String,
    },
    NotInRequiredGroup,
}

impl SignInRefusal {
    pub fn message(&self) -> String {
        match self {
            SignInRefusal::NoEmail => {
                "Your account at the identity provider has no email address, which this server needs to decide whether you may sign in.".into()
            }
            SignInRefusal::EmailNotVerified => {
                "Your email address is not verified at the identity provider.".into()
            }
            SignInRefusal::EmailDomainNotAllowed { domain } => {
                format!("Accounts of the domain {domain} may not sign in here.")
            }
            SignInRefusal::NotInRequiredGroup => {
                "Your account is not in a group that may sign in here.".into()
            }
        }
    }

    /// A short label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignInRefusal::NoEmail => "no_email",
            SignInRefusal::EmailNotVerified => "email_not_verified",
            SignInRefusal::EmailDomainNotAllowed { .. } => "email_domain",
            SignInRefusal::NotInRequiredGroup => "group",
        }
    }
}

/// May this person sign in? Checks the email-domain allow-list and the required groups.
pub fn may_sign_in(p: &IdentityProvider, who: &UpstreamIdentity) -> Result<(), SignInRefusal> {
    if !p.allowed_email_domains.is_empty() {
        let email = who.email.as_deref().ok_or(SignInRefusal::NoEmail)?;
        if p.require_verified_email && !who.email_verified {
            return Err(SignInRefusal::EmailNotVerified);
        }
        // The domain is what follows the last `@`; the comparison ignores ASCII case.
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .ok_or(SignInRefusal::NoEmail)?;
        if !p.allowed_email_domains.contains(&domain) {
            return Err(SignInRefusal::EmailDomainNotAllowed { domain });
        }
    }
    if !p.required_groups.is_empty() && !p.required_groups.iter().any(|g| who.groups.contains(g)) {
        return Err(SignInRefusal::NotInRequiredGroup);
    }
    Ok(())
}

/// A requested scope the person may not have, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub scope: String,
    pub reason: String,
}

/// The requested scopes split into those granted and those withheld.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeDecision {
    pub granted: Vec<String>,
    pub withheld: Vec<Withheld>,
}

/// Applies the scope rules: a scope with a rule is granted only to members of one of its
/// groups; a scope without a rule is granted to everyone who may sign in.
pub fn decide_scopes(
    rules: &[ScopeRule],
    groups: &[String],
    requested: &[String],
) -> ScopeDecision {
    let mut decision = ScopeDecision::default();
    for scope in requested {
        match rules.iter().find(|r| &r.scope == scope) {
            Some(rule) if !rule.groups.iter().any(|g| groups.contains(g)) => {
                decision.withheld.push(Withheld {
                    scope: scope.clone(),
                    reason: format!("only members of {} may have it", rule.groups.join(" or ")),
                });
            }
            _ => decision.granted.push(scope.clone()),
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> IdentityProvider {
        IdentityProvider {
            id: "corp".into(),
            display_name: "Corp".into(),
            issuer: "https://idp.example".into(),
            client_id: "c".into(),
            client_auth: crate::idp::ClientAuth::Secret("s".into()),
            scopes: vec!["openid".into()],
            authorization_params: Default::default(),
            id_token_signing_algs: vec!["RS256".into()],
            copy_claims: vec![],
            groups_claim: "groups".into(),
            allowed_email_domains: vec![],
            require_verified_email: true,
            required_groups: vec![],
            scope_rules: vec![],
        }
    }

    fn person(email: Option<&str>, verified: bool, groups: &[&str]) -> UpstreamIdentity {
        UpstreamIdentity {
            provider_id: "corp".into(),
            upstream_sub: "u".into(),
            email: email.map(str::to_string),
            email_verified: verified,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            copied: Default::default(),
        }
    }

    #[test]
    fn without_rules_everyone_the_provider_vouches_for_signs_in() {
        assert_eq!(may_sign_in(&provider(), &person(None, false, &[])), Ok(()));
    }

    #[test]
    fn the_email_domain_allow_list_needs_a_verified_email_of_a_listed_domain() {
        let mut p = provider();
        p.allowed_email_domains = vec!["example.com".into()];
        assert_eq!(
            may_sign_in(&p, &person(Some("a@Example.COM"), true, &[])),
            Ok(())
        );
        assert_eq!(
            may_sign_in(&p, &person(Some("a@example.com.evil.test"), true, &[])),
            Err(SignInRefusal::EmailDomainNotAllowed {
                domain: "example.com.evil.test".into()
            })
        );
        assert_eq!(
            may_sign_in(&p, &person(Some("a@example.com"), false, &[])),
            Err(SignInRefusal::EmailNotVerified)
        );
        assert_eq!(
            may_sign_in(&p, &person(None, true, &[])),
            Err(SignInRefusal::NoEmail)
        );
        p.require_verified_email = false;
        assert_eq!(
            may_sign_in(&p, &person(Some("a@example.com"), false, &[])),
            Ok(())
        );
    }

    #[test]
    fn a_required_group_keeps_out_everyone_else() {
        let mut p = provider();
        p.required_groups = vec!["staff".into(), "contractors".into()];
        assert_eq!(
            may_sign_in(&p, &person(None, false, &["contractors"])),
            Ok(())
        );
        assert_eq!(
            may_sign_in(&p, &person(None, false, &["Staff"])),
            Err(SignInRefusal::NotInRequiredGroup)
        );
    }

    #[test]
    fn a_ruled_scope_is_withheld_from_non_members_with_the_reason() {
        let rules = vec![ScopeRule {
            scope: "mcp:admin".into(),
            groups: vec!["mcp-admins".into()],
        }];
        let requested = vec!["mcp:tools".to_string(), "mcp:admin".to_string()];
        let outsider = decide_scopes(&rules, &["mcp-users".into()], &requested);
        assert_eq!(outsider.granted, vec!["mcp:tools"]);
        assert_eq!(outsider.withheld.len(), 1);
        assert_eq!(outsider.withheld[0].scope, "mcp:admin");
        assert!(outsider.withheld[0].reason.contains("mcp-admins"));
        let admin = decide_scopes(&rules, &["mcp-admins".into()], &requested);
        assert_eq!(admin.granted, requested);
        assert!(admin.withheld.is_empty());
    }
}
