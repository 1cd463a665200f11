//! What every handler shares.

use std::sync::Arc;

use axum::body::Bytes;

use super::Limits;
use crate::console::Admin;
use crate::oauth::AuthServer;
use crate::passkey::Passkeys;

/// Shared state of the OAuth routes. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) server: Arc<AuthServer>,
    pub(crate) passkeys: Arc<Passkeys>,
    /// The rate limits and failure budgets; `None` when switched off.
    pub(crate) limits: Option<Arc<Limits>>,
    pub(crate) app_name: Arc<str>,
    /// `scheme://host[:port]` of the server, for checking `Origin` on the page endpoints.
    pub(crate) origin: Arc<str>,
    pub(crate) max_body_bytes: usize,
    /// The discovery documents, serialised once.
    pub(crate) authorization_server_metadata: Bytes,
    pub(crate) protected_resource_metadata: Bytes,
}

impl AppState {
    /// The owner's operations, for the console's endpoints.
    pub(crate) fn admin(&self) -> Admin<'_> {
        Admin::new(&self.server, &self.passkeys)
    }
}
