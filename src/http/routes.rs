//! The OAuth routes and their policy in one table: each group's rate-limit tier, and whether it
//! answers cross-origin callers (CORS) or only the server's own pages (the same-origin check).

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use super::rate_limit::{Answer, Tier, Tiers};
use super::{AppState, authorize, console, cors, metadata, passkey, register, same_origin, token};
use crate::{pages, paths};

/// The OAuth endpoints and pages, each group held to its tier. The rate limit is the outermost
/// layer of every route, so a request over it costs nothing more.
pub(super) fn oauth(state: &AppState, resource_path: &str) -> Router<AppState> {
    // Called with `fetch` by browser-based clients.
    let cross_origin = |routes: Router<AppState>| routes.route_layer(cors::oauth_endpoints());
    // Called only by the server's own pages' script.
    let same_origin = |routes: Router<AppState>| {
        routes.route_layer(from_fn_with_state(state.clone(), same_origin::require))
    };
    let prm_suffixed = paths::protected_resource_metadata(resource_path);

    Tiers::new(state.limits.clone())
        .hold(
            Tier::Auth,
            Answer::Page,
            Router::new().route(paths::AUTHORIZE, get(authorize::page)),
        )
        .hold(
            Tier::Auth,
            Answer::Json,
            cross_origin(
                Router::new()
                    .route(paths::TOKEN, post(token::token))
                    .route(paths::REVOKE, post(token::revoke))
                    .route(paths::INTROSPECT, post(token::introspect)),
            ),
        )
        .hold(
            Tier::Auth,
            Answer::Json,
            same_origin(
                Router::new()
                    .route(paths::AUTHORIZE_CHALLENGE, post(authorize::challenge))
                    .route(paths::AUTHORIZE_APPROVE, post(authorize::approve))
                    .route(paths::AUTHORIZE_DENY, post(authorize::deny))
                    // Each stores a passkey ceremony for minutes, and the first needs no secret.
                    .route(paths::CONSOLE_SIGNIN_START, post(console::sign_in_start))
                    .route(
                        paths::CONSOLE_PASSKEYS_ADD_START,
                        post(console::add_passkey_start),
                    ),
            ),
        )
        .hold(
            Tier::Registration,
            Answer::Page,
            Router::new().route(paths::PASSKEY_REGISTER, get(passkey::page)),
        )
        .hold(
            Tier::Registration,
            Answer::Json,
            cross_origin(Router::new().route(paths::REGISTER, post(register::register))),
        )
        .hold(
            Tier::Registration,
            Answer::Json,
            same_origin(
                Router::new()
                    .route(paths::PASSKEY_REGISTER_APPROVAL, post(passkey::approval))
                    .route(paths::PASSKEY_REGISTER_START, post(passkey::start))
                    .route(paths::PASSKEY_REGISTER_FINISH, post(passkey::finish)),
            ),
        )
        .hold(
            Tier::General,
            Answer::Page,
            Router::new().route(paths::CONSOLE, get(console::page)),
        )
        .hold(
            Tier::General,
            Answer::Json,
            Router::new()
                .route(paths::SCRIPT, get(pages::script))
                .route(paths::STYLE, get(pages::style)),
        )
        .hold(
            Tier::General,
            Answer::Json,
            cross_origin(
                Router::new()
                    .route(
                        paths::AUTHORIZATION_SERVER_METADATA,
                        get(metadata::authorization_server),
                    )
                    .route(
                        paths::PROTECTED_RESOURCE_METADATA,
                        get(metadata::protected_resource),
                    )
                    .route(&prm_suffixed, get(metadata::protected_resource)),
            ),
        )
        .hold(
            Tier::General,
            Answer::Json,
            same_origin(
                Router::new()
                    .route(paths::CONSOLE_SIGNIN_FINISH, post(console::sign_in_finish))
                    .route(paths::CONSOLE_SIGNOUT, post(console::sign_out))
                    .route(paths::CONSOLE_GRANTS_REVOKE, post(console::revoke_grant))
                    .route(paths::CONSOLE_CLIENTS_DELETE, post(console::delete_client))
                    .route(
                        paths::CONSOLE_CLIENTS_REMOVE_UNAPPROVED,
                        post(console::remove_unapproved_clients),
                    )
                    .route(
                        paths::CONSOLE_PASSKEYS_RENAME,
                        post(console::rename_passkey),
                    )
                    .route(
                        paths::CONSOLE_PASSKEYS_REMOVE,
                        post(console::remove_passkey),
                    )
                    .route(
                        paths::CONSOLE_PASSKEYS_ADD_FINISH,
                        post(console::add_passkey_finish),
                    ),
            ),
        )
        .finish()
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::backends::MemoryStore;
    use crate::{McpOAuth, OAuthConfig, RateLimit};

    /// Every path and the tier DESIGN §7 puts it in (`None`: limited per grant, not per address).
    const TIERS: &[(&str, Option<Tier>)] = &[
        (paths::AUTHORIZE, Some(Tier::Auth)),
        (paths::AUTHORIZE_CHALLENGE, Some(Tier::Auth)),
        (paths::AUTHORIZE_APPROVE, Some(Tier::Auth)),
        (paths::AUTHORIZE_DENY, Some(Tier::Auth)),
        (paths::TOKEN, Some(Tier::Auth)),
        (paths::REVOKE, Some(Tier::Auth)),
        (paths::INTROSPECT, Some(Tier::Auth)),
        (paths::CONSOLE_SIGNIN_START, Some(Tier::Auth)),
        (paths::CONSOLE_PASSKEYS_ADD_START, Some(Tier::Auth)),
        (paths::REGISTER, Some(Tier::Registration)),
        (paths::PASSKEY_REGISTER, Some(Tier::Registration)),
        (paths::PASSKEY_REGISTER_APPROVAL, Some(Tier::Registration)),
        (paths::PASSKEY_REGISTER_START, Some(Tier::Registration)),
        (paths::PASSKEY_REGISTER_FINISH, Some(Tier::Registration)),
        (paths::AUTHORIZATION_SERVER_METADATA, Some(Tier::General)),
        (paths::PROTECTED_RESOURCE_METADATA, Some(Tier::General)),
        (
            "/.well-known/oauth-protected-resource/mcp",
            Some(Tier::General),
        ),
        (paths::CONSOLE, Some(Tier::General)),
        (paths::CONSOLE_SIGNIN_FINISH, Some(Tier::General)),
        (paths::CONSOLE_SIGNOUT, Some(Tier::General)),
        (paths::CONSOLE_GRANTS_REVOKE, Some(Tier::General)),
        (paths::CONSOLE_CLIENTS_DELETE, Some(Tier::General)),
        (
            paths::CONSOLE_CLIENTS_REMOVE_UNAPPROVED,
            Some(Tier::General),
        ),
        (paths::CONSOLE_PASSKEYS_RENAME, Some(Tier::General)),
        (paths::CONSOLE_PASSKEYS_REMOVE, Some(Tier::General)),
        (paths::CONSOLE_PASSKEYS_ADD_FINISH, Some(Tier::General)),
        (paths::SCRIPT, Some(Tier::General)),
        (paths::STYLE, Some(Tier::General)),
        ("/no-such-path", Some(Tier::General)),
        ("/mcp", None),
    ];

    /// The tier whose burst let `allowed` requests through before the first 429.
    fn tier_by_burst(allowed: u32) -> Option<Tier> {
        match allowed {
            2 => Some(Tier::Auth),
            3 => Some(Tier::Registration),
            4 => Some(Tier::General),
            _ => None,
        }
    }

    #[test]
    fn every_path_has_an_expected_tier() {
        for path in paths::ALL {
            assert!(
                TIERS.iter().any(|(listed, _)| listed == path),
                "{path} has no expected tier: add it to TIERS"
            );
        }
        assert_eq!(
            paths::protected_resource_metadata("/mcp"),
            "/.well-known/oauth-protected-resource/mcp"
        );
    }

    /// Over HTTP, through the whole router: each path, called with its own method and with a wrong
    /// one, is held to its tier and to no other.
    #[tokio::test]
    async fn every_route_is_held_to_its_tier() {
        let mut config = OAuthConfig::with_defaults(
            "http://localhost:8080",
            "claude",
            "a-long-random-client-secret-for-tests",
            "Tiers",
            "/nonexistent/passkeys.json",
        );
        // Different bursts tell the tiers apart; a minute refills one request only.
        config.rate_limits.auth = RateLimit::new(1, 2);
        config.rate_limits.registration = RateLimit::new(1, 3);
        config.rate_limits.general = RateLimit::new(1, 4);
        config.rate_limits.refused = RateLimit::new(1, 100);
        let oauth = McpOAuth::builder(config)
            .stores(MemoryStore::new())
            .build()
            .unwrap();
        let app = oauth.router(Router::new().route("/mcp", post(|| async { "mcp" })));

        let mut wrong = Vec::new();
        for (i, (path, expected)) in TIERS.iter().enumerate() {
            // Each path from its own address: one bucket per address and tier.
            let peer = SocketAddr::from(([10, 0, 0, u8::try_from(i).unwrap()], 40000));
            let mut allowed = 0;
            for attempt in 0..6 {
                let method = if attempt % 2 == 0 {
                    Method::GET
                } else {
                    Method::POST
                };
                let mut request = Request::builder()
                    .method(method)
                    .uri(*path)
                    .body(Body::empty())
                    .unwrap();
                request.extensions_mut().insert(ConnectInfo(peer));
                let response = app.clone().oneshot(request).await.unwrap();
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    break;
                }
                allowed += 1;
            }
            let found = tier_by_burst(allowed);
            if found != *expected {
                wrong.push(format!(
                    "{path}: expected {expected:?}, found {found:?} ({allowed} requests before a 429)"
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
