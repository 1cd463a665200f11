//! The owner console: what holds access and since when, revoking it, the owner's passkeys, and a
//! connection doctor that shows where a client's connection attempts stop.
//!
//! The same operations are public through [`McpOAuth::admin`](crate::McpOAuth::admin) (an
//! [`Admin`] handle), so an application can build its own admin surface.

mod admin;
mod model;

pub use crate::audit::{ConnectionStep, ConnectionTrace, StepKind};
pub use admin::Admin;
pub use model::{ClientInfo, ConsoleError, GrantInfo, PasskeyInfo, Registration};
