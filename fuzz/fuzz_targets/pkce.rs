//! PKCE (RFC 7636, S256 only): the verifier syntax, the challenge check at `/authorize`, and the
//! constant-time comparison at `/token`, against an independent statement of each rule.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_oauth::fuzzing::{pkce_check_challenge, pkce_verifier_is_valid, pkce_verify};
use mcp_oauth_fuzz::assert::is_rfc6749_text;
use mcp_oauth_fuzz::s256;

#[derive(Arbitrary, Debug)]
struct Input {
    verifier: String,
    challenge: Option<String>,
    method: Option<String>,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fuzz_target!(|input: Input| {
    let Input {
        verifier,
        challenge,
        method,
    } = input;
    assert_eq!(
        pkce_verifier_is_valid(&verifier),
        (43..=128).contains(&verifier.len()) && verifier.bytes().all(is_unreserved),
        "{verifier:?}"
    );

    // A verifier meets its own challenge, and no other string does.
    let own = s256(&verifier);
    assert!(pkce_verify(&verifier, &own));
    assert!(pkce_check_challenge(Some(&own), Some("S256")).is_ok());
    if let Some(challenge) = &challenge {
        assert_eq!(
            pkce_verify(&verifier, challenge),
            *challenge == own,
            "{challenge:?}"
        );
    }

    match pkce_check_challenge(challenge.as_deref(), method.as_deref()) {
        Ok(stored) => {
            assert_eq!(method.as_deref(), Some("S256"), "only S256 is accepted");
            assert_eq!(Some(&stored), challenge.as_ref());
            assert!(
                stored.len() == 43
                    && stored
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
        Err((code, description)) => {
            assert_eq!(code, "invalid_request");
            assert!(is_rfc6749_text(&description));
        }
    }
});
