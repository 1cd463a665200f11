//! The client metadata format (RFC 7591 §2), parsed once for both ways a client describes itself:
//! a registration request and a Client ID Metadata Document. Every rule on a member's type, size
//! and meaning lives here, with the limits of [`limits`](crate::rules::limits); what differs by source (who picks
//! the authentication method, what a public document may not carry) is a short rule the caller
//! applies to the [`ClientMetadata`] it gets.

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::Value;

use super::params::printable;
use crate::rules::limits::{
    MAX_CLIENT_NAME_CHARS, MAX_REDIRECT_URIS, MAX_REDIRECT_URIS_TOTAL_BYTES, MAX_SCOPE_BYTES,
    MAX_URI_BYTES, check_bytes, check_chars,
};
use crate::rules::redirect_uri;

/// The grant types this server supports, in the order they are shown.
const GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];

/// Client metadata that meets every rule of the format: redirect URIs acceptable and within the
/// limits, every kept string within its limit, the name cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientMetadata {
    /// Distinct, each registrable, at most [`MAX_REDIRECT_URIS`] and
    /// [`MAX_REDIRECT_URIS_TOTAL_BYTES`] in all.
    pub(crate) redirect_uris: Vec<String>,
    /// The method as named, if any: what it means, and the default, depend on the source.
    pub(crate) token_endpoint_auth_method: Option<String>,
    /// The supported grant types asked for; others (say `client_credentials`) are dropped, as
    /// RFC 7591 §2 allows. Always holds `authorization_code`, which is all when none were named.
    pub(crate) grant_types: Vec<String>,
    /// Cleaned by [`clean_client_name`]; `None` when absent or nothing is left of it.
    pub(crate) client_name: Option<String>,
    /// Only an `http(s)` URI is kept: it becomes a link.
    pub(crate) client_uri: Option<String>,
    pub(crate) scope: Option<String>,
    /// `native` or `web` (OpenID Connect Registration §2).
    pub(crate) application_type: Option<String>,
    /// Members a registration request does not use.
    pub(crate) document: DocumentMembers,
}

/// Members whose rules depend on the source, so their types are checked by the caller, not here.
/// A metadata document is judged by all of them; a registration request uses the keys and the
/// signing algorithm for `private_key_jwt` alone and ignores the rest, as RFC 7591 §2 has a server
/// ignore whatever it does not use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct DocumentMembers {
    pub(crate) client_id: Sent<String>,
    /// A document may offer several methods; an asymmetric preferred one is usable only with
    /// `none` among them.
    pub(crate) token_endpoint_auth_methods_supported: Sent<Vec<String>>,
    /// `client_secret` or `client_secret_expires_at` is present.
    pub(crate) carries_client_secret: bool,
    pub(crate) jwks: Option<Value>,
    /// Where the client publishes its public keys (`private_key_jwt`).
    pub(crate) jwks_uri: Sent<String>,
    /// The one algorithm its assertions are signed with (OpenID Connect Registration §2).
    pub(crate) token_endpoint_auth_signing_alg: Sent<String>,
}

/// Why metadata was refused, in the words of RFC 7591 §3.2.2. Each source says the first two in
/// its own words (a request body, a fetched document); the descriptions of the others start with
/// the member's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetadataError {
    NotJson {
        line: usize,
        column: usize,
    },
    NotAnObject,
    /// `invalid_redirect_uri`.
    RedirectUris(String),
    /// `invalid_client_metadata`.
    Member(String),
}

/// A member as sent: absent (or `null`), of the type expected, or of another, which only the
/// member's rule can put in words. Decoding it never fails, so one wrong member is refused by name
/// instead of failing the whole body with a parser's message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Sent<T> {
    #[default]
    Absent,
    Given(T),
    WrongType,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Sent<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Null => Self::Absent,
            value => serde_json::from_value(value).map_or(Self::WrongType, Self::Given),
        })
    }
}

/// The members this server understands. There is no `deny_unknown_fields`: RFC 7591 §2 has a
/// server ignore metadata it does not understand (`logo_uri`, `contacts`, `software_id`, …), and
/// a metadata document is client metadata too.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Members {
    redirect_uris: Sent<Vec<String>>,
    token_endpoint_auth_method: Sent<String>,
    token_endpoint_auth_methods_supported: Sent<Vec<String>>,
    grant_types: Sent<Vec<String>>,
    response_types: Sent<Vec<String>>,
    application_type: Sent<String>,
    client_name: Sent<String>,
    client_uri: Sent<String>,
    scope: Sent<String>,
    client_id: Sent<String>,
    client_secret: Sent<Value>,
    client_secret_expires_at: Sent<Value>,
    jwks: Sent<Value>,
    jwks_uri: Sent<String>,
    token_endpoint_auth_signing_alg: Sent<String>,
}

impl ClientMetadata {
    /// Parse a JSON object of client metadata, with `native_redirect_uris` the private-use redirect
    /// URIs that may be registered besides `https` and loopback `http`.
    ///
    /// # Errors
    ///
    /// The first rule broken, in the order registration has always checked them.
    pub(crate) fn parse(
        body: &[u8],
        native_redirect_uris: &[String],
    ) -> Result<Self, MetadataError> {
        let object = match serde_json::from_slice(body) {
            Ok(object @ Value::Object(_)) => object,
            Ok(_) => return Err(MetadataError::NotAnObject),
            Err(e) => {
                return Err(MetadataError::NotJson {
                    line: e.line(),
                    column: e.column(),
                });
            }
        };
        // Every member takes any value (`Sent`) and unknown ones are skipped, so an object always
        // decodes; the error arm only keeps this total.
        let members = Members::deserialize(object).map_err(|_| MetadataError::NotAnObject)?;
        let redirect_uris = redirect_uris(members.redirect_uris, native_redirect_uris)?;
        let token_endpoint_auth_method = text(
            members.token_endpoint_auth_method,
            "token_endpoint_auth_method",
        )?;
        let grant_types = grant_types(members.grant_types)?;
        response_types(members.response_types)?;
        let application_type = match text(members.application_type, "application_type")? {
            None => None,
            Some(t) if t == "native" || t == "web" => Some(t),
            Some(_) => return Err(member("application_type must be native or web")),
        };
        let client_name = match text(members.client_name, "client_name")? {
            None => None,
            Some(name) => {
                check_chars("client_name", &name, MAX_CLIENT_NAME_CHARS).map_err(member)?;
                clean_client_name(&name)
            }
        };
        let client_uri = bounded(members.client_uri, "client_uri", MAX_URI_BYTES)?
            .filter(|uri| uri.starts_with("https://") || uri.starts_with("http://"));
        let scope = bounded(members.scope, "scope", MAX_SCOPE_BYTES)?;
        Ok(Self {
            redirect_uris,
            token_endpoint_auth_method,
            grant_types,
            client_name,
            client_uri,
            scope,
            application_type,
            document: DocumentMembers {
                client_id: members.client_id,
                token_endpoint_auth_methods_supported: members
                    .token_endpoint_auth_methods_supported,
                carries_client_secret: !matches!(
                    (members.client_secret, members.client_secret_expires_at),
                    (Sent::Absent, Sent::Absent)
                ),
                jwks: match members.jwks {
                    Sent::Given(jwks) => Some(jwks),
                    Sent::Absent | Sent::WrongType => None,
                },
                jwks_uri: members.jwks_uri,
                token_endpoint_auth_signing_alg: members.token_endpoint_auth_signing_alg,
            },
        })
    }
}

/// A client name fit to keep and show: control and bidirectional-formatting characters removed
/// (they could make the name read as something else), each run of whitespace made one space, and
/// trimmed; `None` when nothing is left.
pub(crate) fn clean_client_name(name: &str) -> Option<String> {
    let visible: String = name
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    let cleaned = visible.split_whitespace().collect::<Vec<_>>().join(" ");
    (!cleaned.is_empty()).then_some(cleaned)
}

fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn member(description: impl Into<String>) -> MetadataError {
    MetadataError::Member(description.into())
}

/// A string member; an empty string is no value.
fn text(sent: Sent<String>, name: &str) -> Result<Option<String>, MetadataError> {
    match sent {
        Sent::Absent => Ok(None),
        Sent::Given(s) if s.is_empty() => Ok(None),
        Sent::Given(s) => Ok(Some(s)),
        Sent::WrongType => Err(member(format!("{name} must be a string"))),
    }
}

/// A string member kept for the client's lifetime: refused past `max` bytes.
fn bounded(sent: Sent<String>, name: &str, max: usize) -> Result<Option<String>, MetadataError> {
    let value = text(sent, name)?;
    if let Some(value) = &value {
        check_bytes(name, value, max).map_err(member)?;
    }
    Ok(value)
}

fn list(sent: Sent<Vec<String>>, name: &str) -> Result<Option<Vec<String>>, MetadataError> {
    match sent {
        Sent::Absent => Ok(None),
        Sent::Given(values) => Ok(Some(values)),
        Sent::WrongType => Err(member(format!("{name} must be an array of strings"))),
    }
}

/// Required, each registrable, counted and measured after duplicates are dropped.
fn redirect_uris(sent: Sent<Vec<String>>, native: &[String]) -> Result<Vec<String>, MetadataError> {
    let invalid = MetadataError::RedirectUris;
    let values = match sent {
        Sent::Given(values) => values,
        Sent::Absent | Sent::WrongType => {
            return Err(invalid(
                "redirect_uris must be a non-empty array of URIs".into(),
            ));
        }
    };
    if values.is_empty() || values.len() > MAX_REDIRECT_URIS {
        return Err(invalid(format!(
            "redirect_uris must list between 1 and {MAX_REDIRECT_URIS} URIs"
        )));
    }
    let mut uris: Vec<String> = Vec::with_capacity(values.len());
    let mut total = 0;
    for uri in values {
        redirect_uri::validate_registrable(&uri, native)
            .map_err(|reason| invalid(format!("{reason}: {}", printable(&uri))))?;
        if !uris.contains(&uri) {
            total += uri.len();
            uris.push(uri);
        }
    }
    if total > MAX_REDIRECT_URIS_TOTAL_BYTES {
        return Err(invalid(format!(
            "redirect_uris are longer than {MAX_REDIRECT_URIS_TOTAL_BYTES} bytes in all"
        )));
    }
    Ok(uris)
}

fn grant_types(sent: Sent<Vec<String>>) -> Result<Vec<String>, MetadataError> {
    let Some(requested) = list(sent, "grant_types")? else {
        return Ok(vec!["authorization_code".to_owned()]);
    };
    let granted: Vec<String> = GRANT_TYPES
        .iter()
        .filter(|g| requested.iter().any(|r| r == *g))
        .map(|g| (*g).to_owned())
        .collect();
    if !granted.iter().any(|g| g == "authorization_code") {
        return Err(member("grant_types must include authorization_code"));
    }
    Ok(granted)
}

/// The response types the client will use: `code` must be among them, and is all it gets.
fn response_types(sent: Sent<Vec<String>>) -> Result<(), MetadataError> {
    match list(sent, "response_types")? {
        Some(types) if !types.iter().any(|t| t == "code") => {
            Err(member("response_types must include code"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CURSOR: &str = "cursor://anysphere.cursor-mcp/oauth/callback";

    fn parse(metadata: &Value) -> Result<ClientMetadata, MetadataError> {
        ClientMetadata::parse(metadata.to_string().as_bytes(), &[CURSOR.to_owned()])
    }

    /// Valid metadata with `changes` applied.
    fn with(changes: &Value) -> Value {
        let mut metadata = json!({ "redirect_uris": ["http://127.0.0.1/callback"] });
        for (key, value) in changes.as_object().unwrap() {
            metadata[key] = value.clone();
        }
        metadata
    }

    /// `count` distinct redirect URIs of `length` bytes each.
    fn uris(count: usize, length: usize) -> Vec<String> {
        (0..count)
            .map(|i| {
                let base = format!("https://client.example/{i}/");
                format!("{base}{}", "u".repeat(length - base.len()))
            })
            .collect()
    }

    #[test]
    fn every_limit_holds_at_its_edge() {
        let third = MAX_REDIRECT_URIS_TOTAL_BYTES / 3;
        for (changes, accepted) in [
            (
                json!({ "redirect_uris": uris(MAX_REDIRECT_URIS, 40) }),
                true,
            ),
            (
                json!({ "redirect_uris": uris(MAX_REDIRECT_URIS + 1, 40) }),
                false,
            ),
            (json!({ "redirect_uris": uris(3, third) }), true),
            (json!({ "redirect_uris": uris(3, third + 1) }), false),
            (json!({ "redirect_uris": uris(1, MAX_URI_BYTES) }), true),
            (
                json!({ "redirect_uris": uris(1, MAX_URI_BYTES + 1) }),
                false,
            ),
            (
                json!({ "client_name": "名".repeat(MAX_CLIENT_NAME_CHARS) }),
                true,
            ),
            (
                json!({ "client_name": "名".repeat(MAX_CLIENT_NAME_CHARS + 1) }),
                false,
            ),
            (json!({ "scope": "s".repeat(MAX_SCOPE_BYTES) }), true),
            (json!({ "scope": "s".repeat(MAX_SCOPE_BYTES + 1) }), false),
            (json!({ "client_uri": uris(1, MAX_URI_BYTES)[0] }), true),
            (
                json!({ "client_uri": uris(1, MAX_URI_BYTES + 1)[0] }),
                false,
            ),
        ] {
            assert_eq!(parse(&with(&changes)).is_ok(), accepted, "{changes}");
        }
    }

    #[test]
    fn duplicate_redirect_uris_count_once_in_the_bytes() {
        // Three times over the bytes in all, if each copy counted.
        let uri = uris(1, MAX_REDIRECT_URIS_TOTAL_BYTES / 3 + 1).remove(0);
        let metadata = parse(&with(&json!({ "redirect_uris": [uri, uri, uri] }))).unwrap();
        assert_eq!(metadata.redirect_uris, [uri]);
    }

    #[test]
    fn a_member_of_the_wrong_type_is_refused_by_name_with_its_rfc_7591_error() {
        let redirect = |d: &str| MetadataError::RedirectUris(d.to_owned());
        let member = |d: &str| MetadataError::Member(d.to_owned());
        for (changes, expected) in [
            (
                json!({ "redirect_uris": "https://client.example/cb" }),
                redirect("redirect_uris must be a non-empty array of URIs"),
            ),
            (
                json!({ "redirect_uris": [42] }),
                redirect("redirect_uris must be a non-empty array of URIs"),
            ),
            (
                json!({ "redirect_uris": { "0": "https://client.example/cb" } }),
                redirect("redirect_uris must be a non-empty array of URIs"),
            ),
            (
                json!({ "token_endpoint_auth_method": 3 }),
                member("token_endpoint_auth_method must be a string"),
            ),
            (
                json!({ "grant_types": "authorization_code" }),
                member("grant_types must be an array of strings"),
            ),
            (
                json!({ "response_types": [true] }),
                member("response_types must be an array of strings"),
            ),
            (
                json!({ "client_name": ["x"] }),
                member("client_name must be a string"),
            ),
            (
                json!({ "client_uri": { "href": "https://client.example" } }),
                member("client_uri must be a string"),
            ),
            (json!({ "scope": 1.5 }), member("scope must be a string")),
            (
                json!({ "application_type": false }),
                member("application_type must be a string"),
            ),
        ] {
            assert_eq!(parse(&with(&changes)), Err(expected), "{changes}");
        }
        assert_eq!(parse(&json!([1, 2])), Err(MetadataError::NotAnObject));
        assert_eq!(parse(&json!("x")), Err(MetadataError::NotAnObject));
        assert_eq!(
            ClientMetadata::parse(b"{\"redirect_uris\": [", &[]),
            Err(MetadataError::NotJson {
                line: 1,
                column: 19
            })
        );
    }

    #[test]
    fn null_and_empty_strings_are_absent() {
        let metadata = parse(&with(&json!({
            "token_endpoint_auth_method": null, "client_name": "", "scope": null,
            "client_uri": "", "application_type": "", "grant_types": null, "response_types": null,
            "client_secret": null, "jwks": null,
        })))
        .unwrap();
        assert_eq!(metadata.token_endpoint_auth_method, None);
        assert_eq!(metadata.client_name, None);
        assert_eq!(metadata.scope, None);
        assert_eq!(metadata.client_uri, None);
        assert_eq!(metadata.application_type, None);
        assert_eq!(metadata.grant_types, ["authorization_code"]);
        assert_eq!(metadata.document, DocumentMembers::default());
    }

    #[test]
    fn unknown_members_are_ignored() {
        let metadata = parse(&with(&json!({
            "logo_uri": 7,
            "contacts": [{ "nested": [null] }],
            "software_statement": "eyJ...",
            "Client_Name": ["not the member client_name"],
            "x": { "redirect_uris": 1 },
        })))
        .unwrap();
        assert_eq!(metadata.client_name, None);
        assert_eq!(metadata.redirect_uris, ["http://127.0.0.1/callback"]);
    }

    #[test]
    fn grant_and_response_types_keep_what_is_supported_and_require_the_code_flow() {
        let metadata = parse(&with(&json!({
            "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer", "refresh_token", "authorization_code"],
            "response_types": ["code", "token"],
        })))
        .unwrap();
        assert_eq!(
            metadata.grant_types,
            ["authorization_code", "refresh_token"]
        );
        for changes in [
            json!({ "grant_types": ["refresh_token"] }),
            json!({ "grant_types": [] }),
            json!({ "response_types": ["token"] }),
            json!({ "response_types": [] }),
            json!({ "application_type": "desktop" }),
        ] {
            assert!(
                matches!(parse(&with(&changes)), Err(MetadataError::Member(_))),
                "{changes}"
            );
        }
    }

    #[test]
    fn only_an_http_client_uri_is_kept() {
        let kept = |uri: &str| {
            parse(&with(&json!({ "client_uri": uri })))
                .unwrap()
                .client_uri
        };
        assert_eq!(
            kept("https://client.example").as_deref(),
            Some("https://client.example")
        );
        assert_eq!(kept("javascript:alert(1)"), None);
    }

    #[test]
    fn members_a_document_is_judged_by_are_passed_on_unjudged() {
        let metadata = parse(&with(&json!({
            "client_id": 7,
            "client_secret_expires_at": 0,
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
            "jwks": { "keys": [] },
            "jwks_uri": 3,
            "token_endpoint_auth_signing_alg": "RS256",
        })))
        .unwrap();
        assert_eq!(
            metadata.document,
            DocumentMembers {
                client_id: Sent::WrongType,
                token_endpoint_auth_methods_supported: Sent::Given(vec![
                    "private_key_jwt".into(),
                    "none".into()
                ]),
                carries_client_secret: true,
                jwks: Some(json!({ "keys": [] })),
                jwks_uri: Sent::WrongType,
                token_endpoint_auth_signing_alg: Sent::Given("RS256".into()),
            }
        );
    }

    #[test]
    fn the_name_is_cleaned_once_for_every_use() {
        for (raw, cleaned) in [
            ("Claude", Some("Claude")),
            ("  Claude \n Code\t", Some("Claude Code")),
            ("evil\u{202E}cod.exe", Some("evilcod.exe")),
            ("a\u{2066}b\u{2069}c\u{200F}d\u{061C}e", Some("abcde")),
            ("bell\u{0007}ed\u{0000}", Some("belled")),
            ("名前 の クライアント", Some("名前 の クライアント")),
            (" \u{200F} \u{0007} ", None),
            ("", None),
        ] {
            assert_eq!(clean_client_name(raw).as_deref(), cleaned, "{raw:?}");
        }
        let metadata = parse(&with(&json!({ "client_name": " Claude\u{202E}\n Code " }))).unwrap();
        assert_eq!(metadata.client_name.as_deref(), Some("Claude Code"));
    }
}
