//! Resident memory per live access token in `MemoryStore`: inserts 1,000,000 access tokens shaped
//! as the token endpoint writes them (one grant each) and reads the process's resident set size
//! before and after. Also reports a whole grant (access token, refresh token and grant record).
//!
//! ```sh
//! cargo run --release --example bench_memory -- access 1000000
//! cargo run --release --example bench_memory -- grant 1000000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_oauth::MemoryStore;
use mcp_oauth::store::{GrantId, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime};

/// Resident bytes of this process, from `/proc/self/statm`.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn secret(prefix: &str) -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The payload the token endpoint writes for `kind`, laid out as `src/oauth/records.rs` does: tag
/// byte 1, then postcard. An access or refresh token holds (client id, scopes, resource); a grant
/// record also its redirect URI, approval time and the last issue's time and expiries.
fn payload(kind: TokenKind, client_id: &str) -> Vec<u8> {
    let now = UnixTime::now().0;
    let (scopes, resource) = (vec!["mcp"], "https://mcp.example.com/mcp");
    let encoded = if kind == TokenKind::Grant {
        let redirect = Some("http://127.0.0.1:33418/callback");
        let (issued, access, refresh) = (Some(now), Some(now + 3_600), Some(now + 2_592_000));
        postcard::to_extend(
            &(
                client_id, scopes, resource, redirect, now, issued, access, refresh,
            ),
            vec![1u8],
        )
    } else {
        postcard::to_extend(&(client_id, scopes, resource), vec![1u8])
    };
    encoded.unwrap()
}

async fn fill(store: &MemoryStore, count: usize, kinds: &[TokenKind]) {
    let expires_at = UnixTime::now().plus(3600);
    let client_id = secret("mcp_client_")[..33].to_owned();
    for _ in 0..count {
        let grant_id = GrantId::generate();
        for &kind in kinds {
            store
                .insert(TokenRecord {
                    kind,
                    hash: TokenHash::of(&secret("mcp_at_")),
                    grant_id: grant_id.clone(),
                    expires_at,
                    payload: payload(kind, &client_id),
                })
                .await
                .unwrap();
        }
    }
    store.delete_expired().await.unwrap();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "access".to_owned());
    let count: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let kinds: &[TokenKind] = match what.as_str() {
        "access" => &[TokenKind::AccessToken],
        "grant" => &[
            TokenKind::AccessToken,
            TokenKind::RefreshToken,
            TokenKind::Grant,
        ],
        _ => {
            eprintln!("usage: bench_memory access|grant COUNT");
            std::process::exit(2);
        }
    };
    let store = MemoryStore::with_capacity(u64::try_from(count * kinds.len()).unwrap(), 1_000);
    let before = resident_bytes();
    fill(&store, count, kinds).await;
    let after = resident_bytes();
    let per_item = after.saturating_sub(before) as f64 / count as f64;
    println!(
        "{what} count={count} resident_before={before} resident_after={after} bytes_per_{what}={per_item:.0}"
    );
}
