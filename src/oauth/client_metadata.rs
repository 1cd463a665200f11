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
    /// `client_id` equals the URL, its redirect URIs are acceptable, it is a public client).
    ///
    /// # Errors
    ///
    /// A [`DocumentError`] saying in plain words why there is no usable document.
    async fn client(&self, client_id: &str) -> Result<Client, DocumentError>;
}

/// Whether a client id is meant as a metadata document URL (as opposed to an opaque id): it starts
/// with an http(s) scheme. Whether it is an *acceptable* one is the resolver's call, so that a
/// malformed URL gets a precise error instead of "unknown client".
pub(crate) fn is_url_client_id(client_id: &str) -> bool {
    let lower = client_id.get(..8).unwrap_or(client_id).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Why a URL client id has no usable metadata document.
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
        OAuthError::new(code, self.token_description())
    }

    /// The error the authorization endpoint shows on its page (never a redirect: the client is
    /// not known to be genuine, so neither is its redirect URI): "try again" (503) while the
    /// document cannot be had, otherwise what is wrong with it.
    pub(crate) fn page_error(&self) -> OAuthError {
        let code = if self.is_temporary() {
            ErrorCode::TemporarilyUnavailable
        } else {
            ErrorCode::InvalidRequest
        };
        OAuthError::new(code, self.page_description())
    }

    /// For the error page: names the URL, says what is wrong.
    pub(crate) fn page_description(&self) -> String {
        match &self.problem {
            DocumentProblem::Refused(reason) => format!(
                "the client_id {} is not an acceptable client metadata document URL: {reason}",
                self.url
            ),
            DocumentProblem::Unavailable(why) => format!(
                "the client's metadata document at {} could not be fetched right now ({}); \
                 try again in a moment",
                self.url,
                why.reason()
            ),
            DocumentProblem::BadAnswer(reason) => format!(
                "the client's metadata document at {} could not be fetched: {reason}",
                self.url
            ),
            DocumentProblem::Invalid(reason) => format!(
                "the client's metadata document at {} is not valid: {reason}",
                self.url
            ),
        }
    }

    /// For an `error_description` at the token endpoints: the client knows its own URL.
    pub(crate) fn token_description(&self) -> String {
        match &self.problem {
            DocumentProblem::Refused(reason) => {
                format!("the client_id is not an acceptable client metadata document URL: {reason}")
            }
            DocumentProblem::Unavailable(why) => format!(
                "the client's metadata document could not be fetched right now ({}); try again later",
                why.reason()
            ),
            DocumentProblem::BadAnswer(reason) => {
                format!("the client's metadata document could not be fetched: {reason}")
            }
            DocumentProblem::Invalid(reason) => {
                format!("the client's metadata document is not valid: {reason}")
            }
        }
    }
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.page_description())
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

    #[test]
    fn descriptions_name_the_problem() {
        let error = DocumentError {
            url: "https://client.example/meta".into(),
            problem: DocumentProblem::BadAnswer("it answered HTTP 404 Not Found".into()),
        };
        assert_eq!(
            error.page_description(),
            "the client's metadata document at https://client.example/meta could not be fetched: \
             it answered HTTP 404 Not Found"
        );
        assert!(!error.token_description().contains("client.example"));
        assert!(!error.is_temporary());
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
        assert_eq!(
            error.page_description(),
            "the client's metadata document at https://client.example/meta could not be fetched \
             right now (timed out after 5 seconds); try again in a moment"
        );
        assert!(error.token_description().contains("try again later"));
        assert_eq!(error.token_error().code, ErrorCode::TemporarilyUnavailable);
        assert_eq!(error.page_error().code, ErrorCode::TemporarilyUnavailable);
    }
}
