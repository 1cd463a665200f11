//! The rules a Client ID Metadata Document must meet (CIMD draft -00 and MCP 2025-11-25), kept
//! apart from fetching so the validator can follow the draft as it evolves. The document is client
//! metadata, read by the one parser registration uses ([`ClientMetadata`]); what is added here is
//! what a public document must be on top: its own URL as `client_id`, a name, no secret, no
//! private key, and either a public client's authentication or `private_key_jwt` with its keys.

use std::sync::Arc;

use super::ssrf::{self, UrlRules};
use crate::oauth::assertion::keys::{self, AssertionRules, KeySource};
use crate::oauth::client_format::{ClientMetadata, MetadataError, Sent};
use crate::oauth::clients::Client;
use crate::oauth::params::printable;

/// Token endpoint methods built on a shared secret, which a public document cannot carry.
const SYMMETRIC_METHODS: [&str; 3] = [
    "client_secret_post",
    "client_secret_basic",
    "client_secret_jwt",
];

/// Validate a fetched document for `client_id`, and describe the client it defines: never a
/// secret; public (PKCE), or signing its assertions with the keys it publishes. A `jwks_uri` is
/// held to `rules`, as the document's own URL is.
///
/// # Errors
///
/// A plain-words reason, for "is not valid: {reason}".
pub(crate) fn validate(
    client_id: &str,
    host: String,
    body: &[u8],
    native_redirect_uris: &[String],
    rules: &UrlRules,
) -> Result<Client, String> {
    let metadata = ClientMetadata::parse(body, native_redirect_uris).map_err(reason)?;
    match &metadata.document.client_id {
        Sent::Given(id) if id == client_id => {}
        Sent::Given(_) => {
            return Err("its client_id differs from the URL it was fetched from".into());
        }
        Sent::WrongType => return Err("its client_id is not a string".into()),
        Sent::Absent => return Err("it has no client_id".into()),
    }
    if metadata.document.carries_client_secret {
        return Err("it contains a client secret, which a public document must never carry".into());
    }
    if let Some(jwks) = &metadata.document.jwks {
        keys::public_key_set(jwks).map_err(|reason| format!("its jwks is refused: {reason}"))?;
    }
    let assertion = check_auth_method(&metadata, rules)?;
    let may_refresh = metadata.grant_types.iter().any(|g| g == "refresh_token");
    let Some(name) = metadata.client_name else {
        return Err("it has no client_name, or an empty one".into());
    };
    Ok(Client {
        client_id: client_id.to_owned(),
        secret_hash: None,
        redirect_uris: metadata.redirect_uris,
        name: Some(name),
        pre_registered: false,
        may_refresh,
        may_use_code: true,
        metadata_host: Some(host),
        assertion,
        machine_scopes: None,
    })
}

/// A refusal by the shared rules, said of the document.
fn reason(error: MetadataError) -> String {
    match error {
        MetadataError::NotJson { line, column } => {
            format!("it is not valid JSON (line {line}, column {column})")
        }
        MetadataError::NotAnObject => "it is not a JSON object".into(),
        MetadataError::RedirectUris(description) | MetadataError::Member(description) => {
            format!("its {description}")
        }
    }
}

/// `token_endpoint_auth_method` `none`, or absent from a document that lists no methods: public. `private_key_jwt`: the client signs
/// assertions with the keys it publishes (`jwks_uri` or `jwks`), and must, unless it offers `none`
/// as well; then either works, and without keys it stays public as before. Another asymmetric
/// method only beside `none`. A shared-secret method is never acceptable.
fn check_auth_method(
    metadata: &ClientMetadata,
    rules: &UrlRules,
) -> Result<Option<AssertionRules>, String> {
    let preferred = metadata.token_endpoint_auth_method.as_deref();
    let offered: &[String] = match &metadata.document.token_endpoint_auth_methods_supported {
        Sent::Absent => &[],
        Sent::Given(methods) => methods,
        Sent::WrongType => {
            return Err(
                "its token_endpoint_auth_methods_supported is not a list of strings".into(),
            );
        }
    };
    if let Some(method) = preferred
        .into_iter()
        .chain(offered.iter().map(String::as_str))
        .find(|m| SYMMETRIC_METHODS.contains(m))
    {
        return Err(format!(
            "it names {method}, a shared-secret method that a public document must not use"
        ));
    }
    // Without a preferred method a document is public, unless it lists the methods it supports:
    // then that list says whether `none` is one of them.
    let offers_none = preferred == Some("none")
        || offered.iter().any(|m| m == "none")
        || (preferred.is_none() && offered.is_empty());
    match preferred {
        None | Some("none" | "private_key_jwt") => {}
        Some(_) if offers_none => {}
        Some(method) => {
            return Err(format!(
                "token_endpoint_auth_method {} is not supported (only none and private_key_jwt)",
                printable(method)
            ));
        }
    }
    let declares_jwt =
        preferred == Some("private_key_jwt") || offered.iter().any(|m| m == "private_key_jwt");
    if !declares_jwt {
        if !offers_none {
            return Err(
                "it offers no client authentication this server supports (none or private_key_jwt)"
                    .into(),
            );
        }
        return Ok(None);
    }
    let Some(keys) = key_source(metadata, rules)? else {
        if offers_none {
            return Ok(None);
        }
        return Err(
            "it declares private_key_jwt but publishes no keys (neither jwks_uri nor jwks)".into(),
        );
    };
    let algorithm = keys::registered_algorithm(&metadata.document.token_endpoint_auth_signing_alg)
        .map_err(|reason| format!("its {reason}"))?;
    Ok(Some(AssertionRules {
        keys,
        algorithm,
        required: !offers_none,
    }))
}

/// The keys a `private_key_jwt` document publishes: inline, or at a URL held to the same rules
/// as the document's own (https, port, a public host); never both (RFC 7591 §2).
fn key_source(metadata: &ClientMetadata, rules: &UrlRules) -> Result<Option<KeySource>, String> {
    let document = &metadata.document;
    match (&document.jwks, &document.jwks_uri) {
        (Some(_), Sent::Given(_)) => Err("it has both jwks and jwks_uri".into()),
        (_, Sent::WrongType) => Err("its jwks_uri is not a string".into()),
        (Some(jwks), Sent::Absent) => {
            let set =
                keys::public_key_set(jwks).map_err(|r| format!("its jwks is refused: {r}"))?;
            Ok(Some(KeySource::Inline(Arc::new(set))))
        }
        (None, Sent::Given(uri)) => {
            ssrf::check_url(uri, rules)
                .map_err(|reason| format!("its jwks_uri is not acceptable: {reason}"))?;
            Ok(Some(KeySource::Uri(uri.clone())))
        }
        (None, Sent::Absent) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::rules::limits::{
        MAX_CLIENT_NAME_CHARS, MAX_REDIRECT_URIS, MAX_REDIRECT_URIS_TOTAL_BYTES,
    };

    const ID: &str = "https://claude.ai/oauth/claude-code-client-metadata";

    fn claude_code() -> Value {
        json!({
            "client_id": ID,
            "client_name": "Claude Code",
            "client_uri": "https://claude.ai",
            "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
    }

    fn check(document: &Value) -> Result<Client, String> {
        validate(
            ID,
            "claude.ai".into(),
            document.to_string().as_bytes(),
            &["cursor://anysphere.cursor-mcp/oauth/callback".to_owned()],
            &rules(),
        )
    }

    fn rules() -> UrlRules {
        UrlRules {
            allowed_ports: vec![443],
            own_host: "mcp.example.com".into(),
            allow_loopback_http: false,
        }
    }

    fn with(changes: Value) -> Value {
        let mut document = claude_code();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                document.as_object_mut().unwrap().remove(key);
            } else {
                document[key] = value.clone();
            }
        }
        document
    }

    #[test]
    fn claude_code_document_is_a_public_client() {
        let client = check(&claude_code()).unwrap();
        assert_eq!(client.client_id, ID);
        assert!(client.secret_hash.is_none());
        assert_eq!(client.name.as_deref(), Some("Claude Code"));
        assert_eq!(client.redirect_uris.len(), 2);
        assert!(client.may_use_code && client.may_refresh && !client.pre_registered);
        assert_eq!(client.metadata_host.as_deref(), Some("claude.ai"));
    }

    #[test]
    fn claude_document_with_extra_grant_types() {
        let document = with(json!({
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
        }));
        assert!(check(&document).unwrap().may_refresh);
    }

    #[test]
    fn defaults() {
        let document = with(json!({
            "grant_types": null, "response_types": null, "token_endpoint_auth_method": null,
        }));
        let client = check(&document).unwrap();
        assert!(client.may_use_code && !client.may_refresh);
    }

    #[test]
    fn private_key_jwt_with_none_may_use_either() {
        let chatgpt = with(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
            "jwks_uri": "https://chatgpt.com/oauth/jwks.json",
        }));
        let rules = check(&chatgpt).unwrap().assertion.unwrap();
        assert!(!rules.required);
        assert!(matches!(rules.keys, KeySource::Uri(ref uri) if uri.ends_with("jwks.json")));
        // Without keys, offering `none` keeps it the public client it always was.
        let keyless = with(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        }));
        assert!(check(&keyless).unwrap().assertion.is_none());
        let other = with(json!({ "token_endpoint_auth_method": "tls_client_auth" }));
        assert!(check(&other).unwrap_err().contains("tls_client_auth"));
    }

    /// No preferred method, but a list of supported ones: the list decides whether `none` is
    /// allowed, never the default for an absent method.
    #[test]
    fn a_listed_method_without_a_preferred_one_is_not_none() {
        let keys = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": "a", "y": "b" }] });
        let listing_only_jwt = with(json!({
            "token_endpoint_auth_method": null,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "jwks": keys,
        }));
        assert!(
            check(&listing_only_jwt)
                .unwrap()
                .assertion
                .unwrap()
                .required
        );
        let listing_both = with(json!({
            "token_endpoint_auth_method": null,
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
            "jwks": keys,
        }));
        assert!(!check(&listing_both).unwrap().assertion.unwrap().required);
        let listing_other = with(json!({
            "token_endpoint_auth_method": null,
            "token_endpoint_auth_methods_supported": ["tls_client_auth"],
        }));
        assert!(
            check(&listing_other)
                .unwrap_err()
                .contains("no client authentication this server supports")
        );
        let listing_nothing = with(json!({
            "token_endpoint_auth_method": null,
            "token_endpoint_auth_methods_supported": [],
        }));
        assert!(check(&listing_nothing).unwrap().assertion.is_none());
    }

    #[test]
    fn private_key_jwt_alone_must_sign_with_the_keys_it_publishes() {
        let chatgpt = with(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": "https://chatgpt.com/oauth/jwks.json",
        }));
        let rules = check(&chatgpt).unwrap().assertion.unwrap();
        assert!(rules.required);
        assert_eq!(rules.algorithm, Some(jsonwebtoken::Algorithm::RS256));
        let inline = with(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": { "keys": [{ "kty": "EC", "crv": "P-256", "x": "a", "y": "b" }] },
        }));
        assert!(matches!(
            check(&inline).unwrap().assertion.unwrap().keys,
            KeySource::Inline(_)
        ));
        for (changes, expected) in [
            (json!({}), "publishes no keys"),
            (
                json!({ "jwks_uri": "https://10.0.0.1/jwks.json" }),
                "jwks_uri is not acceptable",
            ),
            (
                json!({ "jwks_uri": "http://chatgpt.com/jwks.json" }),
                "jwks_uri is not acceptable",
            ),
            (json!({ "jwks_uri": 7 }), "jwks_uri is not a string"),
            (
                json!({ "jwks_uri": "https://chatgpt.com/j", "jwks": { "keys": [] } }),
                "both jwks and jwks_uri",
            ),
            (
                json!({ "jwks_uri": "https://chatgpt.com/j", "token_endpoint_auth_signing_alg": "HS256" }),
                "HS256 is not one of",
            ),
            (
                json!({ "jwks_uri": "https://chatgpt.com/j", "token_endpoint_auth_signing_alg": "none" }),
                "none is not one of",
            ),
            (
                json!({ "jwks": { "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] } }),
                "symmetric",
            ),
        ] {
            let mut document = with(json!({ "token_endpoint_auth_method": "private_key_jwt" }));
            for (key, value) in changes.as_object().unwrap() {
                document[key] = value.clone();
            }
            let error = check(&document).unwrap_err();
            assert!(error.contains(expected), "{changes}: {error}");
        }
    }

    #[test]
    fn invalid_documents() {
        for (document, expected) in [
            (
                with(json!({ "client_id": "https://evil.example/meta" })),
                "differs",
            ),
            (with(json!({ "client_id": format!("{ID}/") })), "differs"),
            (with(json!({ "client_id": null })), "no client_id"),
            (with(json!({ "client_id": 7 })), "not a string"),
            (with(json!({ "client_name": null })), "no client_name"),
            (with(json!({ "client_name": " \u{0007} " })), "empty"),
            (with(json!({ "redirect_uris": null })), "redirect_uris"),
            (with(json!({ "redirect_uris": [] })), "between 1 and"),
            (
                with(json!({ "redirect_uris": ["http://evil.example/cb"] })),
                "loopback",
            ),
            (
                with(json!({ "redirect_uris": ["https://a.example/cb#x"] })),
                "fragment",
            ),
            (
                with(json!({ "redirect_uris": "http://localhost/callback" })),
                "redirect_uris",
            ),
            (with(json!({ "client_secret": "s3cret" })), "secret"),
            (with(json!({ "client_secret_expires_at": 0 })), "secret"),
            (
                with(json!({ "token_endpoint_auth_method": "client_secret_post" })),
                "shared-secret",
            ),
            (
                with(json!({ "token_endpoint_auth_method": "client_secret_basic" })),
                "shared-secret",
            ),
            (
                with(json!({ "token_endpoint_auth_method": "client_secret_jwt" })),
                "shared-secret",
            ),
            (
                with(
                    json!({ "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"] }),
                ),
                "shared-secret",
            ),
            (
                with(json!({ "grant_types": ["refresh_token"] })),
                "authorization_code",
            ),
            (with(json!({ "response_types": ["token"] })), "code"),
            (
                with(
                    json!({ "jwks": { "keys": [{ "kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c" }] } }),
                ),
                "private key",
            ),
            (json!(["not", "an", "object"]), "JSON object"),
        ] {
            let error = check(&document).unwrap_err();
            assert!(error.contains(expected), "{document}: {error}");
        }
        assert!(
            validate(ID, "claude.ai".into(), b"<html>", &[], &rules())
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    /// The limits are registration's, from the one set in `oauth::limits`: a document gets no
    /// more room, and no less.
    #[test]
    fn a_document_is_held_to_the_shared_limits() {
        let uris = |count: usize, length: usize| -> Vec<String> {
            (0..count)
                .map(|i| {
                    let base = format!("http://127.0.0.1/callback/{i}/");
                    format!("{base}{}", "u".repeat(length - base.len()))
                })
                .collect()
        };
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
            (
                json!({ "client_name": "名".repeat(MAX_CLIENT_NAME_CHARS) }),
                true,
            ),
            (
                json!({ "client_name": "名".repeat(MAX_CLIENT_NAME_CHARS + 1) }),
                false,
            ),
        ] {
            assert_eq!(check(&with(changes.clone())).is_ok(), accepted, "{changes}");
        }
    }

    #[test]
    fn the_name_is_cleaned_as_registration_cleans_it() {
        let document = with(json!({ "client_name": " Claude\u{202E}\n  Code " }));
        let name = check(&document).unwrap().name;
        assert_eq!(
            name,
            crate::oauth::client_format::clean_client_name(" Claude\u{202E}\n  Code ")
        );
        assert_eq!(name.as_deref(), Some("Claude Code"));
    }

    #[test]
    fn public_keys_are_fine() {
        let document = with(json!({
            "jwks": { "keys": [{ "kty": "EC", "crv": "P-256", "x": "a", "y": "b" }] },
        }));
        assert!(check(&document).is_ok());
    }
}
