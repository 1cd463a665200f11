//! `GET /authorize`: any query, raw or built from parameters with values near the rules. The answer
//! is always an HTML page (consent or error) that cannot be framed, never a redirect; a consent page
//! only for a known client, a registered redirect URI and an S256 challenge; a "return" link only
//! to a redirect URI the client registered.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_oauth::config::DEFAULT_CLIENT_REDIRECT_URIS;
use mcp_oauth::fuzzing::redirect_matches;
use mcp_oauth_fuzz::edit::{self, Edit};
use mcp_oauth_fuzz::{
    HTTPS_REDIRECT, LOOPBACK_REDIRECT, RESOURCE, STATIC_CLIENT_ID, assert, harness, request_id_of,
    s256,
};

#[derive(Arbitrary, Debug, Clone)]
enum Name {
    ResponseType,
    ClientId,
    RedirectUri,
    CodeChallenge,
    CodeChallengeMethod,
    State,
    Scope,
    Resource,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum Value {
    Code,
    PublicClient,
    StaticClient,
    Loopback,
    LoopbackPort(u16),
    Https,
    Challenge,
    S256,
    Plain,
    Resource,
    Mcp,
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Edits applied to a correct request of the public client (or to nothing). First, so that an
    /// all-zero input decodes to the correct request and the fuzzer starts there.
    Params {
        from_nothing: bool,
        edits: Vec<Edit<Name, Value>>,
    },
    Raw(Vec<u8>),
}

fn params(from_nothing: bool, edits: &[Edit<Name, Value>]) -> Vec<(Name, Value)> {
    let valid = vec![
        (Name::ResponseType, Value::Code),
        (Name::ClientId, Value::PublicClient),
        (Name::RedirectUri, Value::Loopback),
        (Name::CodeChallenge, Value::Challenge),
        (Name::CodeChallengeMethod, Value::S256),
        (Name::State, Value::Text("st".to_owned())),
        (Name::Resource, Value::Resource),
    ];
    edit::apply(if from_nothing { Vec::new() } else { valid }, edits, name)
}

fn name(name: &Name) -> &str {
    match name {
        Name::ResponseType => "response_type",
        Name::ClientId => "client_id",
        Name::RedirectUri => "redirect_uri",
        Name::CodeChallenge => "code_challenge",
        Name::CodeChallengeMethod => "code_challenge_method",
        Name::State => "state",
        Name::Scope => "scope",
        Name::Resource => "resource",
        Name::Other(other) => other,
    }
}

fn value(value: &Value, public_client: &str) -> String {
    match value {
        Value::Code => "code".to_owned(),
        Value::PublicClient => public_client.to_owned(),
        Value::StaticClient => STATIC_CLIENT_ID.to_owned(),
        Value::Loopback => LOOPBACK_REDIRECT.to_owned(),
        Value::LoopbackPort(port) => format!("http://127.0.0.1:{port}/callback"),
        Value::Https => HTTPS_REDIRECT.to_owned(),
        Value::Challenge => s256("a-verifier-for-the-authorize-fuzz-target-0123456789"),
        Value::S256 => "S256".to_owned(),
        Value::Plain => "plain".to_owned(),
        Value::Resource => RESOURCE.to_owned(),
        Value::Mcp => "mcp".to_owned(),
        Value::Text(text) => text.clone(),
    }
}

/// Bytes that may stand in a query as they are; the rest are percent-encoded.
fn query_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

fn unescape_html(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fuzz_target!(|input: Input| {
    let harness = harness();
    let query = match &input {
        Input::Raw(bytes) => bytes
            .iter()
            .map(|&b| {
                if query_byte(b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>(),
        Input::Params {
            from_nothing,
            edits,
        } => {
            let mut serializer = url::form_urlencoded::Serializer::new(String::new());
            for (n, v) in &params(*from_nothing, edits) {
                serializer.append_pair(name(n), &value(v, &harness.public_client));
            }
            serializer.finish()
        }
    };
    let reply = harness.get(&format!("/authorize?{query}"));

    assert::not_5xx(&reply);
    assert!(
        matches!(reply.status.as_u16(), 200 | 400),
        "{}: {}",
        reply.status,
        reply.text()
    );
    assert!(reply.header("location").is_none(), "/authorize redirected");
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));

    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    // As the server reads them: an empty value is the same as absent.
    let all = |name: &'static str| {
        pairs
            .iter()
            .filter(move |(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let registered_for = |client: &str| -> Vec<String> {
        if client == harness.public_client {
            vec![LOOPBACK_REDIRECT.to_owned()]
        } else if client == STATIC_CLIENT_ID {
            DEFAULT_CLIENT_REDIRECT_URIS
                .iter()
                .map(|&uri| uri.to_owned())
                .collect()
        } else {
            Vec::new()
        }
    };
    let page = reply.text();

    if reply.status.as_u16() == 200 {
        assert!(
            request_id_of(&page).is_some(),
            "a 200 that is not a consent page"
        );
        let clients: Vec<_> = all("client_id").collect();
        assert_eq!(clients.len(), 1, "{pairs:?}");
        let registered = registered_for(clients[0]);
        assert!(
            !registered.is_empty(),
            "consent for an unknown client {:?}",
            clients[0]
        );
        assert!(all("response_type").eq(["code"]), "{pairs:?}");
        assert!(all("code_challenge_method").eq(["S256"]), "{pairs:?}");
        assert_eq!(all("code_challenge").count(), 1, "{pairs:?}");
        for requested in all("redirect_uri") {
            assert!(
                registered.iter().any(|r| redirect_matches(r, requested)),
                "{requested:?}"
            );
        }
    }

    // A way back to the client only to a redirect URI the named client registered.
    let marker = "class=\"btn btn-primary\" href=\"";
    if let Some(start) = page.find(marker).map(|i| i + marker.len()) {
        let end = page[start..].find('"').expect("closed href") + start;
        let href = unescape_html(&page[start..end]);
        let client = all("client_id").next().unwrap_or_default();
        let registered = registered_for(client);
        let base = all("redirect_uri").next().map_or_else(
            || registered.first().cloned().unwrap_or_default(),
            str::to_owned,
        );
        assert!(
            registered.iter().any(|r| redirect_matches(r, &base)),
            "link to {href:?}"
        );
        assert!(
            href.starts_with(&base) && href[base.len()..].contains("error="),
            "link to {href:?}"
        );
    }
});
