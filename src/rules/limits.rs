//! The longest value a client may make this server keep: what an authorization request leaves
//! pending until the owner decides, and what a registration or a metadata document keeps for the
//! client's lifetime (one set for both, applied by [`super::client_format`]). Each limit is far
//! above what real clients send and small enough that the largest record stays a few kilobytes;
//! the stores bound how many records there are.
//!
//! Values the server does not keep (`logo_uri`, `contacts`, `software_id` and other metadata it
//! ignores, requested grant types it drops) need no limit beyond the request body's.

/// `state` on `/authorize`, in bytes. Claude and ChatGPT send 43 random characters; a signed or
/// encrypted state (a JWT carrying a return URL) runs to 500–800. Kept until the owner decides
/// and echoed in the redirect, so it also keeps that URL within what browsers and servers accept.
pub(crate) const MAX_STATE_BYTES: usize = 2048;

/// A `scope` string, on `/authorize` or at registration, in bytes: room for dozens of scope names.
pub(crate) const MAX_SCOPE_BYTES: usize = 1024;

/// Any URI a client sends: a redirect URI, `client_uri`, `resource`, a URL client id. Real ones
/// are under 200 bytes; 2,000 is the longest URL every browser and proxy handles.
pub(crate) const MAX_URI_BYTES: usize = 2000;

/// A dynamically registered client id is ours (`mcp_client_` and 22 characters); anything longer
/// is not one, and is not looked up.
pub(crate) const MAX_REGISTERED_CLIENT_ID_BYTES: usize = 256;

/// `client_name`, in characters (at most 800 bytes): product names are a few words. Counted in
/// characters so that a name in any script gets the same room.
pub(crate) const MAX_CLIENT_NAME_CHARS: usize = 200;

/// Redirect URIs a client lists, at registration or in a metadata document: clients list one to
/// three (loopback variants, a web and a native callback). A published document cannot adapt to
/// one server's limits, so the room is generous; the bytes in all, not the count, bound a record.
pub(crate) const MAX_REDIRECT_URIS: usize = 20;

/// All of a client's redirect URIs together, in bytes: room for several long ones, while the
/// largest registration a stranger can make stays about 8.5 KiB (with the longest name, URI and
/// scope), so that the cap on unapproved registrations also bounds their bytes. A metadata
/// document (at most 5 KiB) is held to the same.
pub(crate) const MAX_REDIRECT_URIS_TOTAL_BYTES: usize = 4096;

/// A client's JWK set, in bytes: fetched from its `jwks_uri`, or registered inline (as kept: its
/// usable keys). Room for a rotation's worth of RSA-4096 keys; with it the largest registration a
/// stranger can make is about 25 KiB.
pub(crate) const MAX_JWKS_BYTES: usize = 16 * 1024;

/// `Err(description)` naming `field` when `value` is longer than `max` bytes.
pub(crate) fn check_bytes(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        Err(format!("{field} is longer than {max} bytes"))
    } else {
        Ok(())
    }
}

/// `Err(description)` naming `field` when `value` is longer than `max` characters.
pub(crate) fn check_chars(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        Err(format!("{field} is longer than {max} characters"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive() {
        assert!(check_bytes("state", &"s".repeat(MAX_STATE_BYTES), MAX_STATE_BYTES).is_ok());
        assert_eq!(
            check_bytes("state", &"s".repeat(MAX_STATE_BYTES + 1), MAX_STATE_BYTES),
            Err("state is longer than 2048 bytes".to_owned())
        );
        assert!(check_chars("client_name", &"名".repeat(200), 200).is_ok());
        assert!(check_chars("client_name", &"名".repeat(201), 200).is_err());
    }
}
