//! The axum adapter: thin handlers (extract, one core call, respond), the router, the bearer guard,
//! and the rate limits.

mod authorize;
mod bearer;
mod body;
mod client_ip;
mod console;
mod cors;
mod doctor;
mod extract;
mod failures;
mod grant_limit;
mod metadata;
mod passkey;
mod rate_limit;
mod refusals;
mod register;
mod response;
mod same_origin;
mod state;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

pub use bearer::{Bearer, BearerLayer};
pub(crate) use rate_limit::Limits;
pub(crate) use state::AppState;

use crate::pages;

/// The OAuth endpoints and pages, the MCP routes behind the guard, and the rate limits: per IP over
/// the OAuth routes, per grant on the MCP routes (and per IP on what the guard refuses there). The
/// handlers that check a credential take the caller's failure budget as an argument.
pub(crate) fn router(
    state: AppState,
    guard: BearerLayer,
    mcp_routes: Router,
    resource_path: &str,
) -> Router {
    let limits = state.limits.clone();

    let page_api = Router::new()
        .route("/authorize/challenge", post(authorize::challenge))
        .route("/authorize/approve", post(authorize::approve))
        .route("/authorize/deny", post(authorize::deny))
        .route("/passkey/register/approval", post(passkey::approval))
        .route("/passkey/register/finish", post(passkey::finish))
        .route("/oauth/console/signin/start", post(console::sign_in_start))
        .route("/oauth/console/signout", post(console::sign_out))
        .route("/oauth/console/grants/revoke", post(console::revoke_grant))
        .route(
            "/oauth/console/clients/delete",
            post(console::delete_client),
        )
        .route(
            "/oauth/console/clients/remove-unapproved",
            post(console::remove_unapproved_clients),
        )
        .route(
            "/oauth/console/passkeys/rename",
            post(console::rename_passkey),
        )
        .route(
            "/oauth/console/passkeys/remove",
            post(console::remove_passkey),
        )
        .route(
            "/oauth/console/passkeys/add/start",
            post(console::add_passkey_start),
        )
        .route(
            "/oauth/console/passkeys/add/finish",
            post(console::add_passkey_finish),
        )
        .route("/passkey/register/start", post(passkey::start))
        .route(
            "/oauth/console/signin/finish",
            post(console::sign_in_finish),
        )
        .route_layer(from_fn_with_state(state.clone(), same_origin::require));

    let prm_suffixed = format!("/.well-known/oauth-protected-resource{resource_path}");
    let cross_origin = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(metadata::protected_resource),
        )
        .route(&prm_suffixed, get(metadata::protected_resource))
        .route("/register", post(register::register))
        .route("/token", post(token::token))
        .route("/revoke", post(token::revoke))
        .route("/introspect", post(token::introspect))
        .route_layer(cors::oauth_endpoints());
    let oauth = Router::new()
        .route("/authorize", get(authorize::page))
        .route("/passkey/register", get(passkey::page))
        .route(console::CONSOLE_PATH, get(console::page))
        .route(pages::SCRIPT_PATH, get(pages::script))
        .route(pages::STYLE_PATH, get(pages::style))
        .merge(cross_origin)
        .merge(page_api)
        .with_state(state);

    // Inside out: the grant's budget (needs the token), the guard, then CORS outermost so that
    // preflights, which carry no token, are answered before the guard. `layer`, not `route_layer`:
    // a fallback of the MCP routes is MCP surface too (an MCP service mounted as a fallback
    // answers every path), so it is guarded like the routes.
    let mcp_routes = match &limits {
        Some(limits) => {
            mcp_routes.layer(from_fn_with_state(Arc::clone(limits), grant_limit::enforce))
        }
        None => mcp_routes,
    };
    let mcp_routes = mcp_routes.layer(guard).layer(cors::mcp_routes());
    let oauth = match limits {
        Some(limits) => oauth.layer(from_fn_with_state(limits, rate_limit::enforce)),
        None => oauth,
    };
    // The OAuth routes match before any fallback. Merged into the MCP routes, not the other way
    // round: their fallback, if they have one, wins (only one side may have one); if neither has,
    // `merge` keeps its argument's, so unknown paths get the OAuth router's rate-limited 404, not
    // a guarded one (the test `fallback::without_a_fallback_unknown_paths_are_404_…` holds it).
    mcp_routes.merge(oauth)
}
