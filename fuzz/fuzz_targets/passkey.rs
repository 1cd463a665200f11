//! The passkey JSON endpoints the consent and registration pages call, with malformed WebAuthn
//! payloads: raw bytes, or bodies shaped like the real ones whose ids, challenge and origin may be
//! live (a ceremony the server really started). Nothing but an owner's signature approves a request
//! or enrols a passkey; every refusal is a JSON error, never a 5xx.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{Ceremony, LOOPBACK_REDIRECT, SERVER_URL, assert, harness, s256};
use serde_json::{Value, json};

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Endpoint {
    // The first variant is what an all-zero input decodes to: the deepest path, a real approval.
    Approve,
    Finish,
    Approval,
    Start,
    Challenge,
    Deny,
}

#[derive(Arbitrary, Debug)]
enum Id {
    Live,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Bytes {
    Encoded(Vec<u8>),
    Verbatim(String),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Create,
    Get,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct ClientData {
    kind: Kind,
    challenge: Id,
    live_origin: bool,
    origin: String,
    cross_origin: Option<bool>,
}

#[derive(Arbitrary, Debug)]
enum ClientDataJson {
    Shaped(ClientData),
    Any(Bytes),
}

#[derive(Arbitrary, Debug)]
struct Credential {
    id: Bytes,
    public_key_type: bool,
    client_data: ClientDataJson,
    authenticator_data: Bytes,
    signature: Bytes,
    user_handle: Option<Bytes>,
    attestation_object: Bytes,
}

/// A part of a real signed body.
#[derive(Arbitrary, Debug)]
enum Part {
    RequestId,
    CeremonyId,
    Id,
    RawId,
    Type,
    ClientDataJson,
    AuthenticatorData,
    Signature,
    UserHandle,
    AttestationObject,
}

#[derive(Arbitrary, Debug)]
enum ClientKey {
    Type,
    Challenge,
    Origin,
    CrossOrigin,
    TopOrigin,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Change {
    Replace(Bytes),
    Flip {
        at: u16,
        xor: u8,
    },
    Truncate(u16),
    Remove,
    /// Set a member of the decoded `clientDataJSON` (when that is the part).
    ClientData(ClientKey, String),
}

#[derive(Arbitrary, Debug)]
enum Body {
    /// The real body for the endpoint (the owner's signed approval at `/authorize/approve`, a new
    /// authenticator's attestation at `/passkey/register/finish`), with changes.
    Signed(Vec<(Part, Change)>),
    Raw(Vec<u8>),
    Shaped {
        request_id: Option<Id>,
        ceremony_id: Option<Id>,
        setup_token: Option<String>,
        label: Option<String>,
        credential: Option<Box<Credential>>,
        approval: Option<Box<(Id, Credential)>>,
    },
}

/// The live ids a body may name, started only when it names them.
#[derive(Default)]
struct Live {
    request_id: String,
    ceremony: Option<Ceremony>,
}

fn bytes(b: &Bytes) -> Value {
    match b {
        Bytes::Encoded(raw) => Value::from(URL_SAFE_NO_PAD.encode(raw)),
        Bytes::Verbatim(text) => Value::from(text.as_str()),
    }
}

fn id(id: &Id, live: &str) -> Value {
    match id {
        Id::Live => Value::from(live),
        Id::Other(other) => Value::from(other.as_str()),
    }
}

fn client_data(data: &ClientDataJson, live: &Live) -> Value {
    match data {
        ClientDataJson::Any(b) => bytes(b),
        ClientDataJson::Shaped(data) => {
            let challenge = live.ceremony.as_ref().map_or("", |c| c.challenge.as_str());
            let mut json = json!({
                "type": match &data.kind {
                    Kind::Create => "webauthn.create",
                    Kind::Get => "webauthn.get",
                    Kind::Other(other) => other,
                },
                "challenge": id(&data.challenge, challenge),
                "origin": if data.live_origin { SERVER_URL } else { &data.origin },
            });
            if let Some(cross_origin) = data.cross_origin {
                json["crossOrigin"] = Value::from(cross_origin);
            }
            Value::from(URL_SAFE_NO_PAD.encode(json.to_string()))
        }
    }
}

fn credential(c: &Credential, live: &Live) -> Value {
    let mut response = json!({
        "clientDataJSON": client_data(&c.client_data, live),
        "authenticatorData": bytes(&c.authenticator_data),
        "signature": bytes(&c.signature),
        "attestationObject": bytes(&c.attestation_object),
    });
    if let Some(user_handle) = &c.user_handle {
        response["userHandle"] = bytes(user_handle);
    }
    json!({
        "id": bytes(&c.id),
        "rawId": bytes(&c.id),
        "type": if c.public_key_type { "public-key" } else { "other" },
        "response": response,
        "extensions": {},
    })
}

/// Whether a shaped credential could pass as a registration for the live ceremony: the only
/// success an unsigned payload may reach (`none` attestation needs no signature).
fn is_live_creation(c: &Credential) -> bool {
    matches!(
        &c.client_data,
        ClientDataJson::Shaped(ClientData {
            kind: Kind::Create,
            challenge: Id::Live,
            live_origin: true,
            ..
        })
    )
}

/// The JSON value a part lives in, and its key.
fn locate<'a>(body: &'a mut Value, part: &Part) -> (&'a mut Value, &'static str) {
    match part {
        Part::RequestId => (body, "request_id"),
        Part::CeremonyId => (body, "ceremony_id"),
        Part::Id => (&mut body["credential"], "id"),
        Part::RawId => (&mut body["credential"], "rawId"),
        Part::Type => (&mut body["credential"], "type"),
        Part::ClientDataJson => (&mut body["credential"]["response"], "clientDataJSON"),
        Part::AuthenticatorData => (&mut body["credential"]["response"], "authenticatorData"),
        Part::Signature => (&mut body["credential"]["response"], "signature"),
        Part::UserHandle => (&mut body["credential"]["response"], "userHandle"),
        Part::AttestationObject => (&mut body["credential"]["response"], "attestationObject"),
    }
}

/// The bytes a base64url member stands for (the text itself if it is not base64url).
fn decoded(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap_or_default();
    URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_else(|_| text.as_bytes().to_vec())
}

fn change(body: &mut Value, part: &Part, how: &Change) {
    let (parent, key) = locate(body, part);
    let Some(object) = parent.as_object_mut() else {
        return;
    };
    let current = object.get(key).map(decoded).unwrap_or_default();
    let encode = |raw: &[u8]| Value::from(URL_SAFE_NO_PAD.encode(raw));
    match how {
        Change::Replace(b) => {
            object.insert(key.to_owned(), bytes(b));
        }
        Change::Flip { at, xor } => {
            let mut raw = current;
            let index = usize::from(*at) % raw.len().max(1);
            if let Some(byte) = raw.get_mut(index) {
                *byte ^= xor;
            }
            object.insert(key.to_owned(), encode(&raw));
        }
        Change::Truncate(len) => {
            let mut raw = current;
            raw.truncate(usize::from(*len));
            object.insert(key.to_owned(), encode(&raw));
        }
        Change::Remove => {
            object.remove(key);
        }
        Change::ClientData(member, value) => {
            let Ok(mut data) = serde_json::from_slice::<Value>(&current) else {
                return;
            };
            let member = match member {
                ClientKey::Type => "type",
                ClientKey::Challenge => "challenge",
                ClientKey::Origin => "origin",
                ClientKey::CrossOrigin => "crossOrigin",
                ClientKey::TopOrigin => "topOrigin",
                ClientKey::Other(other) => other,
            };
            data[member] = Value::from(value.as_str());
            object.insert(key.to_owned(), encode(data.to_string().as_bytes()));
        }
    }
}

/// What a signed body must still carry for a success: the signed parts of an assertion byte for
/// byte; for an attestation, client data naming the live challenge and this origin.
fn still_genuine(endpoint: Endpoint, original: &Value, sent: &Value, challenge: &str) -> bool {
    let part = |body: &Value, name: &str| decoded(&body["credential"]["response"][name]);
    // A registration has no request id: one added to its body is ignored, like any unknown member.
    let same_ceremony = sent["ceremony_id"] == original["ceremony_id"];
    match endpoint {
        Endpoint::Approve => {
            same_ceremony
                && sent["request_id"] == original["request_id"]
                && ["clientDataJSON", "authenticatorData", "signature"]
                    .iter()
                    .all(|name| part(original, name) == part(sent, name))
        }
        Endpoint::Finish => {
            let data: Value =
                serde_json::from_slice(&part(sent, "clientDataJSON")).unwrap_or_default();
            let origin = data["origin"]
                .as_str()
                .and_then(|o| url::Url::parse(o).ok())
                .map(|o| o.origin());
            let ours = url::Url::parse(SERVER_URL).ok().map(|o| o.origin());
            same_ceremony
                && data["type"] == "webauthn.create"
                && data["challenge"] == challenge
                && origin == ours
        }
        _ => true,
    }
}

fuzz_target!(|input: (Endpoint, Body)| {
    let (endpoint, body) = input;
    let harness = harness();
    let mut live = Live::default();
    let path = match endpoint {
        Endpoint::Approval => "/passkey/register/approval",
        Endpoint::Start => "/passkey/register/start",
        Endpoint::Finish => "/passkey/register/finish",
        Endpoint::Challenge => "/authorize/challenge",
        Endpoint::Approve => "/authorize/approve",
        Endpoint::Deny => "/authorize/deny",
    };
    let (bytes, genuine) = match &body {
        Body::Raw(raw) => (raw.clone(), false),
        Body::Signed(changes) => {
            let (original, challenge) = match endpoint {
                Endpoint::Finish => {
                    let (ceremony, credential) = harness.signed_enrolment();
                    (
                        json!({ "ceremony_id": ceremony.ceremony_id, "credential": credential }),
                        ceremony.challenge,
                    )
                }
                _ => {
                    let (request_id, ceremony_id, credential) = harness.signed_approval();
                    live.request_id = request_id.clone();
                    (
                        json!({ "request_id": request_id, "ceremony_id": ceremony_id, "credential": credential }),
                        String::new(),
                    )
                }
            };
            let mut sent = original.clone();
            for (part, how) in changes {
                change(&mut sent, part, how);
            }
            // Only a body that is still genuine may succeed below.
            let genuine = still_genuine(endpoint, &original, &sent, &challenge);
            (sent.to_string().into_bytes(), genuine)
        }
        Body::Shaped {
            request_id,
            ceremony_id,
            setup_token,
            label,
            credential: cred,
            approval,
        } => {
            let wants_request =
                matches!(request_id, Some(Id::Live)) || endpoint == Endpoint::Approve;
            if wants_request
                && matches!(
                    endpoint,
                    Endpoint::Challenge | Endpoint::Approve | Endpoint::Deny
                )
            {
                live.request_id = harness
                    .pending_request(&s256("a-verifier-for-the-passkey-fuzz-target-0123456789"));
            }
            let wants_ceremony = matches!(ceremony_id, Some(Id::Live))
                || approval
                    .as_deref()
                    .is_some_and(|(id, _)| matches!(id, Id::Live));
            if wants_ceremony {
                live.ceremony = Some(match endpoint {
                    Endpoint::Finish => harness.enrolment_ceremony(),
                    Endpoint::Approve => harness.approval_ceremony(&live.request_id).0,
                    _ => harness.approval_for_enrolment(),
                });
            }
            let ceremony_id_value = live
                .ceremony
                .as_ref()
                .map_or("", |c| c.ceremony_id.as_str())
                .to_owned();
            let mut json = json!({});
            if let Some(request_id) = request_id {
                json["request_id"] = id(request_id, &live.request_id);
            }
            if let Some(ceremony_id) = ceremony_id {
                json["ceremony_id"] = id(ceremony_id, &ceremony_id_value);
            }
            if let Some(token) = setup_token {
                json["setup_token"] = Value::from(token.as_str());
            }
            if let Some(label) = label {
                json["label"] = Value::from(label.as_str());
            }
            if let Some(cred) = cred {
                json["credential"] = credential(cred, &live);
            }
            if let Some((approval_id, cred)) = approval.as_deref() {
                json["approval"] = json!({
                    "ceremony_id": id(approval_id, &ceremony_id_value),
                    "credential": credential(cred, &live),
                });
            }
            let genuine = endpoint == Endpoint::Finish
                && matches!(ceremony_id, Some(Id::Live))
                && cred.as_deref().is_some_and(is_live_creation);
            (json.to_string().into_bytes(), genuine)
        }
    };
    let reply = harness.post_json(path, bytes.clone());

    assert::not_5xx(&reply);
    if !reply.status.is_success() {
        return assert::oauth_error(&reply, assert::PAGE_ERRORS);
    }
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let answer = reply.json();
    let sent: Value =
        serde_json::from_slice(&bytes).expect("a success for a body that is not JSON");
    let names_live_request =
        !live.request_id.is_empty() && sent["request_id"] == live.request_id.as_str();
    match endpoint {
        // Anyone on the page may ask for a challenge; only a signature answers it.
        Endpoint::Approval => assert!(answer["ceremony_id"].is_string(), "{answer}"),
        Endpoint::Challenge => assert!(
            names_live_request && answer["ceremony_id"].is_string(),
            "{answer}"
        ),
        Endpoint::Deny => {
            assert!(names_live_request, "{answer}");
            let to = answer["redirect_to"].as_str().expect("redirect_to");
            assert!(
                to.starts_with(LOOPBACK_REDIRECT) && to.contains("error=access_denied"),
                "{to}"
            );
        }
        Endpoint::Finish => assert!(
            genuine,
            "a passkey enrolled without a live ceremony: {answer}"
        ),
        Endpoint::Approve => assert!(
            matches!(body, Body::Signed(_)) && genuine,
            "approved without the owner's signature, or with a changed one: {answer}"
        ),
        Endpoint::Start => panic!("{path} succeeded without the owner's signature: {answer}"),
    }
});
