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
mod routes;
mod same_origin;
mod state;
mod token;

use axum::Router;
use axum::middleware::from_fn_with_state;

pub use bearer::{Bearer, BearerLayer};
pub(crate) use rate_limit::Limits;
pub(crate) use state::AppState;

/// The OAuth endpoints and pages, the MCP routes behind the guard, and the rate limits: per IP over
/// the OAuth routes (each group in its tier, [`routes`]), per grant on the MCP routes (and per IP on
/// what the guard refuses there). The handlers that check a credential take the caller's failure
/// budget as an argument.
pub(crate) fn router(
    state: AppState,
    guard: BearerLayer,
    mcp_routes: Router,
    resource_path: &str,
) -> Router {
    let limits = state.limits.clone();
    let oauth = routes::oauth(&state, resource_path).with_state(state);

    // Inside out: the grant's budget (needs the token), the guard, then CORS outermost so that
    // preflights, which carry no token, are answered before the guard. `layer`, not `route_layer`:
    // a fallback of the MCP routes is MCP surface too (an MCP service mounted as a fallback
    // answers every path), so it is guarded like the routes.
    let mcp_routes = match limits {
        Some(limits) => mcp_routes.layer(from_fn_with_state(limits, grant_limit::enforce)),
        None => mcp_routes,
    };
    let mcp_routes = mcp_routes.layer(guard).layer(cors::mcp_routes());
    // The OAuth routes match before any fallback. Merged into the MCP routes, not the other way
    // round: their fallback, if they have one, wins (only one side may have one); if neither has,
    // `merge` keeps its argument's, so unknown paths get the OAuth router's rate-limited 404, not
    // a guarded one (the test `fallback::without_a_fallback_unknown_paths_are_404_…` holds it).
    mcp_routes.merge(oauth)
}
