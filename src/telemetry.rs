//! Counters and histograms through the [`metrics`] facade: the application installs the exporter
//! it likes (Prometheus, StatsD, ...), and without one each call costs an atomic load. Every name
//! and label is listed in the README; the counters audit events move are in `audit::counters`.
//! No label takes a value a client chose (no client ids, no URLs, no scopes): each has a fixed,
//! small set of values, so open registration cannot grow the series.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::store::{
    ClientRecord, ClientStore, Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord,
    TokenStore, UnixTime,
};

/// What the bearer guard answered an MCP request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GuardOutcome {
    Accepted,
    /// No credentials.
    Missing,
    /// Unknown, expired, revoked or malformed credentials.
    Invalid,
    InsufficientScope,
    /// The store could not answer: 503.
    Unavailable,
    /// The caller's address spent its refusals: 429.
    RateLimited,
}

impl GuardOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::InsufficientScope => "insufficient_scope",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// One request through the bearer guard.
pub(crate) fn guard(outcome: GuardOutcome) {
    metrics::counter!("mcp_oauth_guard_requests_total", "outcome" => outcome.as_str()).increment(1);
}

/// One request answered 429 by a rate limit: `tier` is `auth`, `registration`, `general`,
/// `mcp` (per grant), `failures` (the failure budget) or `guard_refusals`.
pub(crate) fn rate_limited(tier: &'static str) {
    metrics::counter!("mcp_oauth_rate_limited_total", "tier" => tier).increment(1);
}

/// One fetch of a client metadata document or key set: `fetched`, `unavailable` (not the
/// client's fault: 503) or `refused` (an answer or address that rules it out).
// Only the `cimd` feature fetches.
#[cfg_attr(not(feature = "cimd"), allow(dead_code))]
pub(crate) fn cimd_fetch(outcome: &'static str) {
    metrics::counter!("mcp_oauth_cimd_fetches_total", "outcome" => outcome).increment(1);
}

/// Time one store operation and count its failure (an absent record or a refused insert is an
/// answer, not a failure; only [`StoreError`]s other than those count).
async fn timed<T>(
    store: &'static str,
    backend: &'static str,
    operation: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    metrics::histogram!("mcp_oauth_store_operation_seconds", "store" => store, "backend" => backend, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    if let Err(error) = &result
        && !matches!(
            error,
            StoreError::AlreadyExists { .. } | StoreError::CapacityReached { .. }
        )
    {
        metrics::counter!("mcp_oauth_store_errors_total", "store" => store, "backend" => backend, "operation" => operation)
            .increment(1);
    }
    result
}

/// A token store, timed.
pub(crate) struct MeteredTokens {
    inner: Arc<dyn TokenStore>,
    backend: &'static str,
}

impl MeteredTokens {
    pub(crate) fn new(inner: Arc<dyn TokenStore>) -> Self {
        let backend = inner.backend_name();
        Self { inner, backend }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        timed("token", self.backend, operation, call).await
    }
}

#[async_trait]
impl TokenStore for MeteredTokens {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        self.timed("insert", self.inner.insert(record)).await
    }

    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.timed("get", self.inner.get(kind, hash)).await
    }

    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        self.timed("consume", self.inner.consume(kind, hash, now))
            .await
    }

    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        self.timed("delete", self.inner.delete(kind, hash)).await
    }

    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        self.timed("revoke_grant", self.inner.revoke_grant(grant_id))
            .await
    }

    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.timed("list_grants", self.inner.list_grants()).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.timed("delete_expired", self.inner.delete_expired())
            .await
    }

    fn eviction_capacity(&self) -> Option<u64> {
        self.inner.eviction_capacity()
    }

    fn backend_name(&self) -> &'static str {
        self.backend
    }
}

/// A client store, timed.
pub(crate) struct MeteredClients {
    inner: Arc<dyn ClientStore>,
    backend: &'static str,
}

impl MeteredClients {
    pub(crate) fn new(inner: Arc<dyn ClientStore>) -> Self {
        let backend = inner.backend_name();
        Self { inner, backend }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        timed("client", self.backend, operation, call).await
    }
}

#[async_trait]
impl ClientStore for MeteredClients {
    async fn insert(&self, client: ClientRecord, max_unapproved: u64) -> Result<(), StoreError> {
        self.timed("insert", self.inner.insert(client, max_unapproved))
            .await
    }

    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.timed("get", self.inner.get(client_id)).await
    }

    async fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        self.timed(
            "mark_approved",
            self.inner.mark_approved(client_id, approved_at, expires_at),
        )
        .await
    }

    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        self.timed("delete", self.inner.delete(client_id)).await
    }

    async fn delete_unapproved(&self, client_id: &str) -> Result<bool, StoreError> {
        self.timed("delete_unapproved", self.inner.delete_unapproved(client_id))
            .await
    }

    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.timed("list", self.inner.list()).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.timed("delete_expired", self.inner.delete_expired())
            .await
    }

    fn backend_name(&self) -> &'static str {
        self.backend
    }
}
