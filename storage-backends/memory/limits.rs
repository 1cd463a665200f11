//! How much a [`MemoryStore`](super::MemoryStore) may hold: records and bytes for each table.

use serde_json::Value;

use crate::store::{AssertionKeys, ClientKeys, ClientRecord};

/// The limits of a [`MemoryStore`](super::MemoryStore): for each table, how many records and how
/// many bytes. In a token table, whichever is reached first makes room, by the table's eviction
/// order. The client limits bound the registrations nobody approved yet, and past either one a
/// new registration is refused (evicting would let strangers push out approved clients); clients
/// the owner approved are not counted.
///
/// Bytes are counted as each record's variable-length contents plus a fixed estimate of its
/// bookkeeping; the process's resident memory for a table stays within a small factor of its byte
/// budget (hash maps keep spare capacity).
///
/// ```
/// use mcp_oauth::{MemoryLimits, MemoryStore};
///
/// // 20,000 tokens in at most 16 MiB per token table; clients at their defaults.
/// let limits = MemoryLimits::default()
///     .tokens(20_000)
///     .token_bytes(16 << 20);
/// let store = MemoryStore::with_limits(limits);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    pub(super) tokens: u64,
    pub(super) token_bytes: u64,
    pub(super) clients: u64,
    pub(super) client_bytes: u64,
}

impl MemoryLimits {
    /// Room for `tokens` access and refresh tokens (and as many pending requests, codes and
    /// ceremonies again, in a table of their own, and as many used client assertions, in a
    /// third, which refuses new assertions when full) and `clients` registered clients, with byte
    /// budgets of [`BYTES_PER_TOKEN`](Self::BYTES_PER_TOKEN) and
    /// [`BYTES_PER_CLIENT`](Self::BYTES_PER_CLIENT) times as many.
    pub const fn new(tokens: u64, clients: u64) -> Self {
        Self {
            tokens,
            token_bytes: tokens.saturating_mul(Self::BYTES_PER_TOKEN),
            clients,
            client_bytes: clients.saturating_mul(Self::BYTES_PER_CLIENT),
        }
    }

    /// The default byte budget per token record. A token record costs about 330 resident bytes
    /// (`BENCHMARKS.md`) and a pending request from a real client a few hundred, so in normal use
    /// the record count is what binds; records made as large as the protocol allows (about 6 KiB:
    /// a 2 KiB `state`, a 2,000-byte redirect URI and URL client id) are held to a sixth as many.
    pub const BYTES_PER_TOKEN: u64 = 1024;

    /// The default byte budget per registered client. A real registration counts 300–600 bytes;
    /// the largest one allowed (redirect URIs of 4 KiB in all, the longest name, URI and scope)
    /// about 8.5 KiB. A `private_key_jwt` registration's inline JWK set (at most 16 KiB of JSON)
    /// counts its strings and 64 bytes per JSON value in it: about 1 KiB for one RSA-2048 key.
    pub const BYTES_PER_CLIENT: u64 = 2048;

    /// How many access and refresh tokens; the same again for pending requests, codes and
    /// ceremonies.
    #[must_use]
    pub const fn tokens(mut self, records: u64) -> Self {
        self.tokens = records;
        self
    }

    /// Bytes for each of the three token tables.
    #[must_use]
    pub const fn token_bytes(mut self, bytes: u64) -> Self {
        self.token_bytes = bytes;
        self
    }

    /// How many registered clients nobody approved yet (the configured
    /// [`max_unapproved_clients`](crate::OAuthConfig::max_unapproved_clients) applies too; the
    /// lower of the two binds).
    #[must_use]
    pub const fn clients(mut self, records: u64) -> Self {
        self.clients = records;
        self
    }

    /// Bytes for the registered clients nobody approved yet.
    #[must_use]
    pub const fn client_bytes(mut self, bytes: u64) -> Self {
        self.client_bytes = bytes;
        self
    }
}

impl Default for MemoryLimits {
    /// 100,000 tokens and 10,000 unapproved clients, with the default byte budgets: about 100 MiB
    /// for each token table and 20 MiB for unapproved clients at most.
    fn default() -> Self {
        Self::new(
            super::MemoryStore::DEFAULT_TOKEN_CAPACITY,
            super::MemoryStore::DEFAULT_CLIENT_CAPACITY,
        )
    }
}

/// The bookkeeping a stored client costs beyond its strings: the record, its key, its place in
/// the expiry order.
const CLIENT_OVERHEAD: usize = 384;

/// A client's bytes, as counted against the budget: its id three times (key, record, expiry
/// order), its strings, its registered keys, and [`CLIENT_OVERHEAD`].
pub(super) fn client_bytes(client: &ClientRecord) -> usize {
    let optional = |text: &Option<String>| text.as_ref().map_or(0, String::len);
    CLIENT_OVERHEAD
        + 3 * client.client_id.len()
        + client.redirect_uris.iter().map(String::len).sum::<usize>()
        + client.grant_types.iter().map(String::len).sum::<usize>()
        + optional(&client.client_name)
        + optional(&client.client_uri)
        + optional(&client.scope)
        + optional(&client.application_type)
        + client.assertion_keys.as_ref().map_or(0, keys_bytes)
}

/// A `private_key_jwt` client's keys: its URL, or its JWK set as held in memory.
fn keys_bytes(keys: &AssertionKeys) -> usize {
    let source = match &keys.keys {
        ClientKeys::Jwks(set) => json_bytes(set),
        ClientKeys::JwksUri(uri) => uri.len(),
    };
    source + keys.signing_alg.as_ref().map_or(0, String::len)
}

/// A JSON value's bytes in memory: its strings, and for each value and object member a fixed
/// estimate of its slot in the map or list holding it (a small key's map costs several times its
/// JSON text).
fn json_bytes(value: &Value) -> usize {
    const SLOT: usize = 64;
    SLOT + match value {
        Value::String(text) => text.len(),
        Value::Array(items) => items.iter().map(json_bytes).sum(),
        Value::Object(members) => members
            .iter()
            .map(|(name, member)| name.len() + json_bytes(member))
            .sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}
