//! How much a [`MemoryStore`](super::MemoryStore) may hold: records and bytes for each table.

use crate::store::ClientRecord;

/// The limits of a [`MemoryStore`](super::MemoryStore): for each table, how many records and how
/// many bytes. Whichever is reached first makes room, by the table's eviction order.
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
    /// ceremonies again, in a table of their own) and `clients` registered clients, with byte
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
    /// the largest one allowed (ten 2,000-byte redirect URIs) about 21 KiB.
    pub const BYTES_PER_CLIENT: u64 = 2048;

    /// How many access and refresh tokens; the same again for pending requests, codes and
    /// ceremonies.
    #[must_use]
    pub const fn tokens(mut self, records: u64) -> Self {
        self.tokens = records;
        self
    }

    /// Bytes for each of the two token tables.
    #[must_use]
    pub const fn token_bytes(mut self, bytes: u64) -> Self {
        self.token_bytes = bytes;
        self
    }

    /// How many registered clients.
    #[must_use]
    pub const fn clients(mut self, records: u64) -> Self {
        self.clients = records;
        self
    }

    /// Bytes for the registered clients.
    #[must_use]
    pub const fn client_bytes(mut self, bytes: u64) -> Self {
        self.client_bytes = bytes;
        self
    }

    /// What a client weighs in the client cache: its bytes, but never less than its share of the
    /// budget, so that the cache, which bounds only the total weight, also holds at most
    /// `clients` of them.
    pub(super) fn client_weight(&self, client: &ClientRecord) -> u32 {
        let share = self.client_bytes / self.clients.max(1);
        let weight = u64::try_from(client_bytes(client)).unwrap_or(u64::MAX);
        u32::try_from(weight.max(share).max(1)).unwrap_or(u32::MAX)
    }
}

impl Default for MemoryLimits {
    /// 100,000 tokens and 10,000 clients, with the default byte budgets: about 100 MiB for each
    /// token table and 20 MiB for clients at most.
    fn default() -> Self {
        Self::new(
            super::MemoryStore::DEFAULT_TOKEN_CAPACITY,
            super::MemoryStore::DEFAULT_CLIENT_CAPACITY,
        )
    }
}

/// The bookkeeping a cached client costs beyond its strings: the record, its key, moka's entry.
const CLIENT_OVERHEAD: usize = 384;

/// A client's bytes, as counted against the budget: its id twice (key and record), its strings,
/// and [`CLIENT_OVERHEAD`].
fn client_bytes(client: &ClientRecord) -> usize {
    let optional = |text: &Option<String>| text.as_ref().map_or(0, String::len);
    CLIENT_OVERHEAD
        + 2 * client.client_id.len()
        + client.redirect_uris.iter().map(String::len).sum::<usize>()
        + client.grant_types.iter().map(String::len).sum::<usize>()
        + optional(&client.client_name)
        + optional(&client.client_uri)
        + optional(&client.scope)
        + optional(&client.application_type)
}
