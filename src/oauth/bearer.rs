//! Access-token validation for the resource server: the work the bearer guard does per request.

use super::payload::{self, TokenGrantView};
use super::{AuthServer, log_store_error};
use crate::store::{GrantId, TokenHash, TokenKind, UnixTime};

/// Who is calling: set by the bearer guard on every request it lets through, and read by MCP
/// handlers with the [`TokenInfo`] extractor.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// The scopes the token carries.
    pub scopes: Vec<String>,
    /// The grant the token belongs to: one approval by the owner, or, for a machine's token,
    /// that token alone.
    pub grant_id: GrantId,
    /// When the token expires.
    pub expires_at: UnixTime,
    /// On whose authority the token acts: the owner's approval, or a machine client's own.
    pub subject: TokenSubject,
}

/// On whose authority a token acts. A handler that does something only the owner may approve
/// (act on their data, spend their money) checks for [`TokenSubject::Owner`], or calls
/// [`TokenInfo::is_approved_by_owner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSubject {
    /// The owner approved this client with their passkey (`authorization_code`, and the
    /// refreshes after it): the token acts for the owner.
    Owner,
    /// A machine client the configuration names got this token for itself
    /// (`client_credentials`): no person approved it. [`TokenInfo::client_id`] is the machine.
    Machine,
}

impl TokenInfo {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the owner approved this token's client with their passkey: `false` for a
    /// machine client's token.
    pub fn is_approved_by_owner(&self) -> bool {
        self.subject == TokenSubject::Owner
    }
}

/// Why a request was not let through.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BearerError {
    /// No credentials at all: a plain challenge.
    Missing,
    /// Credentials in a form this server does not take (query string, other scheme, two headers).
    Malformed(&'static str),
    /// A token that is unknown, expired, revoked or for another resource.
    Invalid,
    /// The store is down: not the token's fault.
    Unavailable,
}

impl AuthServer {
    /// Validate an `Authorization` header value.
    pub(crate) async fn check_bearer(
        &self,
        authorization: &[u8],
    ) -> Result<TokenInfo, BearerError> {
        let token = parse_bearer(authorization)?;
        let record = self
            .tokens
            .get(TokenKind::AccessToken, &TokenHash::of(token))
            .await
            .map_err(|e| {
                log_store_error(&e);
                BearerError::Unavailable
            })?
            .ok_or(BearerError::Invalid)?;
        let grant: TokenGrantView<'_> = payload::decode(&record).map_err(|e| {
            log_store_error(&e);
            BearerError::Unavailable
        })?;
        if grant.resource != self.settings.resource.as_str() {
            return Err(BearerError::Invalid);
        }
        let (subject, scopes) = self
            .standing(&record, &grant.client_id, grant.scopes)
            .ok_or(BearerError::Invalid)?;
        Ok(TokenInfo {
            client_id: grant.client_id,
            scopes,
            grant_id: record.grant_id,
            expires_at: record.expires_at,
            subject,
        })
    }
}

/// The one credential a request sent (RFC 6750 §2: one method per request, and this server takes
/// only the `Authorization` header), from its `Authorization` header values and its query.
pub(crate) fn sent_credentials<'r>(
    mut authorization: impl Iterator<Item = &'r [u8]>,
    query: Option<&str>,
) -> Result<&'r [u8], BearerError> {
    let first = authorization.next();
    if authorization.next().is_some() {
        return Err(BearerError::Malformed("send one Authorization header"));
    }
    let has_access_token_param = |query: &str| {
        form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "access_token")
    };
    if query.is_some_and(has_access_token_param) {
        return Err(BearerError::Malformed(
            "access tokens are accepted only in the Authorization header",
        ));
    }
    first.ok_or(BearerError::Missing)
}

/// The b64token characters (RFC 6750 §2.1), as a table: checked for every byte of every token.
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

/// `Bearer <token>` (RFC 6750 §2.1): the scheme is case-insensitive; the token is b64token.
fn parse_bearer(value: &[u8]) -> Result<&str, BearerError> {
    let value = std::str::from_utf8(value).map_err(|_| BearerError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(BearerError::Malformed(
        "the Authorization header must use the Bearer scheme",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Malformed(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| B64TOKEN[usize::from(b)]) {
        return Err(BearerError::Invalid);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_credential_in_the_header_only() {
        let sent = |headers: &[&'static str], query| {
            sent_credentials(headers.iter().map(|h| h.as_bytes()), query)
        };
        assert_eq!(sent(&["Bearer abc"], None), Ok(&b"Bearer abc"[..]));
        assert_eq!(sent(&["Bearer abc"], Some("a=1")), Ok(&b"Bearer abc"[..]));
        assert_eq!(sent(&[], None), Err(BearerError::Missing));
        assert_eq!(
            sent(&[], Some("access_tokens=x")),
            Err(BearerError::Missing)
        );
        assert!(matches!(
            sent(&["Bearer a", "Bearer a"], None),
            Err(BearerError::Malformed(_))
        ));
        // RFC 6750 §2.3 is not offered: a token in the query is refused even beside a header.
        for query in ["access_token=x", "a=1&access_token=", "access%5Ftoken=x"] {
            assert!(
                matches!(
                    sent(&["Bearer abc"], Some(query)),
                    Err(BearerError::Malformed(_))
                ),
                "{query}"
            );
            assert!(matches!(
                sent(&[], Some(query)),
                Err(BearerError::Malformed(_))
            ));
        }
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(parse_bearer(b"Bearer abc"), Ok("abc"));
        assert_eq!(parse_bearer(b"bearer abc"), Ok("abc"));
        assert_eq!(parse_bearer(b"BEARER  abc"), Ok("abc"));
        assert!(matches!(
            parse_bearer(b"Basic abc"),
            Err(BearerError::Malformed(_))
        ));
        assert!(matches!(
            parse_bearer(b"Bearer"),
            Err(BearerError::Malformed(_))
        ));
        assert_eq!(parse_bearer(b"Bearer "), Err(BearerError::Invalid));
        assert_eq!(parse_bearer(b"Bearer a b"), Err(BearerError::Invalid));
        assert_eq!(parse_bearer(b"Bearer a\"b"), Err(BearerError::Invalid));
        assert_eq!(parse_bearer(&[b'B', 0xff]), Err(BearerError::Invalid));
    }
}
