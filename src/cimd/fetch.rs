//! Fetching a metadata document: one `GET`, on a connection to an address vetted by [`ssrf`].
//!
//! Built on hyper's one-connection client and rustls (ring, Mozilla's roots from `webpki-roots`)
//! rather than a full HTTP client, so that nothing happens behind our back: no proxy taken from the
//! environment, no redirect followed, no second DNS lookup, no connection pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AGE, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::slots::{FetchSlots, SlotLimits};
use super::ssrf::{self, Target, TargetHost};
use crate::oauth::client_metadata::Unavailable;

/// The largest document accepted (CIMD §"Maximum Response Size" recommends 5 KB).
pub(crate) const MAX_BYTES: usize = 5 * 1024;

/// Everything (resolution, connection, TLS, request, body) must be done within this, counted
/// from when the fetch has its slot.
pub(crate) const TIME_LIMIT: Duration = Duration::from_secs(5);

/// Response head limit (hyper's floor is 8 KiB).
const MAX_HEAD_BYTES: usize = 8 * 1024;

const USER_AGENT_VALUE: &str = concat!(
    "mcp-oauth/",
    env!("CARGO_PKG_VERSION"),
    " (OAuth client metadata document fetcher)"
);

/// How long the server says the document may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// `no-store` or `no-cache`: fetch again next time.
    DoNotCache,
    /// `max-age` (less `Age`), in seconds.
    MaxAge(u64),
    /// No caching directive.
    Unspecified,
}

/// Why a fetch gave no document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// Not the document's fault: try again later.
    Unavailable(Unavailable),
    /// The host's answer, or its address, rules the document out; in plain words.
    BadAnswer(String),
}

impl From<Unavailable> for FetchError {
    fn from(why: Unavailable) -> Self {
        Self::Unavailable(why)
    }
}

/// A `200` JSON response within the limits.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    pub(crate) freshness: Freshness,
}

/// The fetcher: TLS settings, the fetch slots and the time limit.
pub(crate) struct Fetcher {
    tls: TlsConnector,
    slots: FetchSlots,
    time_limit: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    /// # Errors
    ///
    /// The TLS configuration could not be built (not expected with the bundled provider).
    pub(crate) fn new() -> Result<Self, String> {
        Self::with_limits(SlotLimits::DEFAULT, TIME_LIMIT)
    }

    fn with_limits(slots: SlotLimits, time_limit: Duration) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // An explicit provider: the process-wide default may be unset, or another crate's.
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            slots: FetchSlots::new(slots),
            time_limit,
        })
    }

    /// Fetch the document at a vetted target: wait for a slot (bounded on its own), then fetch
    /// within the time limit.
    ///
    /// # Errors
    ///
    /// [`FetchError::Unavailable`] for a failure that is not the document's fault (no slot, a
    /// timeout, no connection, a server error); [`FetchError::BadAnswer`] for an answer that
    /// rules the document out.
    pub(crate) async fn fetch(&self, target: &Target) -> Result<Fetched, FetchError> {
        self.fetch_up_to(target, MAX_BYTES).await
    }

    /// [`fetch`](Self::fetch), for a body of at most `max_bytes` (a JWK set is larger than a
    /// metadata document).
    ///
    /// # Errors
    ///
    /// As for [`fetch`](Self::fetch).
    pub(crate) async fn fetch_up_to(
        &self,
        target: &Target,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        let fetched = match self.slots.acquire(target.host_key()).await {
            Ok(_slot) => {
                match tokio::time::timeout(self.time_limit, self.fetch_unbounded(target, max_bytes))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => Err(Unavailable::TimedOut(self.time_limit.as_secs()).into()),
                }
            }
            Err(no_slot) => Err(no_slot.into()),
        };
        crate::telemetry::cimd_fetch(match &fetched {
            Ok(_) => "fetched",
            Err(FetchError::Unavailable(_)) => "unavailable",
            Err(FetchError::BadAnswer(_)) => "refused",
        });
        fetched
    }

    async fn fetch_unbounded(
        &self,
        target: &Target,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        let addresses = resolve(target).await?;
        let tcp = connect(&addresses).await?;
        if target.url.scheme() == "https" {
            let name = match &target.host {
                TargetHost::Name(name) => ServerName::try_from(name.clone()).map_err(|_| {
                    FetchError::BadAnswer("its host name is not valid for TLS".into())
                })?,
                TargetHost::Ip(ip) => ServerName::IpAddress((*ip).into()),
            };
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| Unavailable::TlsFailed(e.to_string()))?;
            get(tls, target, max_bytes).await
        } else {
            // Only reachable through the testing switch, on loopback.
            get(tcp, target, max_bytes).await
        }
    }
}

/// Resolve the host once; every address must pass the filter, or none is used. A failed lookup
/// is [`Unavailable`]: the resolver may be what failed, not the document.
async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, FetchError> {
    let mut addresses: Vec<SocketAddr> = match &target.host {
        TargetHost::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
        TargetHost::Name(name) => tokio::net::lookup_host((name.as_str(), target.port))
            .await
            .map_err(|_| Unavailable::NotResolved)?
            .collect(),
    };
    addresses.dedup();
    if addresses.is_empty() {
        return Err(Unavailable::NotResolved.into());
    }
    if let Some(bad) = addresses
        .iter()
        .find(|a| !ssrf::address_allowed(a.ip(), target.loopback_only))
    {
        // The address goes to the log only: the error page is public, and would otherwise map
        // the server's internal DNS for anyone who asks.
        tracing::warn!(target: "mcp_oauth::cimd", url = %target.url, address = %bad.ip(), "refusing to fetch a metadata document from a non-public address");
        return Err(FetchError::BadAnswer(
            "its host name resolves to a private, loopback or otherwise non-public address".into(),
        ));
    }
    Ok(addresses)
}

/// Connect to the first vetted address that answers.
async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, Unavailable> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(error.kind()),
        }
    }
    Err(Unavailable::NotConnected(last.map_or_else(
        || "no address answered".to_owned(),
        |kind| kind.to_string(),
    )))
}

/// A failed HTTP exchange: an answer that is not HTTP rules the document out; a connection that
/// broke does not.
fn exchange_failed(error: &hyper::Error) -> FetchError {
    if error.is_parse() || error.is_parse_status() {
        FetchError::BadAnswer(format!("the HTTP exchange failed ({error})"))
    } else {
        Unavailable::ConnectionLost(error.to_string()).into()
    }
}

/// Statuses that say "not now" rather than "no such document": server errors, 429 and 408.
fn is_temporary_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Aborts the spawned connection task when the fetch ends, early or not.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn get<S>(io: S, target: &Target, max_bytes: usize) -> Result<Fetched, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES.max(max_bytes) * 2)
        .max_header_size(MAX_HEAD_BYTES)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| exchange_failed(&e))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));

    let mut path = target.url.path().to_owned();
    if let Some(query) = target.url.query() {
        path.push('?');
        path.push_str(query);
    }
    let host = match target.url.port() {
        Some(port) => format!("{}:{port}", target.url.host_str().unwrap_or_default()),
        None => target.url.host_str().unwrap_or_default().to_owned(),
    };
    let request = Request::get(path)
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|_| FetchError::BadAnswer("the request could not be built".into()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| exchange_failed(&e))?;

    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::BadAnswer(format!(
            "it answered with a redirect (HTTP {}), and redirects are not followed",
            status.as_u16()
        )));
    }
    if is_temporary_status(status) {
        return Err(Unavailable::HostBusy(status.as_u16()).into());
    }
    if status != StatusCode::OK {
        return Err(FetchError::BadAnswer(format!(
            "it answered HTTP {}{}",
            status.as_u16(),
            status
                .canonical_reason()
                .map(|r| format!(" {r}"))
                .unwrap_or_default()
        )));
    }
    check_content_type(response.headers()).map_err(FetchError::BadAnswer)?;
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(too_large(max_bytes));
    }
    let freshness = freshness(response.headers());

    let mut body = response.into_body();
    let mut bytes = Vec::with_capacity(declared.map_or(1024, |l| l as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| exchange_failed(&e))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > max_bytes {
                return Err(too_large(max_bytes));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Fetched {
        body: bytes,
        freshness,
    })
}

fn too_large(max_bytes: usize) -> FetchError {
    FetchError::BadAnswer(format!("it is larger than {} KiB", max_bytes / 1024))
}

/// `application/json` or `application/<anything>+json`, parameters ignored.
fn check_content_type(headers: &HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err("it was served without a Content-Type (expected application/json)".into());
    };
    let text = value.to_str().unwrap_or_default();
    let media_type = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = match media_type.strip_prefix("application/") {
        Some("json") => true,
        Some(subtype) => subtype
            .strip_suffix("+json")
            .is_some_and(|prefix| !prefix.is_empty()),
        None => false,
    };
    if json {
        Ok(())
    } else {
        Err(format!(
            "it was served as {}, not as JSON (application/json)",
            crate::oauth::params::printable(if media_type.is_empty() {
                "an unreadable type"
            } else {
                &media_type
            })
        ))
    }
}

/// The `Cache-Control` verdict (`no-store`/`no-cache` win over `max-age`), less `Age`.
fn freshness(headers: &HeaderMap) -> Freshness {
    let mut max_age: Option<u64> = None;
    let mut do_not_cache = false;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                do_not_cache = true;
            } else if name.eq_ignore_ascii_case("max-age")
                && let Some(seconds) = argument.and_then(|a| a.parse::<u64>().ok())
            {
                max_age = Some(max_age.map_or(seconds, |m| m.min(seconds)));
            }
        }
    }
    if do_not_cache {
        return Freshness::DoNotCache;
    }
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    match max_age {
        Some(seconds) => Freshness::MaxAge(seconds.saturating_sub(age)),
        None => Freshness::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    /// The rules with the testing switch on, allowing `port`.
    fn loopback_rules(port: u16) -> ssrf::UrlRules {
        ssrf::UrlRules {
            allowed_ports: vec![443, port],
            own_host: "localhost".into(),
            allow_loopback_http: true,
        }
    }

    fn headers(pairs: &[(hyper::header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/oauth-client-metadata+json",
        ] {
            assert!(
                check_content_type(&headers(&[(CONTENT_TYPE, ok)])).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "text/html",
            "text/plain",
            "application/+json",
            "application/jsonp",
            "text/json",
            "",
        ] {
            let error = check_content_type(&headers(&[(CONTENT_TYPE, bad)])).unwrap_err();
            assert!(error.contains("application/json"), "{bad}: {error}");
        }
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn cache_control() {
        assert_eq!(freshness(&HeaderMap::new()), Freshness::Unspecified);
        assert_eq!(
            freshness(&headers(&[(CACHE_CONTROL, "public, max-age=3600")])),
            Freshness::MaxAge(3600)
        );
        assert_eq!(
            freshness(&headers(&[(CACHE_CONTROL, "max-age=\"600\"")])),
            Freshness::MaxAge(600)
        );
        assert_eq!(
            freshness(&headers(&[(CACHE_CONTROL, "max-age=3600"), (AGE, "600")])),
            Freshness::MaxAge(3000)
        );
        assert_eq!(
            freshness(&headers(&[
                (CACHE_CONTROL, "max-age=3600"),
                (CACHE_CONTROL, "max-age=60")
            ])),
            Freshness::MaxAge(60)
        );
        for value in ["no-store", "max-age=600, no-cache", "No-Store"] {
            assert_eq!(
                freshness(&headers(&[(CACHE_CONTROL, value)])),
                Freshness::DoNotCache,
                "{value}"
            );
        }
        assert_eq!(
            freshness(&headers(&[(CACHE_CONTROL, "max-age=soon")])),
            Freshness::Unspecified
        );
    }

    #[tokio::test]
    async fn names_resolving_to_non_public_addresses_are_refused() {
        // `localhost` resolves from the hosts file, no network needed. The URL rules refuse it by
        // name first; this checks the filter applied after resolution as well.
        let mut target = ssrf::check_url("https://claude.ai/meta", &loopback_rules(443)).unwrap();
        target.host = TargetHost::Name("localhost".into());
        let error = resolve(&target).await.unwrap_err();
        assert!(
            matches!(&error, FetchError::BadAnswer(reason) if reason.contains("non-public address")),
            "{error:?}"
        );
        target.loopback_only = true;
        let addresses = resolve(&target).await.unwrap();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn fetching_an_ip_literal_target_connects_to_it_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = ssrf::check_url(
            &format!("http://127.0.0.1:{port}/doc"),
            &loopback_rules(port),
        )
        .unwrap();
        assert_eq!(
            resolve(&target).await.unwrap(),
            vec![SocketAddr::from(([127, 0, 0, 1], port))]
        );
    }

    #[tokio::test]
    async fn https_needs_a_trusted_tls_handshake() {
        // A server that is not speaking TLS: the fetch fails at the handshake, quickly, and says so.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await;
        });
        // Built by hand: the URL rules would refuse https to loopback before any of this.
        let target = Target {
            url: url::Url::parse(&format!("https://localhost:{port}/doc")).unwrap(),
            host: TargetHost::Ip("127.0.0.1".parse().unwrap()),
            port,
            loopback_only: true,
        };
        let error = Fetcher::new().unwrap().fetch(&target).await.unwrap_err();
        assert!(
            matches!(error, FetchError::Unavailable(Unavailable::TlsFailed(_))),
            "{error:?}"
        );
        server.abort();
    }

    /// A loopback server answering every request with a small document, at once.
    async fn answering_server() -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut socket = socket;
                    let mut buffer = [0u8; 1024];
                    let _ = socket.read(&mut buffer).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                });
            }
        });
        ssrf::check_url(
            &format!("http://127.0.0.1:{port}/doc"),
            &loopback_rules(port),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn waiting_for_a_slot_does_not_count_against_the_time_limit() {
        let time_limit = Duration::from_millis(200);
        let slots = SlotLimits {
            global: 1,
            per_host: 1,
            max_waiting: 8,
            max_wait: Duration::from_secs(60),
        };
        let fetcher = Fetcher::with_limits(slots, time_limit).unwrap();
        let target = answering_server().await;
        // Another host's fetch holds the only slot for three times the time limit.
        let held = fetcher.slots.acquire("elsewhere.example").await.unwrap();
        let (fetched, ()) = tokio::join!(fetcher.fetch(&target), async {
            tokio::time::sleep(time_limit * 3).await;
            drop(held);
        });
        assert_eq!(fetched.unwrap().body, b"{}");
    }

    #[test]
    fn tls_setup_works() {
        assert!(Fetcher::new().is_ok());
    }
}
