//! The bearer guard: a tower layer in front of the MCP routes.

mod step_up;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::rate_limit::{Limits, too_many_requests};
use crate::audit::{Source, StepKind};
use crate::oauth::{
    AuthServer, BearerError, Challenge, ErrorCode, Refusal, ScopePolicy, TokenInfo,
    sent_credentials,
};
use crate::telemetry::{self, GuardOutcome};

/// Requires a valid access token for this server's resource on every request except CORS
/// preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`, which browsers send
/// without credentials): those pass, for a CORS layer behind the guard to answer. A preflight
/// reaches a handler that answers `OPTIONS` itself (`any()`) if no CORS layer does, so put one in
/// front of such routes (tower-http's `CorsLayer` answers every `OPTIONS`). On success the request
/// carries a [`TokenInfo`] extension, which handlers read with the [`TokenInfo`] extractor.
///
/// Get one from [`McpOAuth::bearer_layer`](crate::McpOAuth::bearer_layer).
///
/// A valid token without a scope the request needs ([`require_scopes`](BearerLayer::require_scopes)
/// for the whole route, [`scope_policy`](BearerLayer::scope_policy) per MCP method and tool) gets
/// `403` with one challenge, `WWW-Authenticate: Bearer resource_metadata="…",
/// error="insufficient_scope", scope="…"`, whose `scope` is every scope the request needs together
/// with the configured scopes the token already holds. 2026-07-28 clients add the challenged scopes
/// to the ones they hold; earlier ones (and the Python SDK) ask for exactly the challenged scopes,
/// and would otherwise lose what they had.
///
/// With rate limits on, every refusal (400, 401, 403; not a 503 for a store outage) spends one of
/// the caller's address's [refused requests](crate::RateLimits::refused); once they are spent,
/// requests from that address get `429` with `Retry-After` before their token is looked up, until
/// the limit refills.
#[derive(Clone)]
pub struct BearerLayer {
    server: Arc<AuthServer>,
    required_scopes: Arc<[String]>,
    scope_policy: Option<Arc<ScopePolicy>>,
    /// For the budget of refused requests; `None` when rate limits are off.
    limits: Option<Arc<Limits>>,
}

impl std::fmt::Debug for BearerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerLayer")
            .field("required_scopes", &self.required_scopes)
            .field("scope_policy", &self.scope_policy)
            .finish_non_exhaustive()
    }
}

impl BearerLayer {
    pub(crate) fn new(server: Arc<AuthServer>, limits: Option<Arc<Limits>>) -> Self {
        Self {
            server,
            required_scopes: Arc::from(Vec::new()),
            scope_policy: None,
            limits,
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

    /// Also require scopes per MCP method and tool, read from each `POST`'s JSON-RPC body (see
    /// [`ScopePolicy`] for how bodies are read). A policy naming a scope that is not configured is
    /// logged, since no token could ever satisfy it;
    /// [`McpOAuthBuilder::scope_policy`](crate::McpOAuthBuilder::scope_policy) refuses one instead.
    #[must_use]
    pub fn scope_policy(self, policy: ScopePolicy) -> Self {
        if let Err(reason) = policy.validate(self.server.scopes()) {
            tracing::warn!(target: "mcp_oauth", "scope policy: {reason}");
        }
        if policy.is_empty() {
            return Self {
                scope_policy: None,
                ..self
            };
        }
        self.with_policy(Arc::new(policy))
    }

    /// Use an already checked policy.
    pub(crate) fn with_policy(mut self, policy: Arc<ScopePolicy>) -> Self {
        self.scope_policy = Some(policy);
        self
    }

    /// Every scope this request needs: the route's, then those its MCP messages need. May read
    /// the body (and put it back); `Err` is the answer for a body that cannot be read.
    async fn needed_scopes(
        &self,
        request: Request<Body>,
    ) -> Result<(Request<Body>, Vec<String>), Response> {
        let mut needed = self.required_scopes.to_vec();
        let Some(policy) = &self.scope_policy else {
            return Ok((request, needed));
        };
        let (request, by_messages) = step_up::needed_scopes(request, policy).await?;
        for scope in by_messages {
            if !needed.contains(&scope) {
                needed.push(scope);
            }
        }
        Ok((request, needed))
    }

    /// Tell the connection doctor about a token's use: the first one per grant is a step.
    fn note_use(&self, info: &TokenInfo) {
        let doctor = self.server.audit().doctor();
        if doctor.grant_used(&info.grant_id) {
            doctor.record(
                Source::of(Some(&info.client_id), None),
                StepKind::FirstMcpCall,
                None,
                None,
            );
        }
    }

    /// Tell the connection doctor about a refused MCP request (the client is unknown: grouped by
    /// user agent), and render the refusal.
    fn refuse(&self, user_agent: Option<&HeaderValue>, refusal: Refusal<'_>) -> Response {
        let kind = match refusal.error.code {
            ErrorCode::InvalidToken => Some(StepKind::Challenge),
            ErrorCode::InsufficientScope => Some(StepKind::InsufficientScope),
            _ => None,
        };
        if let Some(kind) = kind {
            let error = refusal.challenge.as_ref().and_then(Challenge::error);
            self.server.audit().doctor().record(
                Source::of(None, user_agent.and_then(|v| v.to_str().ok())),
                kind,
                error.map(|code| (code.as_str(), "")),
                None,
            );
        }
        refusal.into_response()
    }

    /// The 429 while the caller's address has no refusal left; looked up before any other work.
    fn over_refusal_budget(&self, request: &Request<Body>) -> Option<Response> {
        let limits = self.limits.as_deref()?;
        let wait = limits.refusals.check(|| limits.key(request)).err()?;
        Some(too_many_requests(wait))
    }

    /// The address a refusal would be counted against, when rate limits are on.
    fn address(&self, request: &Request<Body>) -> Option<IpAddr> {
        self.limits.as_deref().map(|limits| limits.key(request))
    }

    /// Count a refusal against `address` (not a store outage: that is not the caller's doing).
    fn spend_refusal(&self, address: Option<IpAddr>, response: Response) -> Response {
        if let (Some(limits), Some(address)) = (&self.limits, address)
            && response.status().is_client_error()
        {
            limits.refusals.spend(address);
        }
        response
    }

    /// The caller, from a valid token for this resource; else the refusal.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<TokenInfo, Response> {
        let authorization = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(HeaderValue::as_bytes);
        let checked = match sent_credentials(authorization, query) {
            Ok(credentials) => self.server.check_bearer(credentials).await,
            Err(error) => Err(error),
        };
        checked.map_err(|error| {
            telemetry::guard(match error {
                BearerError::Missing => GuardOutcome::Missing,
                BearerError::Malformed(_) | BearerError::Invalid => GuardOutcome::Invalid,
                BearerError::Unavailable => GuardOutcome::Unavailable,
            });
            let refusal = self.server.bearer_rules().refuse(error);
            self.refuse(headers.get(header::USER_AGENT), refusal)
        })
    }

    /// Whether requests need scopes beyond a valid token's (so the guard may read bodies).
    fn has_scope_rules(&self) -> bool {
        !self.required_scopes.is_empty() || self.scope_policy.is_some()
    }

    /// The request back if `info` holds every scope it needs (reading its body only for a valid
    /// token, so an anonymous caller never makes the guard read one); else the 403.
    async fn authorize_scopes(
        &self,
        request: Request<Body>,
        info: &TokenInfo,
    ) -> Result<Request<Body>, Response> {
        // Reading the body consumes the request; keep what the doctor needs (a reference count).
        let user_agent = request.headers().get(header::USER_AGENT).cloned();
        // A body the policy cannot read is the client's mistake, not a missing scope: the doctor
        // records no step for it.
        let (request, needed) = self.needed_scopes(request).await.inspect_err(|_| {
            telemetry::guard(GuardOutcome::Invalid);
        })?;
        self.server
            .bearer_rules()
            .check_scopes(&needed, &info.scopes, self.scope_policy.as_deref())
            .map_err(|refusal| {
                telemetry::guard(GuardOutcome::InsufficientScope);
                self.refuse(user_agent.as_ref(), refusal)
            })?;
        Ok(request)
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = Bearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bearer {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service made by [`BearerLayer`].
#[derive(Clone, Debug)]
pub struct Bearer<S> {
    inner: S,
    // Shared, so each request clones one `Arc` rather than the layer's fields.
    layer: Arc<BearerLayer>,
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

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one to call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = Arc::clone(&self.layer);
        Box::pin(async move {
            if is_preflight(&request) {
                return inner.call(request).await;
            }
            if let Some(response) = layer.over_refusal_budget(&request) {
                telemetry::guard(GuardOutcome::RateLimited);
                telemetry::rate_limited("guard_refusals");
                return Ok(response);
            }
            let info = match layer
                .authenticate(request.headers(), request.uri().query())
                .await
            {
                Ok(info) => info,
                Err(response) => {
                    return Ok(layer.spend_refusal(layer.address(&request), response));
                }
            };
            let mut request = if layer.has_scope_rules() {
                // Reading the body consumes the request: take its address first.
                let address = layer.address(&request);
                // Boxed: reading a body makes a large future, and without it every guarded
                // request's future stays small enough for the allocator's fast path.
                match Box::pin(layer.authorize_scopes(request, &info)).await {
                    Ok(request) => request,
                    Err(response) => return Ok(layer.spend_refusal(address, response)),
                }
            } else {
                request
            };
            layer.note_use(&info);
            telemetry::guard(GuardOutcome::Accepted);
            request.extensions_mut().insert(info);
            inner.call(request).await
        })
    }
}

/// A CORS preflight (Fetch standard, CORS-preflight request): it carries no credentials by design.
/// Any other `OPTIONS` is a request like the rest, and needs a token.
fn is_preflight(request: &Request<Body>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}
