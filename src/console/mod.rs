//! The owner console: what holds access and since when, revoking it, the owner's passkeys, and a
//! connection doctor that shows where a client's connection attempts stop.
//!
//! The same operations are public on [`McpOAuth`](crate::McpOAuth) (for example
//! [`grants`](crate::McpOAuth::grants) and [`revoke_grant`](crate::McpOAuth::revoke_grant)), so an
//! application can build its own admin surface.

mod admin;
mod api;
mod journal;
mod model;
pub(crate) mod session;

pub(crate) use admin::Admin;
pub use journal::{ConnectionStep, ConnectionTrace, StepKind};
pub(crate) use journal::{Journal, Source};
pub use model::{ClientInfo, ConsoleError, GrantInfo, PasskeyInfo, Registration};
