//! Every path this crate serves, written once. The HTTP surface is part of the contract (deployed
//! clients, discovery documents and the pages' script name these paths), so the router, the
//! discovery documents, the pages and the setup URL all take them from here.

/// Declares each path as a constant, and [`ALL`] listing them, so that a path added here is
/// covered by the test that checks every route's rate-limit tier.
macro_rules! paths {
    ($($(#[$doc:meta])* $name:ident = $path:literal;)*) => {
        $($(#[$doc])* pub(crate) const $name: &str = $path;)*

        /// Every fixed path above (the path-suffixed protected resource metadata is built from the
        /// MCP path: [`protected_resource_metadata`]).
        #[cfg(test)]
        pub(crate) const ALL: &[&str] = &[$($name),*];
    };
}

paths! {
    /// RFC 8414 authorization server metadata.
    AUTHORIZATION_SERVER_METADATA = "/.well-known/oauth-authorization-server";
    /// RFC 9728 protected resource metadata, at the root (see [`protected_resource_metadata`]).
    PROTECTED_RESOURCE_METADATA = "/.well-known/oauth-protected-resource";
    /// RFC 7591 dynamic client registration.
    REGISTER = "/register";
    /// The authorization endpoint: the consent page.
    AUTHORIZE = "/authorize";
    /// The consent page's script: a passkey challenge for the pending request.
    AUTHORIZE_CHALLENGE = "/authorize/challenge";
    /// The consent page's script: the owner's assertion, answered with the redirect carrying the code.
    AUTHORIZE_APPROVE = "/authorize/approve";
    /// The consent page's script: the owner said no.
    AUTHORIZE_DENY = "/authorize/deny";
    /// The token endpoint.
    TOKEN = "/token";
    /// RFC 7009 revocation.
    REVOKE = "/revoke";
    /// RFC 7662 introspection.
    INTROSPECT = "/introspect";
    /// The passkey registration page.
    PASSKEY_REGISTER = "/passkey/register";
    /// Its script: a further passkey approved by an existing one.
    PASSKEY_REGISTER_APPROVAL = "/passkey/register/approval";
    /// Its script: the registration ceremony's options.
    PASSKEY_REGISTER_START = "/passkey/register/start";
    /// Its script: the new credential.
    PASSKEY_REGISTER_FINISH = "/passkey/register/finish";
    /// The owner console page.
    CONSOLE = "/oauth/console";
    /// The console's script: a sign-in ceremony's options.
    CONSOLE_SIGNIN_START = "/oauth/console/signin/start";
    /// The console's script: the sign-in assertion.
    CONSOLE_SIGNIN_FINISH = "/oauth/console/signin/finish";
    /// The console's script: end the session.
    CONSOLE_SIGNOUT = "/oauth/console/signout";
    /// The console's script: revoke one grant.
    CONSOLE_GRANTS_REVOKE = "/oauth/console/grants/revoke";
    /// The console's script: delete one client.
    CONSOLE_CLIENTS_DELETE = "/oauth/console/clients/delete";
    /// The console's script: delete every registration never approved.
    CONSOLE_CLIENTS_REMOVE_UNAPPROVED = "/oauth/console/clients/remove-unapproved";
    /// The console's script: rename a passkey.
    CONSOLE_PASSKEYS_RENAME = "/oauth/console/passkeys/rename";
    /// The console's script: remove a passkey.
    CONSOLE_PASSKEYS_REMOVE = "/oauth/console/passkeys/remove";
    /// The console's script: a further passkey's registration options.
    CONSOLE_PASSKEYS_ADD_START = "/oauth/console/passkeys/add/start";
    /// The console's script: the further passkey's credential.
    CONSOLE_PASSKEYS_ADD_FINISH = "/oauth/console/passkeys/add/finish";
    /// The pages' one script.
    SCRIPT = "/oauth/static/mcp-oauth.js";
    /// The pages' one stylesheet.
    STYLE = "/oauth/static/mcp-oauth.css";
}

/// The path-suffixed protected resource metadata (RFC 9728 §3.1) for the MCP routes at
/// `resource_path`: the one every bearer challenge names.
pub(crate) fn protected_resource_metadata(resource_path: &str) -> String {
    format!("{PROTECTED_RESOURCE_METADATA}{resource_path}")
}
