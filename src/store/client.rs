use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{StoreError, TokenHash, UnixTime};

/// How a client authenticates at the token endpoint (RFC 7591 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// A public client: PKCE only, no secret.
    None,
    /// The secret in the form body.
    ClientSecretPost,
    /// The secret in an HTTP Basic `Authorization` header.
    ClientSecretBasic,
    /// A JWT signed with a private key whose public half the client registered (RFC 7523): no
    /// secret; the keys are in [`ClientRecord::assertion_keys`].
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Parse an RFC 7591 name; `None` for methods this crate does not support.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }

    /// Whether clients using this method are confidential: they hold a secret or a private key.
    pub fn is_confidential(self) -> bool {
        self != Self::None
    }

    /// Whether clients using this method hold a secret the server issued (and keeps the hash of).
    pub fn has_secret(self) -> bool {
        matches!(self, Self::ClientSecretPost | Self::ClientSecretBasic)
    }
}

/// The public keys a `private_key_jwt` client registered, and the algorithm it signs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionKeys {
    /// Where the keys are.
    pub keys: ClientKeys,
    /// The registered `token_endpoint_auth_signing_alg`: the one algorithm accepted. `None`: any
    /// the server allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_alg: Option<String>,
}

/// Where a client's public keys are: registered inline, or at a URL (RFC 7591 §2 allows one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKeys {
    /// A JWK set (RFC 7517): public signing keys only, at most 16.
    Jwks(serde_json::Value),
    /// The URL of the client's JWK set, fetched when an assertion is checked.
    JwksUri(String),
}

/// A registered OAuth client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client identifier, chosen by the server.
    pub client_id: String,
    /// SHA-256 of the client secret; `None` for public clients.
    pub secret_hash: Option<TokenHash>,
    /// How the client authenticates at the token endpoint.
    pub auth_method: TokenEndpointAuthMethod,
    /// Registered redirect URIs, exactly as registered.
    pub redirect_uris: Vec<String>,
    /// Registered grant types (`authorization_code`, `refresh_token`).
    pub grant_types: Vec<String>,
    /// Self-asserted display name, shown as such on the consent page.
    pub client_name: Option<String>,
    /// Self-asserted home page.
    pub client_uri: Option<String>,
    /// Registered scope string, if the client sent one (informational; not a limit).
    pub scope: Option<String>,
    /// `native` or `web`, if the client sent it.
    pub application_type: Option<String>,
    /// When the registration happened.
    pub issued_at: UnixTime,
    /// When the registration lapses; `None` for never. Short until the owner first approves the
    /// client, then the configured lifetime.
    pub expires_at: Option<UnixTime>,
    /// When the owner last approved the client on the consent page; `None` while it never was.
    /// Records stored before this field existed read as `None`.
    #[serde(default)]
    pub approved_at: Option<UnixTime>,
    /// For [`TokenEndpointAuthMethod::PrivateKeyJwt`]: the keys its assertions are checked with;
    /// `None` for every other method. Records stored before this field existed read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_keys: Option<AssertionKeys>,
}

impl ClientRecord {
    /// Whether the record is live at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        self.expires_at.is_none_or(|at| at.is_after(now))
    }

    /// Whether the owner has ever approved the client. Registrations nobody approved are what a
    /// stranger can create, so they are capped and short-lived; approved ones are neither.
    pub fn is_approved(&self) -> bool {
        self.approved_at.is_some()
    }
}

/// Storage for dynamically registered clients.
///
/// Anyone can register a client, so the store holds two kinds: clients the owner approved
/// (`approved_at` set), which only the owner's actions create and remove, and registrations nobody
/// approved yet, which a stranger can create in bulk. The second kind is capped, and a full store
/// refuses a registration rather than make room: a flood of registrations must never evict or
/// hide a client that holds the owner's approval.
///
/// # Contract
///
/// Implementations MUST:
///
/// - make [`insert`](ClientStore::insert) insert-if-absent: under concurrent inserts of one
///   `client_id`, exactly one succeeds and the others get [`StoreError::AlreadyExists`];
/// - admit an unapproved client (`approved_at` is `None`) only while fewer than `max_unapproved`
///   live unapproved clients are stored, counting and inserting as one atomic step (under
///   concurrent inserts, on every instance sharing the store, at most `max_unapproved` are ever
///   live at once); otherwise fail with [`StoreError::CapacityReached`] and change nothing;
/// - never remove or hide a live client to make room for another;
/// - treat a record whose `expires_at` is not after the current time as absent in `get`, and not
///   count it toward the cap;
/// - make [`mark_approved`](ClientStore::mark_approved) and
///   [`delete_unapproved`](ClientStore::delete_unapproved) atomic on their record;
/// - never store a raw client secret (records carry only its hash).
#[async_trait]
pub trait ClientStore: Send + Sync + 'static {
    /// Insert if absent. A client never approved is refused with
    /// [`StoreError::CapacityReached`] when `max_unapproved` live unapproved clients are already
    /// stored; an approved one is admitted whatever the count.
    async fn insert(&self, client: ClientRecord, max_unapproved: u64) -> Result<(), StoreError>;

    /// The live record, or `None`.
    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;

    /// Record the owner's approval of a live client: set `approved_at` and `expires_at` (the
    /// approved lifetime; `None` for never). From then on the client no longer counts toward the
    /// cap on unapproved clients. Returns `false` (and changes nothing) if the client is absent or
    /// lapsed.
    async fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> Result<bool, StoreError>;

    /// Remove a client. Idempotent; returns whether something was removed.
    async fn delete(&self, client_id: &str) -> Result<bool, StoreError>;

    /// Remove a client only if it was never approved, as one atomic step (a client approved
    /// meanwhile stays). Returns whether a live client was removed.
    async fn delete_unapproved(&self, client_id: &str) -> Result<bool, StoreError>;

    /// Every live client, for the owner console. Called only when the owner looks, never on a
    /// request path, so a scan is acceptable.
    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError>;

    /// Physically remove expired records. Backends with native expiry may keep this default.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The backend's name in metrics (`mcp_oauth_store_operation_seconds{backend=…}`): `memory`,
    /// `sqlite`, `redis`, `postgres`; `custom`, the default, for your own.
    fn backend_name(&self) -> &'static str {
        "custom"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as earlier versions wrote them: without `approved_at`, and without keys.
    const EARLIER_RECORDS: [&str; 2] = [
        r#"{"client_id":"mcp_client_public","secret_hash":null,"auth_method":"none","redirect_uris":["http://127.0.0.1/cb"],"grant_types":["authorization_code","refresh_token"],"client_name":"Old","client_uri":null,"scope":null,"application_type":null,"issued_at":1700000000,"expires_at":null}"#,
        r#"{"client_id":"mcp_client_secret","secret_hash":"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b","auth_method":"client_secret_basic","redirect_uris":["https://app.example/cb"],"grant_types":["authorization_code"],"client_name":null,"client_uri":null,"scope":"mcp","application_type":"web","issued_at":1700000000,"expires_at":1707776000,"approved_at":1700000100}"#,
    ];

    #[test]
    fn a_record_written_before_private_key_jwt_still_reads_and_writes_back_the_same() {
        for json in EARLIER_RECORDS {
            let record: ClientRecord = serde_json::from_str(json).expect(json);
            assert_eq!(record.assertion_keys, None, "{json}");
            assert_ne!(record.auth_method, TokenEndpointAuthMethod::PrivateKeyJwt);
            // Written back, it has no member an earlier version would not know.
            let written = serde_json::to_string(&record).unwrap();
            assert!(!written.contains("assertion_keys"), "{written}");
        }
    }

    #[test]
    fn a_signing_client_reads_back_with_its_keys_and_algorithm() {
        let old: ClientRecord = serde_json::from_str(EARLIER_RECORDS[0]).unwrap();
        for keys in [
            ClientKeys::Jwks(
                serde_json::json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }] }),
            ),
            ClientKeys::JwksUri("https://app.example/jwks.json".into()),
        ] {
            let record = ClientRecord {
                auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
                assertion_keys: Some(AssertionKeys {
                    keys,
                    signing_alg: Some("EdDSA".into()),
                }),
                ..old.clone()
            };
            let json = serde_json::to_string(&record).unwrap();
            assert!(
                json.contains(r#""auth_method":"private_key_jwt""#),
                "{json}"
            );
            let read: ClientRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(read, record);
        }
    }

    #[test]
    fn only_the_secret_methods_have_a_secret() {
        for (method, secret, confidential) in [
            (TokenEndpointAuthMethod::None, false, false),
            (TokenEndpointAuthMethod::ClientSecretPost, true, true),
            (TokenEndpointAuthMethod::ClientSecretBasic, true, true),
            (TokenEndpointAuthMethod::PrivateKeyJwt, false, true),
        ] {
            assert_eq!(method.has_secret(), secret, "{method:?}");
            assert_eq!(method.is_confidential(), confidential, "{method:?}");
            assert_eq!(
                TokenEndpointAuthMethod::parse(method.as_str()),
                Some(method)
            );
        }
    }
}
