//! What the bearer guard answers a request it refuses (RFC 6750 §3, RFC 9728 §5.1, and the MCP
//! step-up rule): the error, and the `WWW-Authenticate` challenge with its parameters. Plain values;
//! the http layer renders them once.

use std::borrow::Cow;
use std::fmt;

use super::{AuthServer, BearerError, ErrorCode, OAuthError, ScopePolicy};

/// A `WWW-Authenticate: Bearer` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge<'a> {
    resource_metadata: &'a str,
    error: Option<ErrorCode>,
    error_description: Option<&'static str>,
    scope: Option<String>,
}

impl Challenge<'_> {
    /// The `error` parameter; `None` for a request that sent no credentials.
    pub(crate) fn error(&self) -> Option<ErrorCode> {
        self.error
    }
}

/// `Bearer resource_metadata="…", error="…", error_description="…", scope="…"`: each parameter at
/// most once, each value a quoted string of the characters RFC 6750 §3 allows (printable ASCII but
/// `"` and `\`), so the text is always a valid header value.
impl fmt::Display for Challenge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bearer ")?;
        let params = [
            ("resource_metadata", Some(self.resource_metadata)),
            ("error", self.error.map(ErrorCode::as_str)),
            ("error_description", self.error_description),
            ("scope", self.scope.as_deref()),
        ];
        let mut first = true;
        for (name, value) in params {
            let Some(value) = value else { continue };
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{name}=\"")?;
            for c in value.chars().filter(|c| is_quotable(*c)) {
                write!(f, "{c}")?;
            }
            write!(f, "\"")?;
        }
        Ok(())
    }
}

/// RFC 6750 §3: `%x20-21 / %x23-5B / %x5D-7E`.
fn is_quotable(c: char) -> bool {
    matches!(c, ' '..='~') && c != '"' && c != '\\'
}

/// A refused request: the JSON error, whose code decides the status (400 `invalid_request`, 401
/// `invalid_token`, 403 `insufficient_scope`, 503 for a store outage), and the challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal<'a> {
    pub(crate) error: OAuthError,
    /// `None` only for a store outage: not the token's fault, and no reason to authorize again.
    pub(crate) challenge: Option<Challenge<'a>>,
}

/// The rules every challenge of this resource follows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BearerRules<'a> {
    /// The path-suffixed protected resource metadata URL, named in every challenge (RFC 9728 §5.1).
    pub(crate) resource_metadata: &'a str,
    /// The configured scopes, in order.
    pub(crate) scopes: &'a [String],
    /// What a client that sent no token should ask for.
    pub(crate) default_scopes: &'a [String],
}

const INVALID_TOKEN: &str = "the access token is invalid, expired, revoked or for another resource";

impl<'a> BearerRules<'a> {
    fn challenge(
        &self,
        error: Option<ErrorCode>,
        error_description: Option<&'static str>,
        scope: Option<String>,
    ) -> Challenge<'a> {
        Challenge {
            resource_metadata: self.resource_metadata,
            error,
            error_description,
            scope,
        }
    }

    /// The answer to a request whose token did not check out.
    pub(crate) fn refuse(&self, error: BearerError) -> Refusal<'a> {
        match error {
            // §3.1: no credentials at all gets no error code; the scopes to ask for help the
            // client start.
            BearerError::Missing => Refusal {
                error: OAuthError::new(ErrorCode::InvalidToken, "an access token is required"),
                challenge: Some(self.challenge(None, None, Some(self.default_scopes.join(" ")))),
            },
            BearerError::Malformed(description) => Refusal {
                error: OAuthError::invalid_request(description),
                challenge: Some(self.challenge(Some(ErrorCode::InvalidRequest), None, None)),
            },
            BearerError::Invalid => Refusal {
                error: OAuthError::new(ErrorCode::InvalidToken, INVALID_TOKEN),
                challenge: Some(self.challenge(
                    Some(ErrorCode::InvalidToken),
                    Some(INVALID_TOKEN),
                    None,
                )),
            },
            BearerError::Unavailable => Refusal {
                error: OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "authorization is temporarily unavailable, try again shortly",
                ),
                challenge: None,
            },
        }
    }

    /// The step-up decision: `Ok` when a token holding `held` satisfies every scope in `needed`
    /// (through `policy`'s implications, when there is a policy); else 403 `insufficient_scope`.
    ///
    /// The challenge's `scope` is every needed scope together with the configured ones already
    /// held: 2026-07-28 clients add the challenged scopes to what they hold, but earlier ones (and
    /// the Python SDK) ask for exactly the challenged scopes, and would otherwise lose what they had.
    pub(crate) fn check_scopes(
        &self,
        needed: &[String],
        held: &[String],
        policy: Option<&ScopePolicy>,
    ) -> Result<(), Refusal<'a>> {
        let satisfied = |scope: &str| match policy {
            Some(policy) => policy.satisfied_by(scope, held),
            None => held.iter().any(|h| h == scope),
        };
        let missing: Vec<&str> = needed
            .iter()
            .map(String::as_str)
            .filter(|scope| !satisfied(scope))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let scope = challenge_scopes(self.scopes, needed, held).join(" ");
        Err(Refusal {
            error: OAuthError::new(
                ErrorCode::InsufficientScope,
                Cow::Owned(format!("this request needs scope: {}", missing.join(" "))),
            ),
            challenge: Some(self.challenge(Some(ErrorCode::InsufficientScope), None, Some(scope))),
        })
    }
}

/// The `scope` of an `insufficient_scope` challenge: the scopes the request needs and the configured
/// ones the token holds, in configuration order (needed scopes that are not configured last).
fn challenge_scopes(configured: &[String], needed: &[String], held: &[String]) -> Vec<String> {
    let mut scopes: Vec<String> = configured
        .iter()
        .filter(|scope| needed.contains(scope) || held.contains(scope))
        .cloned()
        .collect();
    for scope in needed {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    scopes
}

impl AuthServer {
    /// The challenge rules of this server's resource.
    pub(crate) fn bearer_rules(&self) -> BearerRules<'_> {
        BearerRules {
            resource_metadata: &self.settings.resource_metadata_url,
            scopes: &self.settings.scopes,
            default_scopes: &self.settings.default_scopes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|x| (*x).to_owned()).collect()
    }

    /// Runs `check` with rules for a server configured with `scopes`, `mcp` by default.
    fn with_rules<T>(scopes: &[&str], check: impl FnOnce(BearerRules<'_>) -> T) -> T {
        let scopes = s(scopes);
        let default_scopes = s(&["mcp"]);
        check(BearerRules {
            resource_metadata: PRM,
            scopes: &scopes,
            default_scopes: &default_scopes,
        })
    }

    fn refused(error: BearerError) -> (OAuthError, Option<String>) {
        with_rules(&["mcp"], |rules| {
            let refusal = rules.refuse(error);
            (refusal.error, refusal.challenge.map(|c| c.to_string()))
        })
    }

    fn all_failures() -> [BearerError; 4] {
        [
            BearerError::Missing,
            BearerError::Malformed("send one Authorization header"),
            BearerError::Invalid,
            BearerError::Unavailable,
        ]
    }

    #[test]
    fn every_challenge_uses_the_bearer_scheme_and_names_the_resource_metadata() {
        // RFC 6750 §3 (scheme) and RFC 9728 §5.1 (resource_metadata).
        for error in all_failures() {
            if let (_, Some(challenge)) = refused(error) {
                assert!(
                    challenge.starts_with(&format!("Bearer resource_metadata=\"{PRM}\"")),
                    "{challenge}"
                );
            }
        }
    }

    #[test]
    fn a_request_without_credentials_gets_no_error_code() {
        // RFC 6750 §3.1: "the resource server SHOULD NOT include an error code or other error
        // information"; the scopes to ask for are there to start the flow (MCP authorization).
        let (error, challenge) = refused(BearerError::Missing);
        assert_eq!(
            challenge.as_deref(),
            Some(format!("Bearer resource_metadata=\"{PRM}\", scope=\"mcp\"").as_str())
        );
        assert_eq!(
            error.code,
            ErrorCode::InvalidToken,
            "the body still says why"
        );
    }

    #[test]
    fn a_malformed_request_is_invalid_request() {
        // RFC 6750 §3.1: invalid_request, 400.
        let (error, challenge) = refused(BearerError::Malformed("send one Authorization header"));
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(error.description, "send one Authorization header");
        assert_eq!(
            challenge.as_deref(),
            Some(format!("Bearer resource_metadata=\"{PRM}\", error=\"invalid_request\"").as_str())
        );
    }

    #[test]
    fn a_bad_token_is_invalid_token_with_a_description() {
        // RFC 6750 §3.1: invalid_token, 401; error_description is for the developer.
        let (error, challenge) = refused(BearerError::Invalid);
        assert_eq!(error.code, ErrorCode::InvalidToken);
        assert_eq!(
            challenge.as_deref(),
            Some(
                format!(
                    "Bearer resource_metadata=\"{PRM}\", error=\"invalid_token\", \
                     error_description=\"{INVALID_TOKEN}\""
                )
                .as_str()
            )
        );
    }

    #[test]
    fn a_store_outage_is_no_challenge() {
        // Not the token's fault: a challenge (or a 401) would make clients throw their tokens away.
        let (error, challenge) = refused(BearerError::Unavailable);
        assert_eq!(error.code, ErrorCode::TemporarilyUnavailable);
        assert_eq!(challenge, None);
    }

    #[test]
    fn enough_scope_passes() {
        with_rules(&["mcp", "admin"], |rules| {
            assert_eq!(rules.check_scopes(&[], &s(&["mcp"]), None), Ok(()));
            assert_eq!(
                rules.check_scopes(&s(&["admin"]), &s(&["mcp", "admin"]), None),
                Ok(())
            );
        });
    }

    #[test]
    fn too_little_scope_is_insufficient_scope_naming_the_scopes_to_ask_for() {
        // RFC 6750 §3.1: insufficient_scope, 403, with `scope` "necessary to access the resource".
        with_rules(&["mcp", "files:write", "admin"], |rules| {
            let refusal = rules
                .check_scopes(
                    &s(&["admin", "files:write"]),
                    &s(&["mcp", "files:write"]),
                    None,
                )
                .unwrap_err();
            assert_eq!(refusal.error.code, ErrorCode::InsufficientScope);
            assert_eq!(refusal.error.description, "this request needs scope: admin");
            let challenge = refusal.challenge.unwrap();
            assert_eq!(challenge.error(), Some(ErrorCode::InsufficientScope));
            assert_eq!(
                challenge.to_string(),
                format!(
                    "Bearer resource_metadata=\"{PRM}\", error=\"insufficient_scope\", \
                     scope=\"mcp files:write admin\""
                )
            );
        });
    }

    #[test]
    fn a_policy_counts_implied_scopes_as_held() {
        let policy = ScopePolicy::new().implies("admin", ["files:write"]);
        with_rules(&["mcp", "files:write", "admin"], |rules| {
            let needed = s(&["files:write"]);
            assert_eq!(
                rules.check_scopes(&needed, &s(&["admin"]), Some(&policy)),
                Ok(())
            );
            assert!(rules.check_scopes(&needed, &s(&["admin"]), None).is_err());
        });
    }

    #[test]
    fn challenge_names_needed_and_held_scopes_in_configured_order() {
        let configured = s(&["mcp", "files:write", "admin", "billing"]);
        assert_eq!(
            challenge_scopes(&configured, &s(&["admin", "files:write"]), &s(&["mcp"])),
            s(&["mcp", "files:write", "admin"])
        );
        assert_eq!(
            challenge_scopes(&configured, &s(&["admin"]), &s(&["mcp", "gone"])),
            s(&["mcp", "admin"]),
            "held scopes no longer configured are not asked for again"
        );
        assert_eq!(
            challenge_scopes(&configured, &s(&["unconfigured"]), &s(&["mcp"])),
            s(&["mcp", "unconfigured"])
        );
    }

    #[test]
    fn parameter_values_keep_to_the_characters_rfc_6750_allows() {
        // RFC 6750 §3: `scope` and `error_description` values are `%x20-21 / %x23-5B / %x5D-7E`;
        // a scope named by a route's rules is the server's own text, but never trusted to be so.
        with_rules(&["mcp"], |rules| {
            let refusal = rules
                .check_scopes(&s(&["a\"b\\c\r\nd\u{e9}"]), &[], None)
                .unwrap_err();
            let challenge = refusal.challenge.unwrap().to_string();
            assert!(challenge.ends_with("scope=\"abcd\""), "{challenge}");
            assert!(challenge.chars().all(|c| matches!(c, ' '..='~')));
        });
    }

    #[test]
    fn each_parameter_appears_at_most_once() {
        // RFC 6750 §3: "Attributes MUST NOT appear more than once."
        with_rules(&["mcp", "admin"], |rules| {
            let mut challenges: Vec<String> = all_failures()
                .into_iter()
                .filter_map(|error| rules.refuse(error).challenge)
                .map(|c| c.to_string())
                .collect();
            challenges.extend(
                rules
                    .check_scopes(&s(&["admin"]), &s(&["mcp"]), None)
                    .unwrap_err()
                    .challenge
                    .map(|c| c.to_string()),
            );
            for challenge in challenges {
                for name in [
                    "resource_metadata=",
                    "error=",
                    "error_description=",
                    "scope=",
                ] {
                    let count = challenge
                        .split(", ")
                        .filter(|param| param.trim_start_matches("Bearer ").starts_with(name))
                        .count();
                    assert!(count <= 1, "{name} twice in {challenge}");
                }
            }
        });
    }
}
