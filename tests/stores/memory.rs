//! The in-memory default.

use mcp_oauth::MemoryStore;

mcp_oauth::token_store_conformance!(|| async { MemoryStore::new() });
mcp_oauth::client_store_conformance!(|| async { MemoryStore::new() });
mcp_oauth::passkey_store_conformance!(|| async { MemoryStore::new() });

mod byte_budget {
    use mcp_oauth::MemoryStore;
    use mcp_oauth::store::{
        AssertionKeys, ClientKeys, ClientRecord, ClientStore, GrantId, StoreError,
        TokenEndpointAuthMethod, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
    };

    /// The default byte budget for a capacity of 1,000 tokens: 1 KiB a record, per table.
    const TOKEN_BYTES: usize = 1_000 * 1024;
    /// The default byte budget for a capacity of 100 unapproved clients: 2 KiB a client.
    const CLIENT_BYTES: usize = 100 * 2 * 1024;

    fn record(kind: TokenKind, secret: &str, expires_in: u64, payload: usize) -> TokenRecord {
        TokenRecord {
            kind,
            hash: TokenHash::of(secret),
            grant_id: GrantId(format!("grant-{secret}")),
            expires_at: UnixTime::now().plus(expires_in),
            payload: vec![7; payload],
        }
    }

    #[tokio::test]
    async fn a_flood_of_large_pending_requests_stays_within_the_byte_budget() {
        const PAYLOAD: usize = 8 * 1024;
        let store = MemoryStore::with_capacity(1_000, 100);
        let access = record(TokenKind::AccessToken, "access", 3_600, 300);
        let code = record(TokenKind::AuthorizationCode, "code", 60, 300);
        TokenStore::insert(&store, access.clone()).await.unwrap();
        TokenStore::insert(&store, code.clone()).await.unwrap();
        // What a stranger can create: pending requests with the largest state and redirect URI,
        // outliving the code.
        for i in 0..1_000 {
            let flood = record(
                TokenKind::AuthorizationRequest,
                &format!("flood-{i}"),
                600,
                PAYLOAD,
            );
            TokenStore::insert(&store, flood).await.unwrap();
        }
        let mut held = 0;
        for i in 0..1_000 {
            let hash = TokenHash::of(&format!("flood-{i}"));
            if TokenStore::get(&store, TokenKind::AuthorizationRequest, &hash)
                .await
                .unwrap()
                .is_some()
            {
                held += 1;
            }
        }
        assert!(
            held * PAYLOAD <= TOKEN_BYTES,
            "{held} pending requests of {PAYLOAD} bytes are held: more than the {TOKEN_BYTES}-byte budget"
        );
        assert!(
            TokenStore::get(
                &store,
                TokenKind::AuthorizationRequest,
                &TokenHash::of("flood-999")
            )
            .await
            .unwrap()
            .is_some(),
            "a new request is always admitted"
        );
        assert!(
            TokenStore::get(&store, access.kind, &access.hash)
                .await
                .unwrap()
                .is_some(),
            "the access token survives"
        );
        assert!(
            TokenStore::get(&store, code.kind, &code.hash)
                .await
                .unwrap()
                .is_some(),
            "the approved code survives a flood of unapproved requests"
        );
    }

    fn client(n: usize) -> ClientRecord {
        ClientRecord {
            client_id: format!("client-{n}"),
            secret_hash: None,
            auth_method: TokenEndpointAuthMethod::None,
            // Ten redirect URIs of 2,000 bytes: the most a registration may store.
            redirect_uris: (0..10)
                .map(|i| format!("https://client.example/{i}/{}", "u".repeat(1_970)))
                .collect(),
            grant_types: vec!["authorization_code".into()],
            client_name: Some("n".repeat(200)),
            client_uri: None,
            scope: None,
            application_type: None,
            issued_at: UnixTime::now(),
            expires_at: Some(UnixTime::now().plus(3_600)),
            approved_at: None,
            assertion_keys: None,
        }
    }

    #[tokio::test]
    async fn a_flood_of_large_clients_is_refused_past_the_byte_budget_evicting_nobody() {
        let store = MemoryStore::with_capacity(1_000, 100);
        let approved = ClientRecord {
            client_id: "approved".into(),
            approved_at: Some(UnixTime::now()),
            ..client(0)
        };
        ClientStore::insert(&store, approved.clone(), 1_000)
            .await
            .unwrap();
        let size: usize = client(0).redirect_uris.iter().map(String::len).sum();
        let (mut admitted, mut refused) = (0, 0);
        for n in 0..100 {
            match ClientStore::insert(&store, client(n), 1_000).await {
                Ok(()) => admitted += 1,
                Err(StoreError::CapacityReached { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            admitted * size <= CLIENT_BYTES && refused > 0,
            "{admitted} clients of {size} bytes admitted, {refused} refused: more than the \
             {CLIENT_BYTES}-byte budget"
        );
        for n in 0..admitted {
            let id = format!("client-{n}");
            assert!(
                ClientStore::get(&store, &id).await.unwrap().is_some(),
                "{id} was admitted, and a refused registration evicts nobody"
            );
        }
        assert_eq!(
            ClientStore::get(&store, "approved").await.unwrap(),
            Some(approved),
            "the approved client is kept"
        );
    }

    /// A `private_key_jwt` registration's inline keys weigh: small records that carry 16 KiB
    /// of keys each are refused past the byte budget, as large redirect URIs are.
    #[tokio::test]
    async fn registered_keys_count_toward_the_byte_budget() {
        let store = MemoryStore::with_capacity(1_000, 100);
        let keys: Vec<serde_json::Value> = (0..16)
            .map(|i| serde_json::json!({ "kty": "RSA", "kid": format!("k{i}"), "n": "q".repeat(950), "e": "AQAB" }))
            .collect();
        let signing = |n: usize| ClientRecord {
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            client_name: None,
            auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
            assertion_keys: Some(AssertionKeys {
                keys: ClientKeys::Jwks(serde_json::json!({ "keys": keys })),
                signing_alg: None,
            }),
            ..client(n)
        };
        let mut admitted = 0;
        for n in 0..100 {
            match ClientStore::insert(&store, signing(n), 1_000).await {
                Ok(()) => admitted += 1,
                Err(StoreError::CapacityReached { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            admitted * 16 * 950 <= CLIENT_BYTES,
            "{admitted} clients with 16 KiB of keys each admitted: more than the \
             {CLIENT_BYTES}-byte budget"
        );
    }

    #[tokio::test]
    async fn the_stores_client_capacity_binds_below_the_callers_cap() {
        let store = MemoryStore::with_capacity(1_000, 10);
        let small = |n: usize| ClientRecord {
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            client_name: None,
            ..client(n)
        };
        for n in 0..10 {
            ClientStore::insert(&store, small(n), 1_000).await.unwrap();
        }
        assert!(matches!(
            ClientStore::insert(&store, small(10), 1_000).await,
            Err(StoreError::CapacityReached { .. })
        ));
    }
}
