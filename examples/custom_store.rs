//! Your own storage backend: implement the three traits, check it with the conformance suite, and
//! hand it to the builder.
//!
//! This one keeps everything in `HashMap`s behind one mutex, which makes every operation trivially
//! atomic; a database backend gets the same guarantees from transactions or single statements.
//!
//! ```text
//! cargo run --example custom_store --features test-suite     # serve the layer on it
//! cargo test --example custom_store --features test-suite    # run the conformance suite on it
//! ```

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use axum::Router;
use axum::routing::post;
use mcp_oauth::store::{
    ClientRecord, ClientStore, Consumed, GrantId, PasskeyChange, PasskeyRecord, PasskeyStore,
    StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};
use mcp_oauth::{McpOAuth, OAuthConfig, TokenInfo};

/// A token and, once consumed, when.
struct Token {
    record: TokenRecord,
    consumed_at: Option<UnixTime>,
}

#[derive(Default)]
struct Tables {
    tokens: HashMap<(TokenKind, TokenHash), Token>,
    clients: HashMap<String, ClientRecord>,
    passkeys: HashMap<String, PasskeyRecord>,
    /// Setup tokens that registered a passkey: kept when the passkey is removed.
    used_setup_tokens: HashSet<TokenHash>,
}

/// The whole backend. Cloning shares the tables.
#[derive(Clone, Default)]
struct HashMapStore(Arc<Mutex<Tables>>);

impl HashMapStore {
    /// The lock is never held across an `.await`: every method does its work and lets go.
    fn tables(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.0
            .lock()
            .map_err(|_| StoreError::backend("hashmap", "a thread panicked while holding the lock"))
    }
}

#[async_trait]
impl TokenStore for HashMapStore {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        let key = (record.kind, record.hash);
        // Insert-if-absent; an expired record no longer counts as present.
        if let Some(existing) = tables.tokens.get(&key)
            && existing.record.expires_at.is_after(UnixTime::now())
        {
            return Err(StoreError::AlreadyExists { what: "token" });
        }
        tables.tokens.insert(
            key,
            Token {
                record,
                consumed_at: None,
            },
        );
        Ok(())
    }

    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let tables = self.tables()?;
        Ok(tables
            .tokens
            .get(&(kind, *hash))
            .filter(|t| t.consumed_at.is_none() && t.record.expires_at.is_after(UnixTime::now()))
            .map(|t| t.record.clone()))
    }

    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        let mut tables = self.tables()?;
        let Some(token) = tables.tokens.get_mut(&(kind, *hash)) else {
            return Ok(None);
        };
        if !token.record.expires_at.is_after(UnixTime::now()) {
            return Ok(None);
        }
        Ok(Some(match token.consumed_at {
            None => {
                // The caller's time, returned to every later caller as the first use's.
                token.consumed_at = Some(now);
                Consumed::First(token.record.clone())
            }
            Some(consumed_at) => Consumed::Replayed {
                record: token.record.clone(),
                consumed_at,
            },
        }))
    }

    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        let removed = self.tables()?.tokens.remove(&(kind, *hash));
        Ok(removed.is_some_and(|t| t.record.expires_at.is_after(UnixTime::now())))
    }

    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let now = UnixTime::now();
        Ok(self
            .tables()?
            .tokens
            .values()
            .filter(|t| t.record.kind == TokenKind::Grant && t.consumed_at.is_none())
            .filter(|t| t.record.expires_at.is_after(now))
            .map(|t| t.record.clone())
            .collect())
    }

    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        let mut tables = self.tables()?;
        let before = tables.tokens.len();
        tables.tokens.retain(|_, t| &t.record.grant_id != grant_id);
        Ok((before - tables.tokens.len()) as u64)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let mut tables = self.tables()?;
        let now = UnixTime::now();
        let before = tables.tokens.len();
        tables
            .tokens
            .retain(|_, t| t.record.expires_at.is_after(now));
        Ok((before - tables.tokens.len()) as u64)
    }
}

#[async_trait]
impl ClientStore for HashMapStore {
    async fn insert(&self, client: ClientRecord, max_unapproved: u64) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        let now = UnixTime::now();
        if let Some(existing) = tables.clients.get(&client.client_id)
            && existing.is_live(now)
        {
            return Err(StoreError::AlreadyExists { what: "client" });
        }
        // Count and insert under one lock: registrations nobody approved are capped, and a full
        // store refuses rather than evict (an approved client must never be pushed out).
        if !client.is_approved() {
            let waiting = tables
                .clients
                .values()
                .filter(|c| !c.is_approved() && c.is_live(now))
                .count();
            if waiting as u64 >= max_unapproved {
                return Err(StoreError::CapacityReached {
                    what: "unapproved client",
                });
            }
        }
        tables.clients.insert(client.client_id.clone(), client);
        Ok(())
    }

    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let tables = self.tables()?;
        Ok(tables
            .clients
            .get(client_id)
            .filter(|c| c.is_live(UnixTime::now()))
            .cloned())
    }

    async fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables()?;
        match tables.clients.get_mut(client_id) {
            Some(client) if client.is_live(UnixTime::now()) => {
                client.approved_at = Some(approved_at);
                client.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        let removed = self.tables()?.clients.remove(client_id);
        Ok(removed.is_some_and(|c| c.is_live(UnixTime::now())))
    }

    async fn delete_unapproved(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut tables = self.tables()?;
        if tables
            .clients
            .get(client_id)
            .is_none_or(|c| c.is_approved())
        {
            return Ok(false);
        }
        let removed = tables.clients.remove(client_id);
        Ok(removed.is_some_and(|c| c.is_live(UnixTime::now())))
    }

    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let now = UnixTime::now();
        Ok(self
            .tables()?
            .clients
            .values()
            .filter(|c| c.is_live(now))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl PasskeyStore for HashMapStore {
    async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError> {
        Ok(self.tables()?.passkeys.values().cloned().collect())
    }

    async fn get(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        Ok(self.tables()?.passkeys.get(credential_id).cloned())
    }

    async fn insert(&self, record: PasskeyRecord) -> Result<(), StoreError> {
        let mut tables = self.tables()?;
        if tables.passkeys.contains_key(&record.credential_id) {
            return Err(StoreError::AlreadyExists { what: "passkey" });
        }
        // Under the same lock as the insert: a setup token registers one passkey, ever.
        if let Some(hash) = record.setup_token_hash
            && !tables.used_setup_tokens.insert(hash)
        {
            return Err(StoreError::AlreadyExists {
                what: "setup token",
            });
        }
        tables.passkeys.insert(record.credential_id.clone(), record);
        Ok(())
    }

    async fn setup_token_used(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        Ok(self.tables()?.used_setup_tokens.contains(hash))
    }

    /// Under the lock, on the record as it is, so a use and a rename racing are both kept.
    async fn modify(
        &self,
        credential_id: &str,
        change: &PasskeyChange,
    ) -> Result<Option<bool>, StoreError> {
        let mut tables = self.tables()?;
        Ok(tables
            .passkeys
            .get_mut(credential_id)
            .map(|record| change.apply(record)))
    }

    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError> {
        Ok(self.tables()?.passkeys.remove(credential_id).is_some())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let config = OAuthConfig::with_defaults(
        "http://localhost:8080",
        "custom-store-client",
        "a-secret-of-at-least-16-chars",
        "Custom store example",
        "unused.json",
    );
    let oauth = McpOAuth::builder(config)
        .stores(HashMapStore::default())
        .build()?;
    if let Some(url) = oauth.setup_url().await? {
        println!("register a passkey: {url}");
    }
    let mcp = Router::new().route(
        "/mcp",
        post(|caller: TokenInfo| async move { format!("hello, {}", caller.client_id) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("listening on http://localhost:8080 (MCP at /mcp)");
    axum::serve(
        listener,
        oauth
            .router(mcp)
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

// The whole conformance suite, one test per rule: three lines.
#[cfg(test)]
mod conformance {
    use super::HashMapStore;

    mcp_oauth::token_store_conformance!(|| async { HashMapStore::default() });
    mcp_oauth::client_store_conformance!(|| async { HashMapStore::default() });
    mcp_oauth::passkey_store_conformance!(|| async { HashMapStore::default() });
}
