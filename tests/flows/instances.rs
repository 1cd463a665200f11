//! One service on several instances sharing a store, and one instance restarted on a persistent
//! store: every step of a flow may land on any instance.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;
use tokio::sync::Mutex;

use crate::common::*;

/// Register at A, consent page at B, passkey challenge at A and assertion at B, redeem at A,
/// refresh at B, both guards accept, revocation at B is seen by A at once.
async fn one_service_across_two_instances(stores_a: Stores, stores_b: Stores) {
    let key = Arc::new(Mutex::new(SoftAuthenticator::new(true)));
    let a = TestServer::instance(stores_a, Arc::clone(&key));
    let b = TestServer::instance(stores_b, key);

    let registered = a.register_passkey(SETUP_TOKEN).await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    let client_id = a.register_public_client().await;

    let (verifier, challenge) = pkce();
    let request_id = b
        .authorize(&format!(
            "response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}\
             &code_challenge_method=S256&state=s",
            enc(LOOPBACK_REDIRECT)
        ))
        .await
        .unwrap_or_else(|r| panic!("B knows the client registered at A: {}", r.text()));
    let ceremony = a
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await;
    assert_eq!(
        ceremony.status,
        StatusCode::OK,
        "A sees the request pending at B"
    );
    let ceremony = ceremony.json();
    let assertion = b.assert_with(&b.key, &ceremony).await;
    let approved = b
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_id, "ceremony_id": ceremony["ceremony_id"], "credential": assertion }),
        )
        .await;
    assert_eq!(
        approved.status,
        StatusCode::OK,
        "B finishes A's ceremony: {}",
        approved.text()
    );
    let redirect = url::Url::parse(approved.json()["redirect_to"].as_str().unwrap()).unwrap();
    let code = query_param(&redirect, "code").unwrap();

    let tokens = a
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    assert_eq!(
        tokens.status,
        StatusCode::OK,
        "A redeems B's code: {}",
        tokens.text()
    );
    let replay = b
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    replay.assert_oauth_error(400, "invalid_grant");
    // The replay at B revoked what A issued.
    let revoked_access = tokens.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        a.mcp(Some(&revoked_access)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let (client_id, tokens) = a.connected_client().await;
    let refreshed = b
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "B refreshes A's token: {}",
        refreshed.text()
    );
    let access = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a.mcp(Some(&access)).await.status, StatusCode::OK);
    assert_eq!(b.mcp(Some(&access)).await.status, StatusCode::OK);

    let revoke = b
        .post_form(
            "/revoke",
            &form(&[
                ("token", refreshed.json()["refresh_token"].as_str().unwrap()),
                ("client_id", &client_id),
            ]),
            &[],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);
    assert_eq!(
        a.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED,
        "A sees B's revocation at once"
    );
}

#[tokio::test]
async fn two_instances_on_one_memory_store() {
    let stores = Stores::memory();
    one_service_across_two_instances(stores.clone(), stores).await;
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use mcp_oauth::backends::sqlite::SqliteStore;
    use tokio::sync::Mutex;

    use crate::common::*;

    async fn open(path: &std::path::Path) -> Stores {
        Stores::of(
            SqliteStore::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn two_instances_on_one_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oauth.db");
        super::one_service_across_two_instances(open(&path).await, open(&path).await).await;
    }

    #[tokio::test]
    async fn tokens_clients_and_passkeys_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oauth.db");
        let key = Arc::new(Mutex::new(SoftAuthenticator::new(true)));

        let before = TestServer::instance(open(&path).await, Arc::clone(&key));
        before.register_passkey(SETUP_TOKEN).await;
        let (client_id, tokens) = before.connected_client().await;
        drop(before);

        let after = TestServer::instance(open(&path).await, key);
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(
            after.mcp(Some(access)).await.status,
            StatusCode::OK,
            "the access token survived"
        );
        let refreshed = after
            .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(
            refreshed.status,
            StatusCode::OK,
            "the refresh token and the client survived"
        );
        // The passkey survived: it approves a new client, and the setup token stays used.
        after.connected_client().await;
        after
            .register_passkey(SETUP_TOKEN)
            .await
            .assert_oauth_error(403, "access_denied");
    }
}

#[cfg(feature = "redis")]
mod redis {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use axum::http::StatusCode;
    use mcp_oauth::backends::redis::RedisStore;
    use serde_json::json;

    use crate::common::*;

    /// A private, persistent `redis-server` (AOF), killed when dropped. Every write is on disk
    /// before Redis answers it (`appendfsync always`): with the default `everysec`, Redis may
    /// answer a write and postpone it while a background fsync runs (up to two seconds on a busy
    /// disk), and a kill then loses the token this test issued just before.
    struct PrivateRedis(Child);

    impl PrivateRedis {
        fn start(port: u16, dir: &std::path::Path) -> Self {
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                ])
                .arg("--dir")
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            Self(child)
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// While Redis is down every endpoint and the guard answer 503 (never 401, which would make
    /// clients throw their tokens away); when it is back, the same server works again and the
    /// token issued before the outage is still good.
    #[tokio::test]
    async fn a_redis_outage_is_503_everywhere_then_service_resumes() {
        if redis_url().is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}/");
        let mut redis = Some(PrivateRedis::start(port, dir.path()));
        let started = Instant::now();
        let store = loop {
            match RedisStore::connect(&url).await {
                Ok(store) => break store,
                Err(e) if started.elapsed() > Duration::from_secs(10) => {
                    panic!("redis-server starts: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let server = TestServer::on(Stores::of(store), config(), mcp_routes());
        server.register_passkey(SETUP_TOKEN).await;
        let (client_id, tokens) = server.connected_client().await;
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        assert_eq!(server.mcp(Some(&access)).await.status, StatusCode::OK);

        redis.take(); // killed
        let down = server.mcp(Some(&access)).await;
        assert_eq!(
            down.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            down.text()
        );
        assert!(down.header("retry-after").is_some());
        let refresh = server
            .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await;
        refresh.assert_oauth_error(503, "temporarily_unavailable");
        let register = server
            .post_json("/register", &json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none" }))
            .await;
        register.assert_oauth_error(503, "temporarily_unavailable");
        let page = server
            .get(&format!("/authorize?client_id={client_id}"))
            .await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);

        let _redis = PrivateRedis::start(port, dir.path());
        let started = Instant::now();
        loop {
            let reply = server.mcp(Some(&access)).await;
            if reply.status == StatusCode::OK {
                break;
            }
            assert_ne!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "the token must not be lost"
            );
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "service did not resume: {}",
                reply.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refreshed = server
            .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    }

    async fn open(url: &str, prefix: &str) -> Stores {
        Stores::of(RedisStore::connect(url).await.unwrap().with_prefix(prefix))
    }

    #[tokio::test]
    async fn two_instances_on_one_redis() {
        let Some(url) = redis_url() else { return };
        let prefix = format!("mcp_oauth_flows_{:016x}:", rand::random::<u64>());
        super::one_service_across_two_instances(
            open(&url, &prefix).await,
            open(&url, &prefix).await,
        )
        .await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use axum::http::StatusCode;
    use mcp_oauth::backends::PostgresStore;
    use serde_json::json;
    use tokio::sync::Mutex;

    use crate::common::*;
    use crate::postgres_support::{PrivatePostgres, drop_schema, new_schema, postgres_url};

    async fn open(url: &str) -> Stores {
        Stores::of(PostgresStore::connect(url).await.unwrap())
    }

    /// Two routers on one database, each way round: register at A, consent at B, approve at B
    /// (then at A), redeem at A (then at B), refresh at B, revocation at B seen by A at once.
    #[tokio::test]
    async fn two_instances_on_one_postgres_database() {
        let Some(server) = postgres_url() else { return };
        for swap in [false, true] {
            let (url, schema) = new_schema(&server).await;
            let (a, b) = (open(&url).await, open(&url).await);
            let (a, b) = if swap { (b, a) } else { (a, b) };
            super::one_service_across_two_instances(a, b).await;
            drop_schema(&server, &schema).await;
        }
    }

    #[tokio::test]
    async fn tokens_clients_and_passkeys_survive_a_restart() {
        let Some(server) = postgres_url() else { return };
        let (url, schema) = new_schema(&server).await;
        let key = Arc::new(Mutex::new(SoftAuthenticator::new(true)));

        let before = TestServer::instance(open(&url).await, Arc::clone(&key));
        before.register_passkey(SETUP_TOKEN).await;
        let (client_id, tokens) = before.connected_client().await;
        drop(before);

        let after = TestServer::instance(open(&url).await, key);
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(
            after.mcp(Some(access)).await.status,
            StatusCode::OK,
            "the access token survived"
        );
        let refreshed = after
            .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(
            refreshed.status,
            StatusCode::OK,
            "the refresh token and the client survived"
        );
        // The passkey survived: it approves a new client, and the setup token stays used.
        after.connected_client().await;
        after
            .register_passkey(SETUP_TOKEN)
            .await
            .assert_oauth_error(403, "access_denied");
        drop(after);
        drop_schema(&server, &schema).await;
    }

    /// 503 with `Retry-After`, and never 401 (which would make clients throw their tokens away).
    fn assert_unavailable(what: &str, reply: &Reply) {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what} while PostgreSQL is down: {}",
            reply.text()
        );
        assert!(
            reply.header("retry-after").is_some(),
            "{what}: 503 without Retry-After"
        );
    }

    /// PostgreSQL stopped mid-session (`pg_ctl stop -m immediate`): every endpoint and the guard
    /// answer 503 with `Retry-After`, never 401; once it is started again the same server works by
    /// itself, and what was issued before the outage is still good.
    #[tokio::test]
    async fn a_postgres_outage_is_503_everywhere_then_service_resumes() {
        if postgres_url().is_none() {
            return;
        }
        let Some(cluster) = PrivatePostgres::start() else {
            return;
        };
        let server = TestServer::on(open(&cluster.url()).await, config(), mcp_routes());
        server.register_passkey(SETUP_TOKEN).await;
        let (client_id, tokens) = server.connected_client().await;
        let access = access_token(&tokens);
        let refresh = refresh_token(&tokens);
        assert_eq!(server.mcp(Some(&access)).await.status, StatusCode::OK);
        let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
        let (_, challenge) = pkce();
        let pending = server
            .authorize(&authorization_query(
                &client_id,
                LOOPBACK_REDIRECT,
                &challenge,
            ))
            .await
            .unwrap_or_else(|r| panic!("{}", r.text()));

        // The owner's passkey has signed the consent when PostgreSQL stops.
        let ceremony = server
            .post_json("/authorize/challenge", &json!({ "request_id": pending }))
            .await
            .json();
        let assertion = server.assert_with(&server.key, &ceremony).await;
        let approve = json!({
            "request_id": pending,
            "ceremony_id": ceremony["ceremony_id"],
            "credential": assertion,
        });

        cluster.stop();
        // All at once: each waits up to the pool's acquire timeout before it fails.
        let register =
            json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none" });
        let consent_page = format!(
            "/authorize?{}",
            authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge)
        );
        let challenge_request = json!({ "request_id": pending });
        let revoke = form(&[("token", &refresh), ("client_id", &client_id)]);
        let introspect = form(&[
            ("token", &access),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ]);
        let enrol = json!({ "setup_token": SETUP_TOKEN, "label": "another key" });
        let (
            guard,
            refreshed,
            exchanged,
            registered,
            page,
            ceremony,
            approved,
            revoked,
            introspected,
            enrolled,
        ) = tokio::join!(
            server.mcp(Some(&access)),
            server.refresh(&client_id, &refresh),
            server.exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT),
            server.post_json("/register", &register),
            server.get(&consent_page),
            server.post_json("/authorize/challenge", &challenge_request),
            server.post_json("/authorize/approve", &approve),
            server.post_form("/revoke", &revoke, &[]),
            server.post_form("/introspect", &introspect, &[]),
            server.post_json("/passkey/register/start", &enrol),
        );
        assert_unavailable("the guard", &guard);
        assert_unavailable("a refresh", &refreshed);
        refreshed.assert_oauth_error(503, "temporarily_unavailable");
        assert_unavailable("a code exchange", &exchanged);
        assert_unavailable("a registration", &registered);
        assert_unavailable("the consent page", &page);
        assert_unavailable("a passkey challenge", &ceremony);
        assert_unavailable("a revocation", &revoked);
        assert_unavailable("an introspection", &introspected);
        assert_unavailable("an approval", &approved);
        assert_unavailable("a passkey enrolment", &enrolled);

        cluster.start_again();
        let started = Instant::now();
        loop {
            let reply = server.mcp(Some(&access)).await;
            if reply.status == StatusCode::OK {
                break;
            }
            assert_eq!(
                reply.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "the token must not be lost: {}",
                reply.text()
            );
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "service did not resume"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refreshed = server.refresh(&client_id, &refresh).await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
        let redeemed = server
            .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
            .await;
        assert_eq!(
            redeemed.status,
            StatusCode::OK,
            "the code the outage kept from being redeemed is still good: {}",
            redeemed.text()
        );
        let approved = server.post_json("/authorize/approve", &approve).await;
        assert_eq!(
            approved.status,
            StatusCode::OK,
            "the approval the outage refused goes through once it is over: {}",
            approved.text()
        );
    }

    /// PostgreSQL cannot hold a NUL in `TEXT` and refuses a parameter with one. An id with a NUL in
    /// a request is simply unknown: a 4xx, not the 503 of an outage (which invites a retry and
    /// hides a real outage among junk).
    #[tokio::test]
    async fn a_client_id_with_a_nul_is_unknown_not_an_outage() {
        let Some(server) = postgres_url() else { return };
        let (url, schema) = new_schema(&server).await;
        let app = TestServer::on(open(&url).await, config(), mcp_routes());
        app.register_passkey(SETUP_TOKEN).await;
        let (client_id, tokens) = app.connected_client().await;
        let forged = format!("{client_id}\0");
        let (_, challenge) = pkce();

        let page = app
            .get(&format!(
                "/authorize?{}",
                authorization_query(&forged, LOOPBACK_REDIRECT, &challenge)
            ))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.text());
        app.refresh(&forged, &refresh_token(&tokens))
            .await
            .assert_oauth_error(401, "invalid_client");
        let revoked = app
            .post_form(
                "/revoke",
                &form(&[("token", &refresh_token(&tokens)), ("client_id", &forged)]),
                &[],
            )
            .await;
        assert!(
            revoked.status.is_client_error(),
            "{} {}",
            revoked.status,
            revoked.text()
        );
        // The real client is untouched.
        let refreshed = app.refresh(&client_id, &refresh_token(&tokens)).await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
        drop(app);
        drop_schema(&server, &schema).await;
    }
}
