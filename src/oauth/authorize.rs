//! The authorization endpoint: validating a request, and the owner's decision.

use url::Url;

use crate::audit::AuditEvent;
use crate::presence::Approval;

use super::clients::{Client, FindError};
use super::grants::GrantSummary;
use super::params::Params;
use super::payload::{self, CodeGrant, PendingRequest};
use super::{AuthServer, ErrorCode, OAuthError, pkce, scope};
use crate::rules::limits::{MAX_SCOPE_BYTES, MAX_STATE_BYTES, MAX_URI_BYTES, check_bytes};
use crate::rules::{redirect_uri, secret};
use crate::store::{Consumed, GrantId, TokenHash, TokenKind, TokenRecord};

/// Why an authorization request cannot go ahead.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// The client or its redirect URI is not valid: say so on a page and never redirect
    /// (OAuth 2.1 §4.1.2.1).
    Page(OAuthError),
    /// The client and redirect URI are valid, the rest of the request is not. The owner has not
    /// authenticated, so the way back is offered as a link, not taken automatically.
    Link {
        /// The error.
        error: OAuthError,
        /// The redirect URI carrying the error, `state` and `iss`.
        redirect_to: String,
    },
}

impl From<OAuthError> for Rejection {
    fn from(error: OAuthError) -> Self {
        Rejection::Page(error)
    }
}

impl From<crate::store::StoreError> for Rejection {
    fn from(error: crate::store::StoreError) -> Self {
        Rejection::Page(error.into())
    }
}

impl From<FindError> for Rejection {
    fn from(error: FindError) -> Self {
        match error {
            FindError::Store(error) => error.into(),
            // A bad or unreachable metadata document: the client is not known to be genuine, so
            // its redirect URI is not trusted either (CIMD §"Metadata Discovery Errors").
            FindError::Document(error) => Rejection::Page(error.page_error()),
        }
    }
}

/// What the consent page shows about a validated request.
#[derive(Debug)]
pub(crate) struct Consent {
    pub(crate) request_id: String,
    pub(crate) client: Client,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: Vec<String>,
}

/// Where the browser goes after the owner decided: after an approval, a URL carrying the
/// authorization code.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) redirect_to: secret::Secret,
}

impl AuthServer {
    /// Validate an authorization request (the query of `GET /authorize`) and keep it pending for the
    /// owner's decision.
    pub(crate) async fn begin_authorization(&self, query: &[u8]) -> Result<Consent, Rejection> {
        let params = Params::parse(query)?;
        let client_id = params.require("client_id")?;
        let client = self.find_client(client_id).await?.ok_or_else(|| {
            OAuthError::invalid_request(
                "this application is not registered with the server (or its registration lapsed); \
                     ask it to connect again",
            )
        })?;
        let redirect_uri = match params.get("redirect_uri") {
            Some(uri) => {
                if !client
                    .redirect_uris
                    .iter()
                    .any(|r| redirect_uri::matches(r, uri))
                {
                    return Err(OAuthError::invalid_request(
                        "the return address (redirect_uri) is not one this application registered; \
                         for your safety you are not sent there",
                    )
                    .into());
                }
                uri.to_owned()
            }
            None => match client.redirect_uris.as_slice() {
                [only] if Url::parse(only).is_ok() => only.clone(),
                _ => {
                    return Err(OAuthError::invalid_request(
                        "redirect_uri is required for this application",
                    )
                    .into());
                }
            },
        };
        // An over-long state is not echoed: the return link would be as long, past what the
        // client's own callback accepts, and a client that sent it cannot be helped by it anyway
        // (without its state it drops the response, as it must).
        if let Err(error) = request_parameter("state", params.get("state"), MAX_STATE_BYTES) {
            return Err(Rejection::Link {
                redirect_to: self.error_redirect(&redirect_uri, &error, None),
                error,
            });
        }
        let state = params.get("state").map(str::to_owned);
        let link = |error: OAuthError| Rejection::Link {
            redirect_to: self.error_redirect(&redirect_uri, &error, state.as_deref()),
            error,
        };
        request_parameter("scope", params.get("scope"), MAX_SCOPE_BYTES).map_err(link)?;
        request_parameter("resource", params.get("resource"), MAX_URI_BYTES).map_err(link)?;

        match params.get("response_type") {
            Some("code") => {}
            None => {
                return Err(link(OAuthError::invalid_request(
                    "response_type is required",
                )));
            }
            Some(_) => {
                return Err(link(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                )));
            }
        }
        if !client.may_use_code {
            return Err(link(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the authorization_code grant",
            )));
        }
        let code_challenge = pkce::check_challenge(
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        )
        .map_err(link)?;
        self.settings
            .resource
            .check(params.get("resource"))
            .map_err(link)?;
        let scopes = scope::grant(
            params.get("scope"),
            &self.settings.scopes,
            &self.settings.default_scopes,
        );

        let request_id = secret::generate(secret::prefix::REQUEST);
        let pending = PendingRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            state,
            code_challenge,
            scopes: scopes.clone(),
        };
        self.tokens
            .insert(TokenRecord {
                kind: TokenKind::AuthorizationRequest,
                hash: TokenHash::of(&request_id),
                grant_id: GrantId::generate(),
                expires_at: self.now().plus(self.settings.consent_lifetime_secs),
                payload: payload::encode(&pending),
            })
            .await
            .map_err(OAuthError::from)?;
        Ok(Consent {
            request_id,
            client,
            redirect_uri,
            scopes,
        })
    }

    /// The pending request behind a consent page, without using it up.
    pub(crate) async fn pending_request(&self, request_id: &str) -> Result<(), OAuthError> {
        self.tokens
            .get(TokenKind::AuthorizationRequest, &TokenHash::of(request_id))
            .await?
            .map(|_| ())
            .ok_or_else(expired_request)
    }

    /// The owner approved the request their passkey assertion was made for: issue a code. The
    /// approval is the assertion check's proof, spent here; no other request can be approved
    /// with it.
    pub(crate) async fn approve(&self, approval: Approval) -> Result<Decision, OAuthError> {
        let (record, pending) = self.take_pending(approval.request()).await?;
        // Before any code exists: a registration approved from here on is kept like any approved
        // client, never capped or lapsing early.
        if !self.record_client_approval(&pending.client_id).await? {
            return Err(OAuthError::invalid_request(
                "this client's registration lapsed or was removed before the approval; \
                 start again from the application",
            ));
        }
        let now = self.now();
        let code = secret::generate(secret::prefix::CODE);
        let grant = CodeGrant {
            client_id: pending.client_id.clone(),
            resource: self.settings.resource.as_str().to_owned(),
            redirect_uri: pending.redirect_uri.clone(),
            code_challenge: pending.code_challenge,
            scopes: pending.scopes,
        };
        self.tokens
            .insert(TokenRecord {
                kind: TokenKind::AuthorizationCode,
                hash: TokenHash::of(&code),
                grant_id: record.grant_id.clone(),
                expires_at: now.plus(self.settings.code_lifetime_secs),
                payload: payload::encode(&grant),
            })
            .await?;
        let summary = GrantSummary {
            client_id: pending.client_id.clone(),
            scopes: grant.scopes.clone(),
            resource: grant.resource.clone(),
            redirect_uri: Some(pending.redirect_uri.clone()),
            approved_at: now,
            last_issued_at: None,
            access_expires_at: None,
            refresh_expires_at: None,
        };
        self.record_approval(&record.grant_id, &summary).await?;
        self.audit.emit(AuditEvent::AuthorizationApproved {
            client_id: pending.client_id.clone(),
            grant_id: record.grant_id.clone(),
        });
        let mut url = parse_redirect(&pending.redirect_uri)?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("code", &code);
            if let Some(state) = &pending.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.settings.issuer);
        }
        Ok(Decision {
            redirect_to: String::from(url).into(),
        })
    }

    /// The owner said no.
    pub(crate) async fn deny(&self, request_id: &str) -> Result<Decision, OAuthError> {
        let (_, pending) = self.take_pending(&TokenHash::of(request_id)).await?;
        self.audit.emit(AuditEvent::AuthorizationDenied {
            client_id: pending.client_id.clone(),
        });
        let error = OAuthError::new(ErrorCode::AccessDenied, "the owner denied the request");
        Ok(Decision {
            redirect_to: self
                .error_redirect(&pending.redirect_uri, &error, pending.state.as_deref())
                .into(),
        })
    }

    async fn take_pending(
        &self,
        request: &TokenHash,
    ) -> Result<(TokenRecord, PendingRequest), OAuthError> {
        match self
            .tokens
            .consume(TokenKind::AuthorizationRequest, request, self.now())
            .await?
        {
            Some(Consumed::First(record)) => {
                let pending = payload::decode(&record)?;
                Ok((record, pending))
            }
            Some(Consumed::Replayed { .. }) => Err(OAuthError::invalid_request(
                "this request was already decided; start again from the application",
            )),
            None => Err(expired_request()),
        }
    }

    /// The redirect URI with an error response appended (RFC 6749 §4.1.2.1, RFC 9207 `iss`).
    pub(crate) fn error_redirect(
        &self,
        redirect_uri: &str,
        error: &OAuthError,
        state: Option<&str>,
    ) -> String {
        let Ok(mut url) = Url::parse(redirect_uri) else {
            return redirect_uri.to_owned();
        };
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("error", error.code.as_str());
            query.append_pair("error_description", &error.description);
            if let Some(state) = state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.settings.issuer);
        }
        url.into()
    }
}

fn expired_request() -> OAuthError {
    OAuthError::invalid_request("this request has expired; start again from the application")
}

fn parse_redirect(uri: &str) -> Result<Url, OAuthError> {
    Url::parse(uri).map_err(|_| OAuthError::invalid_request("stored redirect URI is not a URL"))
}

/// An authorization request parameter over its limit: `invalid_request`.
fn request_parameter(field: &str, value: Option<&str>, max: usize) -> Result<(), OAuthError> {
    value.map_or(Ok(()), |value| {
        check_bytes(field, value, max).map_err(OAuthError::invalid_request)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_code_in_an_approval_redirect() {
        let decision = Decision {
            redirect_to: "https://client.example/cb?code=mcp_ac_secret-code&state=s".into(),
        };
        let output = format!("{decision:?}");
        assert!(!output.contains("secret-code"), "{output}");
    }
}
