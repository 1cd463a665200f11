//! The bearer guard: a tower layer in front of the MCP routes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::oauth::{AuthServer, BearerError, ErrorCode, OAuthError, TokenInfo};

/// Requires a valid access token for this server's resource on every request except `OPTIONS`
/// (CORS preflights carry no credentials). On success the request carries a [`TokenInfo`]
/// extension, which handlers read with the [`TokenInfo`] extractor.
///
/// Get one from [`McpOAuth::bearer_layer`](crate::McpOAuth::bearer_layer).
#[derive(Clone)]
pub struct BearerLayer {
    server: Arc<AuthServer>,
    required_scopes: Arc<[String]>,
    challenge: HeaderValue,
}

impl std::fmt::Debug for BearerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerLayer")
            .field("required_scopes", &self.required_scopes)
            .finish_non_exhaustive()
    }
}

impl BearerLayer {
    pub(crate) fn new(server: Arc<AuthServer>) -> Self {
        let challenge = challenge_value(
            &server,
            &[("scope", server.settings.default_scopes.join(" "))],
        );
        Self {
            server,
            required_scopes: Arc::from(Vec::new()),
            challenge,
        }
    }

    /// Also require these scopes; a valid token without them gets 403 `insufficient_scope` with a
    /// challenge naming every scope the route needs.
    #[must_use]
    pub fn require_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    fn reject(&self, error: BearerError) -> Response {
        match error {
            BearerError::Missing => {
                let body = OAuthError::new(ErrorCode::InvalidToken, "an access token is required");
                with_challenge(body, StatusCode::UNAUTHORIZED, self.challenge.clone())
            }
            BearerError::Malformed(description) => {
                let value = challenge_value(&self.server, &[("error", "invalid_request".into())]);
                with_challenge(
                    OAuthError::invalid_request(description),
                    StatusCode::BAD_REQUEST,
                    value,
                )
            }
            BearerError::Invalid => {
                let description =
                    "the access token is invalid, expired, revoked or for another resource";
                let value = challenge_value(
                    &self.server,
                    &[
                        ("error", "invalid_token".into()),
                        ("error_description", description.into()),
                    ],
                );
                with_challenge(
                    OAuthError::new(ErrorCode::InvalidToken, description),
                    StatusCode::UNAUTHORIZED,
                    value,
                )
            }
            BearerError::Unavailable => OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "authorization is temporarily unavailable, try again shortly",
            )
            .into_response(),
        }
    }

    fn insufficient_scope(&self) -> Response {
        let scope = self.required_scopes.join(" ");
        let value = challenge_value(
            &self.server,
            &[
                ("error", "insufficient_scope".into()),
                ("scope", scope.clone()),
            ],
        );
        let body = OAuthError::new(
            ErrorCode::InsufficientScope,
            format!("this request needs scope: {scope}"),
        );
        with_challenge(body, StatusCode::FORBIDDEN, value)
    }

    /// The one `Authorization` header value, or why there is none to check.
    fn credentials(request: &Request<Body>) -> Result<HeaderValue, BearerError> {
        let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(BearerError::Malformed("send one Authorization header"));
        }
        if request.uri().query().is_some_and(has_access_token_param) {
            return Err(BearerError::Malformed(
                "access tokens are accepted only in the Authorization header",
            ));
        }
        first.cloned().ok_or(BearerError::Missing)
    }

    async fn check(&self, credentials: HeaderValue) -> Result<TokenInfo, Response> {
        let info = self
            .server
            .check_bearer(credentials.as_bytes())
            .await
            .map_err(|e| self.reject(e))?;
        if !self.required_scopes.iter().all(|s| info.has_scope(s)) {
            return Err(self.insufficient_scope());
        }
        Ok(info)
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = Bearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bearer {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`BearerLayer`].
#[derive(Clone, Debug)]
pub struct Bearer<S> {
    inner: S,
    layer: BearerLayer,
}

impl<S> Service<Request<Body>> for Bearer<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one to call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            if request.method() == Method::OPTIONS {
                return inner.call(request).await;
            }
            let credentials = match BearerLayer::credentials(&request) {
                Ok(credentials) => credentials,
                Err(error) => return Ok(layer.reject(error)),
            };
            match layer.check(credentials).await {
                Ok(info) => {
                    request.extensions_mut().insert(info);
                    inner.call(request).await
                }
                Err(response) => Ok(response),
            }
        })
    }
}

/// `Bearer resource_metadata="…", k="v", …` with values quoted (RFC 6750 §3, RFC 9728 §5.1).
fn challenge_value(server: &AuthServer, params: &[(&str, String)]) -> HeaderValue {
    let mut value = format!(
        "Bearer resource_metadata=\"{}\"",
        server.settings.resource_metadata_url
    );
    for (key, param) in params {
        let param: String = param
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        value.push_str(&format!(", {key}=\"{param}\""));
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn with_challenge(error: OAuthError, status: StatusCode, challenge: HeaderValue) -> Response {
    let mut response = error.into_response();
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

fn has_access_token_param(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "access_token")
}
