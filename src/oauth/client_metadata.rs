//! Client ID Metadata Documents, as the protocol rules see them: a client id that is an `https` URL
//! names a document describing the client. Fetching and validating it is someone else's job (the
//! `cimd` module, behind the feature of that name); this is the boundary, free of any HTTP client.

use std::fmt;

use async_trait::async_trait;

use super::clients::Client;
use super::{ErrorCode, OAuthError};

/// Resolves a URL client id to the client its metadata document describes.
#[async_trait]
pub(crate) trait MetadataDocuments: Send + Sync + fmt::Debug {
    /// The client described by the document at `client_id`, validated (the document's own
    /// `client_id` equals the URL, its redirect URIs are acceptable, it has no secret: a public
    /// client, or one signing assertions with the keys it publishes).
    ///
    /// # Errors
    ///
    /// A [`DocumentError`] saying in plain words why there is no usable document.
    async fn client(&self, client_id: &str) -> Result<Client, DocumentError>;

    /// The owner approved the client at `client_id`: from now on its last good document stays
    /// available as the fallback for its host's outages, whatever other client ids anyone sends.
    async fn approved(&self, client_id: &str);

    /// The owner removed the client at `client_id`: it is no longer approved.
    async fn removed(&self, client_id: &str);
}

/// Whether a client id is meant as a metadata document URL (as opposed to an opaque id): it starts
/// with an http(s) scheme. Whether it is an *acceptable* one is the resolver's call, so that a
/// malformed URL gets a precise error instead of "unknown client".
pub(crate) fn is_url_client_id(client_id: &str) -> bool {
    let lower = client_id.get(..8).unwrap_or(client_id).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Why a URL client id has no usable metadata document. The reasons it carries are what the
/// network said, for the log and the owner ([`DocumentError::detail`]); the client and the public
/// page hear a category ([`DocumentError::public_description`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DocumentError {
    /// The document URL, ASCII-serialised (safe to show).
    pub(crate) url: String,
    pub(crate) problem: DocumentProblem,
}

/// The kind of failure, each with a plain-words reason.
#[derive(Clone, Debug, PartialEq, Eq)]
// Only the `cimd` resolver builds these.
#[cfg_attr(not(feature = "cimd"), allow(dead_code))]
pub(crate) enum DocumentProblem {
    /// The URL itself is refused, before any connection (scheme, shape, a non-public host).
    Refused(String),
    /// No document can be had right now, through no fault of the document: the client should
    /// try again, and keep its tokens.
    Unavailable(Unavailable),
    /// The host's answer rules the document out: a status saying there is none (404, 403, …), a
    /// redirect, the wrong content type, too large, unreadable HTTP; or the host name resolves to
    /// a non-public address.
    BadAnswer(String),
    /// A document arrived but breaks the rules.
    Invalid(String),
}

/// Why a document cannot be had right now. Nothing here says the client is not genuine, so the
/// answer is "try again" (503), never "unknown client" (401), which makes clients discard their
/// tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "cimd"), allow(dead_code))]
pub(crate) enum Unavailable {
    /// Too many documents are being fetched: no fetch slot came free in time.
    Busy,
    /// No complete answer within the time limit, in seconds.
    TimedOut(u64),
    /// The host name could not be resolved.
    NotResolved,
    /// No connection could be made; the detail in plain words.
    NotConnected(String),
    /// The TLS handshake failed; the detail in plain words.
    TlsFailed(String),
    /// The connection broke before a whole answer arrived; the detail in plain words.
    ConnectionLost(String),
    /// The host answered that it cannot serve now (HTTP 5xx, 429 or 408).
    HostBusy(u16),
}

impl Unavailable {
    /// The reason in plain words.
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Busy => "this server is fetching too many client documents at once".into(),
            Self::TimedOut(seconds) => format!("timed out after {seconds} seconds"),
            Self::NotResolved => "its host name could not be resolved".into(),
            Self::NotConnected(detail) => format!("could not connect ({detail})"),
            Self::TlsFailed(detail) => format!("the TLS handshake failed ({detail})"),
            Self::ConnectionLost(detail) => format!("the connection broke ({detail})"),
            Self::HostBusy(status) => format!("it answered HTTP {status}"),
        }
    }
}

/// What anyone may be told about a document that could not be had right now: "try again", and
/// nothing of what the network said.
const TRY_AGAIN: &str =
    "the client's metadata document could not be fetched right now; try again later";

/// What anyone may be told about a document that cannot be used: whether it was missing, served
/// wrongly or broke the rules stays between the server and its owner, or the fetcher would tell a
/// stranger how any host (one trusting this server's address, say) answers.
const NO_DOCUMENT: &str = "the client's metadata document could not be fetched or is invalid";

/// Where the owner finds the detail, for the error page (which the owner is usually the one
/// reading).
const WHERE_THE_DETAIL_IS: &str =
    "the server's owner can see why in the connection doctor of the console";

impl DocumentError {
    /// Whether this is a failure to try again after (503), not a verdict on the client (401).
    pub(crate) fn is_temporary(&self) -> bool {
        matches!(self.problem, DocumentProblem::Unavailable(_))
    }

    /// The answer at the token endpoints: `temporarily_unavailable` (503) while the document
    /// cannot be had, so the client keeps its tokens; otherwise `invalid_client` (401).
    pub(crate) fn token_error(&self) -> OAuthError {
        let code = if self.is_temporary() {
            ErrorCode::TemporarilyUnavailable
        } else {
            ErrorCode::InvalidClient
        };
        OAuthError::new(code, self.public_description())
    }

    /// The error the authorization endpoint shows on its page (never a redirect: the client is
    /// not known to be genuine, so neither is its redirect URI): "try again" (503) while the
    /// document cannot be had, otherwise that it cannot be used.
    pub(crate) fn page_error(&self) -> OAuthError {
        let code = if self.is_temporary() {
            ErrorCode::TemporarilyUnavailable
        } else {
            ErrorCode::InvalidRequest
        };
        let description = match &self.problem {
            DocumentProblem::Refused(_) => self.public_description(),
            _ => format!("{}; {WHERE_THE_DETAIL_IS}", self.public_description()),
        };
        OAuthError::new(code, description)
    }

    /// What the public may be told: a category. Only a refused URL says which rule it broke:
    /// that is about the client id's own text, which its sender already knows.
    pub(crate) fn public_description(&self) -> String {
        match &self.problem {
            DocumentProblem::Refused(reason) => {
                format!("the client_id is not an acceptable client metadata document URL: {reason}")
            }
            DocumentProblem::Unavailable(_) => TRY_AGAIN.to_owned(),
            DocumentProblem::BadAnswer(_) | DocumentProblem::Invalid(_) => NO_DOCUMENT.to_owned(),
        }
    }

    /// Everything known, for the log and the owner's connection doctor only: what the network
    /// said (statuses, content types, connection and TLS errors, parse positions).
    pub(crate) fn detail(&self) -> String {
        match &self.problem {
            DocumentProblem::Refused(reason) => {
                format!("the client_id is not an acceptable client metadata document URL: {reason}")
            }
            DocumentProblem::Unavailable(why) => format!(
                "its metadata document could not be fetched right now: {}",
                why.reason()
            ),
            DocumentProblem::BadAnswer(reason) => {
                format!("its metadata document could not be fetched: {reason}")
            }
            DocumentProblem::Invalid(reason) => {
                format!("its metadata document is not valid: {reason}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_client_ids() {
        for id in [
            "https://claude.ai/oauth/claude-code-client-metadata",
            "HTTPS://example.com/x",
            "http://example.com/x",
            "https://",
        ] {
            assert!(is_url_client_id(id), "{id}");
        }
        for id in [
            "mcp_client_abc",
            "claude-static",
            "",
            "https:/x",
            "ftp://x/y",
        ] {
            assert!(!is_url_client_id(id), "{id}");
        }
    }

    /// One of each failure, with the detail only the owner may see.
    fn every_failure() -> Vec<(DocumentProblem, &'static str)> {
        vec![
            (
                DocumentProblem::Unavailable(Unavailable::NotConnected(
                    "connection refused".into(),
                )),
                "connection refused",
            ),
            (
                DocumentProblem::Unavailable(Unavailable::TimedOut(5)),
                "timed out after 5 seconds",
            ),
            (
                DocumentProblem::Unavailable(Unavailable::TlsFailed(
                    "invalid peer certificate: UnknownIssuer".into(),
                )),
                "invalid peer certificate: UnknownIssuer",
            ),
            (
                DocumentProblem::Unavailable(Unavailable::ConnectionLost(
                    "connection reset".into(),
                )),
                "connection reset",
            ),
            (
                DocumentProblem::Unavailable(Unavailable::HostBusy(500)),
                "HTTP 500",
            ),
            (
                DocumentProblem::Unavailable(Unavailable::NotResolved),
                "could not be resolved",
            ),
            (
                DocumentProblem::BadAnswer("it answered HTTP 404 Not Found".into()),
                "HTTP 404",
            ),
            (
                DocumentProblem::BadAnswer("it was served as text/html, not as JSON".into()),
                "text/html",
            ),
            (
                DocumentProblem::BadAnswer(
                    "its host name resolves to a private, loopback or otherwise non-public address"
                        .into(),
                ),
                "non-public address",
            ),
            (
                DocumentProblem::Invalid("it is not valid JSON (line 1, column 14)".into()),
                "line 1, column 14",
            ),
        ]
    }

    #[test]
    fn the_public_hears_a_category_and_the_detail_stays_with_the_owner() {
        for (problem, detail) in every_failure() {
            let error = DocumentError {
                url: "https://client.example/meta".into(),
                problem,
            };
            let public = [
                error.public_description(),
                error.page_error().description.into_owned(),
                error.token_error().description.into_owned(),
            ];
            for said in &public {
                assert!(!said.contains(detail), "{detail:?} made public: {said}");
                assert!(!said.contains("client.example"), "{said}");
            }
            let category = if error.is_temporary() {
                TRY_AGAIN
            } else {
                NO_DOCUMENT
            };
            assert_eq!(error.token_error().description, category);
            assert!(error.page_error().description.starts_with(category));
            assert!(error.detail().contains(detail), "{}", error.detail());
        }
    }

    #[test]
    fn a_refused_url_says_which_rule_it_broke() {
        let error = DocumentError {
            url: "https://client.example:22/meta".into(),
            problem: DocumentProblem::Refused(
                "it names port 22, and only port 443 is allowed".into(),
            ),
        };
        let expected = "the client_id is not an acceptable client metadata document URL: \
                        it names port 22, and only port 443 is allowed";
        assert_eq!(error.token_error().description, expected);
        assert_eq!(error.page_error().description, expected);
        assert_eq!(error.token_error().code, ErrorCode::InvalidClient);
        assert_eq!(error.page_error().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn an_unavailable_document_says_to_try_again() {
        let error = DocumentError {
            url: "https://client.example/meta".into(),
            problem: DocumentProblem::Unavailable(Unavailable::TimedOut(5)),
        };
        assert!(error.is_temporary());
        assert_eq!(error.token_error().code, ErrorCode::TemporarilyUnavailable);
        assert_eq!(error.page_error().code, ErrorCode::TemporarilyUnavailable);
        assert!(error.page_error().description.contains("connection doctor"));
    }
}
